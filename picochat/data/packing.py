"""Best-fit packing: tokenized documents into rows of exactly `row_len` tokens, every row starting a document.

A row is filled by repeatedly taking the longest buffered document that fits in the space left, so no
padding is ever needed. When nothing fits, the shortest buffered document is cropped to fill the row
exactly: every buffered document is then longer than the space, and the shortest wastes the fewest tokens.
The cropped remainder is dropped, not carried into the next row: carried, it would start a row without
its <|bos|> and without the context that came before it. A document longer than a whole row is given a row
of its own as soon as a row starts; its crop is unavoidable, and anywhere later in a row it would lose more.

Documents carry a key (any orderable value; the loader uses their position in the document stream) that
breaks ties between equal lengths, so the packing is a deterministic function of the documents added.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Hashable, Sequence

import numpy as np


class BestFitPacker:
    """A buffer of tokenized documents, drawn from to fill rows of exactly `row_len` tokens."""

    def __init__(self, row_len: int):
        if row_len < 1:
            raise ValueError(f"row_len must be at least 1, got {row_len}")
        self.row_len = row_len
        self._docs: list[tuple[int, Hashable, Sequence[int]]] = []  # (length, key, tokens), sorted
        self.tokens_buffered = 0

    def __len__(self) -> int:
        return len(self._docs)

    def add(self, key: Hashable, tokens: Sequence[int]) -> None:
        """Put one document in the buffer; keys must be unique among buffered documents."""
        if len(tokens) == 0:
            raise ValueError(f"document {key!r} has no tokens; skip empty documents before packing")
        insort(self._docs, (len(tokens), key, tokens))
        self.tokens_buffered += len(tokens)

    def buffered_keys(self) -> list:
        """Keys of the buffered documents, in stream order (what a checkpoint needs to rebuild the buffer)."""
        return sorted(key for _, key, _ in self._docs)

    def pack_row(self, row: np.ndarray, top_up: Callable[[], None] = lambda: None) -> tuple[int, int]:
        """Fill `row` (1-D, `row_len` long) exactly; return (tokens cropped, documents cropped).

        `top_up` is called before every pick so the caller can keep the buffer full. The caller must make
        sure the buffer holds at least `row_len` tokens after topping up, or the row cannot be filled.
        """
        pos, tokens_cropped, docs_cropped = 0, 0, 0
        while pos < self.row_len:
            top_up()
            if self.tokens_buffered < self.row_len - pos:
                raise RuntimeError(
                    f"packing buffer holds {self.tokens_buffered} tokens, fewer than the "
                    f"{self.row_len - pos} left to fill in this row"
                )
            space = self.row_len - pos
            if pos == 0 and self._docs[-1][0] >= space:
                index = len(self._docs) - 1  # a document of a row or more: a row of its own
            else:
                fits = bisect_left(self._docs, (space + 1,))  # documents [0, fits) have length <= space
                index = fits - 1 if fits > 0 else 0  # longest that fits, else shortest (cropped)
            length, _, tokens = self._docs.pop(index)
            self.tokens_buffered -= length
            taken = min(length, space)
            row[pos : pos + taken] = tokens[:taken]
            pos += taken
            if taken < length:
                tokens_cropped += length - taken
                docs_cropped += 1
        return tokens_cropped, docs_cropped
