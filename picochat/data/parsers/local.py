"""The user's own files: the one reader behind `picochat data build --input` and `picochat tokenizer train
--input` (docs/data.md, "Your own files").

- `.txt`, `.md`, `.markdown`: one file, one document, cut at paragraph breaks past ~24k characters;
- `.jsonl`: the string `text` field of each line; `.parquet`: the `text` column, one row per document;
- a folder: every such file under it (suffixes in any case), in sorted path order.

A file that is not UTF-8 and a JSONL line that is not JSON or has no `text` are counted in `skips`; a
missing path, a file of another type, a folder without any such file and a parquet file without a `text`
column are errors.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from picochat.data.parsers import clean_text, read_utf8, split_long
from picochat.data.shards import iter_documents
from picochat.errors import UserError

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
SUFFIXES = TEXT_SUFFIXES | {".jsonl", ".parquet"}


def input_files(paths: Iterable[Path]) -> list[Path]:
    """Every readable input file named by `paths` (folders searched recursively), in a stable order."""
    files: list[Path] = []
    suffixes = ", ".join(sorted(SUFFIXES))
    for path in map(Path, paths):
        if path.is_dir():
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
    """The `text` field of each line of a JSONL file; a bad line is counted under its reason, with the file
    and the first line where it happened."""
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
    """Documents from the user's files and folders."""
    for path in input_files(paths):
        suffix = path.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            text = read_utf8(path, skips)
            if text is not None:
                yield from split_long(clean_text(text))
        elif suffix == ".jsonl":
            yield from jsonl_documents(path, skips)
        else:
            for text in iter_documents([path]):
                if text:
                    yield text
                else:
                    skips["parquet row has no text"] += 1
