"""GNU Info manuals (`*.info.gz`), such as the Python manual in Debian's python3.11-doc.

An Info file is a sequence of nodes separated by the byte 0x1f; each node starts with a header line
(`File: ..., Node: ..., Next: ...`). We drop the header, menus, the index nodes and the tag table, turn
cross references (`*note keys(): 409.`) into their plain text, and pack consecutive nodes into documents.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from picochat.data.parsers import clean_text, pack, read_utf8

SKIP_NODES = {"Top", "Index", "Python Module Index"}  # navigation, not prose

_NODE_NAME = re.compile(r"Node: ([^,\n]+)")
_MENU = re.compile(r"^\* Menu:\n(?:.*\n)*?(?=\n[^*\n]|\Z)", re.MULTILINE)
_NOTE = re.compile(r"\*[Nn]ote[ \n]+([^:]*?)(?:::|:[ \n]*[^.,;:()]*[.,;:])", re.DOTALL)


def info_nodes(text: str, skips: Counter[str]) -> Iterator[str]:
    """Yield the cleaned prose of each node of an Info file's text."""
    for node in text.split("\x1f"):
        header, _, body = node.lstrip("\n").partition("\n")
        name = _NODE_NAME.search(header)
        if not header.startswith("File:") or name is None:
            continue  # the preamble, the tag table, the local-variables trailer
        if name.group(1).strip() in SKIP_NODES:
            skips["info navigation node"] += 1
            continue
        body = _NOTE.sub(lambda m: " ".join(m.group(1).split()), _MENU.sub("", body))
        body = clean_text(body)
        if body:
            yield body
        else:
            skips["empty info node"] += 1


def parse_info(root: Path, skips: Counter[str]) -> Iterator[str]:
    """Documents from every `*.info.gz` (or plain `*.info`) under `root`."""
    for path in sorted(Path(root).rglob("*.info.gz")) + sorted(Path(root).rglob("*.info")):
        text = read_utf8(path, skips)
        if text is not None:
            yield from pack(info_nodes(text, skips))
