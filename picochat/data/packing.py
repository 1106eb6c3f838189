"""Best-fit packing: tokenized documents into rows of exactly `row_len` tokens, with no padding.

A row is filled by repeatedly taking the longest buffered piece that fits in the space left. When none
fits, the shortest buffered piece is cropped to fill the row exactly: every piece is then longer than the
space, and the shortest sends the fewest tokens to another row. A piece of a whole row or more fills a
row on its own as soon as a row starts (anywhere later it would be cut sooner).

A piece is a document, or the rest of one that was cropped. The rest is carried: it goes back into the
buffer and is packed like any other piece, so no token is ever thrown away. Its tokens are trained on
without their document's start (and its <|bos|>) in the row: we count them as "headless". Dropping the
rest instead (nanochat's choice) keeps every token's document start in view but, with rows of a few
hundred tokens, throws away most of a web-like corpus: see bench/results/loader.md.

Pieces carry a key (the loader uses the document's position in its stream) that breaks ties between equal
lengths, so packing is a deterministic function of the documents added.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Hashable, Sequence
from typing import NamedTuple

import numpy as np


class RowPacking(NamedTuple):
    """What filling one row did: pieces cropped, tokens cut off by those crops, tokens placed headless."""

    crops: int
    tokens_cropped: int
    tokens_headless: int


class BestFitPacker:
    """A buffer of documents and carried pieces, drawn from to fill rows of exactly `row_len` tokens.

    `carry_remainders=False` drops what a crop cuts off instead (kept for the benchmark's comparison).
    """

    def __init__(self, row_len: int, carry_remainders: bool = True):
        if row_len < 1:
            raise ValueError(f"row_len must be at least 1, got {row_len}")
        self.row_len = row_len
        self.carry_remainders = carry_remainders
        # (length left, key, offset of the piece in its document, the document's tokens), sorted;
        # a document has at most one piece buffered, so (length, key) never ties and tokens are never compared
        self._pieces: list[tuple[int, Hashable, int, Sequence[int]]] = []
        self.tokens_buffered = 0

    def __len__(self) -> int:
        return len(self._pieces)

    def add(self, key: Hashable, tokens: Sequence[int], offset: int = 0) -> None:
        """Buffer the piece tokens[offset:] of a document; keys must be unique among buffered documents."""
        length = len(tokens) - offset
        if length <= 0:
            raise ValueError(f"document {key!r} has no tokens from offset {offset}; skip empty documents")
        insort(self._pieces, (length, key, offset, tokens))
        self.tokens_buffered += length

    def buffered(self) -> list[tuple[Hashable, int]]:
        """(key, offset) of every buffered piece, sorted: what a checkpoint needs to rebuild the buffer."""
        return sorted((key, offset) for _, key, offset, _ in self._pieces)

    def pack_row(self, row: np.ndarray, top_up: Callable[[], None] = lambda: None) -> RowPacking:
        """Fill `row` (1-D, `row_len` long) exactly.

        `top_up` is called before every pick so the caller can keep the buffer full. The buffer must hold
        at least `row_len` tokens once topped up at the start of the row; then the row can always be
        filled, since a whole piece takes as many tokens from the buffer as from the space left.
        """
        pos, crops, tokens_cropped, tokens_headless = 0, 0, 0, 0
        while pos < self.row_len:
            top_up()
            space = self.row_len - pos
            if self.tokens_buffered < space:
                raise RuntimeError(f"packing buffer holds {self.tokens_buffered} tokens, fewer than {space}")
            if pos == 0 and self._pieces[-1][0] >= space:
                index = len(self._pieces) - 1  # a row or more: a row of its own
            else:
                fits = bisect_left(self._pieces, (space + 1,))  # pieces [0, fits) have length <= space
                index = fits - 1 if fits > 0 else 0  # the longest that fits, else the shortest, cropped
            length, key, offset, tokens = self._pieces.pop(index)
            self.tokens_buffered -= length
            taken = min(length, space)
            row[pos : pos + taken] = tokens[offset : offset + taken]
            pos += taken
            if offset > 0:
                tokens_headless += taken
            if taken < length:
                crops += 1
                tokens_cropped += length - taken
                if self.carry_remainders:
                    self.add(key, tokens, offset + taken)
        return RowPacking(crops, tokens_cropped, tokens_headless)
