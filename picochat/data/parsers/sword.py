"""SWORD zText Bible modules, such as the World English Bible in Debian's sword-text-web.

A testament's `ot.bzz` holds zlib-compressed blocks of OSIS XML (one per book for `BlockType=BOOK`), which
`ot.bzs` indexes with 12-byte little-endian records (offset, compressed size, uncompressed size). Each book
is split at its `<chapter sID=...>` milestones; footnotes and cross references are dropped, titles and
paragraph, line and list markers become line breaks, every other tag is stripped.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from picochat.data.parsers import clean_text, pack

_BLOCK_RECORD = struct.Struct("<III")  # offset, compressed size, uncompressed size

_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.DOTALL)
_NOTE_BETWEEN_WORDS = re.compile(r"(?<=\w)<note\b[^>]*>.*?</note>(?=\w)", re.DOTALL)
_CHAPTER = re.compile(r'<chapter\b[^>]*\bsID="([^"]*)"[^>]*/>')
_BOOK_NAME = re.compile(r'<milestone\b[^>]*\bn="([^"]+)"[^>]*type="x-usfm-toc2"')
_PARAGRAPH = re.compile(r"<(?:title|lg|item|list|p)\b[^>]*>|</(?:title|item|p)>|<div\b[^>]*\bsID=[^>]*>")
_LINE = re.compile(r"<(?:l|lb)\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")


def osis_to_text(osis: str) -> str:
    """Plain text from a piece of OSIS XML: notes removed, block elements on their own lines."""
    text = _NOTE_BETWEEN_WORDS.sub(" ", osis)  # "how<note>...</note>not" -> "how not"
    text = _NOTE.sub("", text)
    text = _LINE.sub("\n", _PARAGRAPH.sub("\n\n", text))
    text = html.unescape(_TAG.sub("", text))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return clean_text("\n".join(lines))


def book_chapters(book_osis: str) -> Iterator[str]:
    """Each chapter of one book's OSIS as text headed `Book N`; text before chapter 1 is its own piece."""
    name_match = _BOOK_NAME.search(book_osis)
    book_name = name_match.group(1) if name_match else ""
    parts = _CHAPTER.split(book_osis)  # [front, sID1, chapter1, sID2, chapter2, ...]
    front = osis_to_text(parts[0])
    if front:
        yield front
    for chapter_id, chapter_osis in zip(parts[1::2], parts[2::2]):
        number = chapter_id.rsplit(".", 1)[-1]
        body = osis_to_text(chapter_osis)
        if body:
            yield f"{book_name} {number}".strip() + "\n\n" + body


def ztext_blocks(index: bytes, data: bytes, skips: Counter[str]) -> Iterator[str]:
    """The decompressed, decoded blocks of one testament (`.bzs` index + `.bzz` data)."""
    for start in range(0, len(index) - len(index) % _BLOCK_RECORD.size, _BLOCK_RECORD.size):
        offset, size, _ = _BLOCK_RECORD.unpack_from(index, start)
        if size == 0:
            continue
        try:
            yield zlib.decompress(data[offset : offset + size]).decode("utf-8")
        except zlib.error:
            skips["corrupt zText block"] += 1
        except UnicodeDecodeError:
            skips["zText block is not UTF-8"] += 1


def parse_ztext(root: Path, skips: Counter[str]) -> Iterator[str]:
    """Documents (one to a few chapters each) from every zText testament (`*.bzs` + `*.bzz`) under `root`."""
    for index_path in sorted(Path(root).rglob("*.bzs")):
        data_path = index_path.with_suffix(".bzz")
        if not data_path.is_file():
            skips["zText index without its .bzz data"] += 1
            continue
        for block in ztext_blocks(index_path.read_bytes(), data_path.read_bytes(), skips):
            yield from pack(book_chapters(block))
