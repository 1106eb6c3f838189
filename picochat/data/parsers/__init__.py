"""Parsers: turn one fetched source into clean documents, one module per kind of file.

Every parser is `parse(root: Path, skips: Counter[str]) -> Iterator[str]`: `root` is the folder the source
was fetched (and unpacked) into, and every record a parser drops is counted in `skips` under a reason, so
the build reports it instead of losing it silently. The helpers below size documents for a packing loader
with rows of a few hundred tokens (a few KB to a few tens of KB: a chapter, a scene, a run of entries).
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

MIN_DOC_CHARS = 2_000  # smaller neighbours are merged until a document is at least this long
MAX_DOC_CHARS = 24_000  # longer pieces are cut at paragraph breaks (~6k tokens)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Normalise a document: NFC, Unix newlines, no control characters or trailing spaces, <= 1 blank line."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text.replace("\x0c", "\n"))
    text = _TRAILING_SPACE.sub("\n", text + "\n")
    return _BLANK_RUNS.sub("\n\n", text).strip()


def heading_splitter(*words: str) -> re.Pattern[str]:
    """A pattern that splits a book just before each line starting `WORD <number>` (roman or arabic)."""
    return re.compile(rf"^(?=(?:{'|'.join(words)})\s+[IVXLC\d]+\b)", re.MULTILINE)


def split_long(
    text: str, max_chars: int = MAX_DOC_CHARS, separators: tuple[str, ...] = ("\n\n", "\n", " ")
) -> Iterator[str]:
    """Cut `text` into pieces of at most max_chars, at paragraph breaks, else line breaks, else spaces."""
    if len(text) <= max_chars:
        yield text
        return
    if not separators:  # one unbroken run of characters: cut it anywhere
        for start in range(0, len(text), max_chars):
            yield text[start : start + max_chars]
        return
    separator, finer = separators[0], separators[1:]
    piece: list[str] = []
    size = 0
    for part in text.split(separator):
        if piece and size + len(part) > max_chars:
            yield separator.join(piece)
            piece, size = [], 0
        if len(part) > max_chars:
            yield from split_long(part, max_chars, finer)
            continue
        piece.append(part)
        size += len(part) + len(separator)
    if piece:
        yield separator.join(piece)


def pack(
    pieces: Iterable[str], min_chars: int = MIN_DOC_CHARS, max_chars: int = MAX_DOC_CHARS
) -> Iterator[str]:
    """Merge consecutive short pieces until each document holds >= min_chars; cut pieces over max_chars.

    Documents end up between min_chars and max_chars + min_chars long (a source's last one may be shorter
    if the whole source is): a short remainder at the end joins the last document.
    """
    documents = _pack_greedy(pieces, min_chars, max_chars)
    previous = next(documents, None)
    for document in documents:
        if len(document) < min_chars and len(previous) + len(document) <= max_chars + min_chars:
            previous = previous + "\n\n" + document
            continue
        yield previous
        previous = document
    if previous is not None:
        yield previous


def _pack_greedy(pieces: Iterable[str], min_chars: int, max_chars: int) -> Iterator[str]:
    """Append pieces (cut to <= max_chars) to a buffer and emit it once it holds >= min_chars."""
    buffer: list[str] = []
    size = 0
    for piece in filter(None, (piece.strip() for piece in pieces)):
        for part in split_long(piece, max_chars):
            buffer.append(part)
            size += len(part) + 2
            if size >= min_chars:
                yield "\n\n".join(buffer)
                buffer, size = [], 0
    if buffer:
        yield "\n\n".join(buffer)


def read_utf8(path: Path, skips: Counter[str]) -> str | None:
    """The text of `path` (gunzipped if it ends in .gz), or None, counted with the first bad line named,
    when it is not UTF-8."""
    path = Path(path)
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        skips[f"file is not UTF-8 ({path} line {line})"] += 1
        return None
