"""The user's own files: `.txt` and `.md` (one file, one document), `.jsonl` (one `text` field per line) and
`.parquet` (one `text` column value per row), given as files or folders searched recursively.

Long text files are cut at paragraph breaks into documents of at most ~24k characters; JSONL and parquet
rows are taken as the documents they already are. Unreadable files and rows are counted, never dropped
silently.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from picochat.data.parsers import clean_text, read_utf8, split_long
from picochat.errors import UserError

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
SUFFIXES = TEXT_SUFFIXES | {".jsonl", ".parquet"}


def input_files(paths: Iterable[Path]) -> list[Path]:
    """Every readable input file named by `paths` (folders searched recursively), in a stable order."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES))
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
    """The `text` column of a parquet file (checked to exist and hold strings)."""
    from picochat.data.shards import iter_documents

    yield from iter_documents([path])


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
