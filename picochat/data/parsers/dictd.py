"""dictd dictionaries (`name.dict.dz` + `name.index`), such as GCIDE (dict-gcide) and FOLDOC (dict-foldoc).

The `.dict.dz` file is dictzip, which is gzip with an extra header field, so `gzip` reads it whole. The
`.index` file has one line per headword: `word<TAB>offset<TAB>length`, the numbers in dictd's base64
(digits `A-Za-z0-9+/`, most significant first). Several headwords point at the same entry; we read each
entry once, in file (alphabetical) order, and pack runs of entries into documents.

GCIDE's markup is stripped: pronunciations `\\Ex*cul"pa*ble\\`, cross-reference braces `{Allow}`, source tags
like `[1913 Webster]` or `[WordNet 1.5 +PJC]`, and character codes like `['e]` become plain Unicode.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from picochat.data.parsers import clean_text, pack

B64_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# GCIDE character codes: a mark and a letter (`['e]` is e-acute) or a name (`[ae]` is ae-ligature).
# The marks, as combining characters: acute, grave, diaeresis, macron, tilde, dot, cedilla, macron,
# dot below, circumflex.
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
    """One dictionary entry as plain text: markup stripped, indentation removed."""
    entry = _SOURCE_TAG.sub("", _GLUED_HEADWORD.sub("", entry))
    entry = _PRONUNCIATION.sub("", entry)
    entry = _CROSS_REF.sub(r"\1", entry)
    entry = _CHAR_CODE.sub(_char_code, entry)
    lines = [" ".join(line.split()) for line in entry.split("\n")]  # also the wide spacing before "--Author"
    entry = "\n".join(lines).replace(" ,", ",")
    return clean_text(_LABEL_ONLY_LINE.sub("\n", entry))


def dictd_entries(dict_bytes: bytes, index_text: str, skips: Counter[str]) -> Iterator[str]:
    """Yield each distinct entry of a dictd dictionary in file order, cleaned."""
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
        entry = clean_gcide_entry(text)
        if entry:
            yield entry
        else:
            skips["empty dictionary entry"] += 1


def parse_dictd(root: Path, skips: Counter[str]) -> Iterator[str]:
    """Documents from every `*.dict.dz` (with its `.index`) under `root`."""
    for dict_path in sorted(Path(root).rglob("*.dict.dz")):
        index_path = dict_path.with_name(dict_path.name.removesuffix(".dict.dz") + ".index")
        if not index_path.is_file():
            skips["dictionary without .index"] += 1
            continue
        dict_bytes = gzip.decompress(dict_path.read_bytes())
        index_text = index_path.read_text(encoding="utf-8", errors="replace")
        yield from pack(dictd_entries(dict_bytes, index_text, skips), min_chars=8_000, max_chars=16_000)
