"""The user's own files: the one reader behind `picochat data build --input` and `picochat tokenizer train
--input` (docs/data.md, "Your own files").

- `.txt`, `.md`, `.markdown`: one file, one document (UTF-8; cleaned by `clean_text`); a long file is cut
  at paragraph breaks into documents of at most ~24k characters;
- `.jsonl`: the string `text` field of each line; `.parquet`: the `text` column, one row per document;
- a folder: every such file under it (suffixes in any case: `.TXT` counts), in sorted path order.

A file that is not UTF-8 and a JSONL line that is not JSON or has no `text` are counted in `skips` under a
reason and skipped, never dropped silently; a missing path, a file of another type, a folder without any
such file and a parquet file without a `text` column are errors.
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
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not found:
                raise UserError(
                    f"folder {path} holds no {', '.join(sorted(SUFFIXES))} files to read documents from"
                )
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise UserError(
                    f"{path}: unsupported file type {path.suffix!r}; use {', '.join(sorted(SUFFIXES))}"
                )
            files.append(path)
        else:
            raise UserError(
                f"input {path} does not exist; pass files or folders of .txt, .md, .jsonl or .parquet"
            )
    return files


def jsonl_documents(path: Path, skips: Counter[str]) -> Iterator[str]:
    """The `text` field of each line of a JSONL file."""
    with open(path, "rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                skips["JSONL line is not UTF-8"] += 1
                continue
            except json.JSONDecodeError:
                skips["JSONL line is not valid JSON"] += 1
                continue
            text = record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str):
                skips["JSONL line has no string 'text' field"] += 1
                continue
            yield text


def parquet_documents(path: Path, skips: Counter[str]) -> Iterator[str]:
    """The `text` column of a parquet file (checked to exist and hold strings); empty rows are counted."""
    for text in iter_documents([path]):
        if text:
            yield text
        else:
            skips["parquet row has no text"] += 1


def parse_local(paths: Iterable[Path], skips: Counter[str]) -> Iterator[str]:
    """Documents from the user's files and folders."""
    for path in input_files(paths):
        suffix = path.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            text = read_utf8(path, skips)
            documents: Iterable[str] = [] if text is None else split_long(clean_text(text))
        elif suffix == ".jsonl":
            documents = jsonl_documents(path, skips)
        else:
            documents = parquet_documents(path, skips)
        yield from documents
