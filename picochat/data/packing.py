"""Best-fit packing: tokenized documents into rows of exactly `row_len` tokens, with no padding.

A row takes, again and again, the longest buffered piece that fits in the space left; when none fits, one
piece is cropped to fill it: the shortest carried piece if any (already headless), else the shortest
document. Pieces of a row or more wait until `rows_apart` are buffered, then take whole rows in turn, so a
book-length document is spread over many batches. The rest of a crop is carried back into the buffer and
trained on without its document's start ("headless"); dropping it (nanochat) throws away most of a web-like
corpus at rows of a few hundred tokens: see bench/results/loader.md. Packing is deterministic given the
pieces and their order, which `buffered()` reports so a checkpoint can rebuild the buffer exactly.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
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
    `carry_remainders=False` drops what a crop cuts off instead (for the benchmark's comparison)."""

    def __init__(self, row_len: int, carry_remainders: bool = True, rows_apart: int = 32):
        if row_len < 1:
            raise ValueError(f"row_len must be at least 1, got {row_len}")
        self.row_len, self.carry_remainders, self.rows_apart = row_len, carry_remainders, rows_apart
        # a piece: (length left, arrival number (unique: comparisons stop there), key, offset, tokens)

        self._short: list[tuple] = []  # pieces shorter than a row, sorted by (length, arrival)
        self._long: deque[tuple] = deque()  # pieces of a row or more, by arrival
        self._arrivals = self._short_tokens = self.tokens_buffered = 0

    def __len__(self) -> int:
        return len(self._short) + len(self._long)

    def add(self, key: Hashable, tokens: Sequence[int], offset: int = 0) -> None:
        length = len(tokens) - offset
        if length <= 0:
            raise ValueError(f"document {key!r} has no tokens from offset {offset}; skip empty documents")
        piece = (length, self._arrivals, key, offset, tokens)
        self._arrivals += 1
        if length >= self.row_len:
            self._long.append(piece)
        else:
            insort(self._short, piece)
            self._short_tokens += length
        self.tokens_buffered += length

    def buffered(self) -> list[tuple[Hashable, int]]:
        """(key, offset) of every buffered piece in arrival order: adding them again rebuilds this buffer."""
        pieces = sorted([*self._short, *self._long], key=lambda piece: piece[1])
        return [(key, offset) for _, _, key, offset, _ in pieces]

    def _take(self, space: int) -> tuple:
        """Remove and return the piece to place next when `space` tokens of the row are left."""
        enough_waiting = len(self._long) >= self.rows_apart or self._short_tokens < space
        if space == self.row_len and self._long and enough_waiting:
            return self._long.popleft()  # a row of its own
        fits = bisect_left(self._short, (space + 1,))  # self._short[:fits] have length <= space
        if fits > 0:
            index = fits - 1  # the longest that fits
        elif self._short:  # nothing fits: crop a carried piece, else the shortest document
            index = next((i for i, piece in enumerate(self._short) if piece[3] > 0), 0)
        else:
            return self._long.popleft()
        piece = self._short.pop(index)
        self._short_tokens -= piece[0]
        return piece

    def pack_row(self, row: np.ndarray, top_up: Callable[[], None] = lambda: None) -> RowPacking:
        """Fill `row` (row_len,) exactly, calling `top_up` before every pick. With `row_len` tokens buffered
        at the start it can always be filled: a whole piece takes as many tokens from the buffer as from the
        space left, and a crop finishes the row."""

        pos, crops, tokens_cropped, tokens_headless = 0, 0, 0, 0
        while pos < self.row_len:
            top_up()
            space = self.row_len - pos
            if self.tokens_buffered < space:
                raise RuntimeError(f"packing buffer holds {self.tokens_buffered} tokens, fewer than {space}")
            length, _, key, offset, tokens = self._take(space)
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
