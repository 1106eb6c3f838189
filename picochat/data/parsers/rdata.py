"""R lazy-load databases (`Rdata.rdb`), such as the Jane Austen novels in Debian's r-cran-janeaustenr.

An `.rdb` file is a run of entries, each a 4-byte big-endian length and a zlib stream. A stream holds one R
object in R's XDR serialisation: `X\\n`, three version integers, (in format 3) the native encoding, then
the object. We read only character vectors (STRSXP): a flags word, a length, then one CHARSXP per element
(flags, byte length or -1 for NA, bytes). In janeaustenr each vector is a novel, one element per line;
novels are split at their chapter headings. No R code is run or needed.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from picochat.data.parsers import clean_text, heading_splitter, pack

STRSXP = 16  # R's type code for a character vector
CHARSXP = 9  # R's type code for one string
NA_LENGTH = -1

_CHAPTER = heading_splitter("CHAPTER", "Chapter")


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
    """The decompressed serialisation of every entry of an `.rdb` file, in order."""
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
    """Documents (chapters) from every character vector in the R datasets (`data/Rdata.rdb`) under `root`;
    the package's code database (`R/<package>.rdb`) holds functions, not text, and is not read."""
    for path in sorted(Path(root).rglob("Rdata.rdb")):
        try:
            for payload in rdb_objects(path.read_bytes()):
                try:
                    lines = read_character_vector(payload)
                except (RFormatError, UnicodeDecodeError):
                    skips["R object is not a UTF-8 character vector"] += 1
                    continue
                book = clean_text("\n".join(line or "" for line in lines))
                if book:
                    yield from pack(_CHAPTER.split(book))
                else:
                    skips["empty R character vector"] += 1
        except (RFormatError, zlib.error):
            skips["corrupt R database"] += 1
