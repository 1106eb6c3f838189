"""Stream documents for tokenizer training and evaluation from text files, folders, JSONL and parquet.

A source is one path given on the command line:
  - a folder: every .txt, .md, .jsonl and .parquet file under it, in sorted order
  - .jsonl: one JSON object per line; its "text" field is a document
  - .parquet: each row's "text" column is a document (read one row group at a time)
  - any other file: UTF-8 text, one document per paragraph (paragraphs end at a blank line)

Every HELD_OUT_EVERY-th document of each source is held out: training never sees it, and
`picochat tokenizer eval` measures compression on exactly those documents.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from picochat.errors import UserError

HELD_OUT_EVERY = 100
FOLDER_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")


def is_held_out(index: int) -> bool:
    """Whether the `index`-th document of a source (counting from 0) is held out for evaluation."""
    return index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def iter_documents(source: str | Path) -> Iterator[str]:
    """Every document of one source, in a fixed order."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in FOLDER_SUFFIXES)
        if not files:
            raise UserError(
                f"folder {path} holds no {', '.join(FOLDER_SUFFIXES)} files to read documents from"
            )
        for file in files:
            yield from iter_documents(file)
    elif not path.exists():
        raise UserError(f"input {path} does not exist: give a text, .jsonl or .parquet file, or a folder")
    elif path.suffix == ".jsonl":
        yield from _jsonl_documents(path)
    elif path.suffix == ".parquet":
        yield from _parquet_documents(path)
    else:
        yield from _paragraphs(path)


def _jsonl_documents(path: Path) -> Iterator[str]:
    for number, line in _utf8_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise UserError(f'{path} line {number} has no "text" string field; each line needs one')
        yield record["text"]


def _parquet_documents(path: Path) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path} is not a readable parquet file ({exc})") from None
    if "text" not in parquet.schema_arrow.names:
        raise UserError(f"{path} has no 'text' column (its columns: {', '.join(parquet.schema_arrow.names)})")
    for group in range(parquet.num_row_groups):
        try:
            texts = parquet.read_row_group(group, columns=["text"]).column("text").to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise UserError(f"{path} row group {group} cannot be read ({exc}); the file is damaged") from None
        for text in texts:
            if isinstance(text, str) and text:
                yield text


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file; a UserError naming the line where it is not UTF-8."""
    try:
        file = path.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    with file:
        for number, raw in enumerate(file, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{path} line {number} is not UTF-8 text (byte {raw[exc.start]:#04x} at column "
                    f"{exc.start + 1}); give text files in UTF-8, .jsonl or .parquet"
                ) from None


def _paragraphs(path: Path) -> Iterator[str]:
    paragraph: list[str] = []
    for _, line in _utf8_lines(path):
        paragraph.append(line)
        if not line.strip() and len(paragraph) > 1:  # a blank line closes the paragraph it follows
            yield "".join(paragraph)
            paragraph = []
    if paragraph:
        yield "".join(paragraph)


def training_documents(
    sources: Iterable[str | Path],
    doc_chars: int = 10_000,
    total_chars: int | None = None,
    on_document: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """The documents to train on: held-out ones skipped, each cut to `doc_chars`, `total_chars` in all.

    Sources are read in turn, one document from each (round robin), so that a total cap takes a fair
    share from every source. `on_document(chars)` is called for each document yielded (for progress).
    """
    streams = [_numbered_training_documents(source) for source in sources]
    remaining = total_chars if total_chars is not None else float("inf")
    while streams and remaining > 0:
        for stream in list(streams):
            document = next(stream, None)
            if document is None:
                streams.remove(stream)
                continue
            document = document[: int(min(doc_chars, remaining))]
            remaining -= len(document)
            if on_document is not None:
                on_document(len(document))
            yield document
            if remaining <= 0:
                return


def _numbered_training_documents(source: str | Path) -> Iterator[str]:
    for index, document in enumerate(iter_documents(source)):
        if not is_held_out(index):
            yield document


def held_out_documents(source: str | Path, total_chars: int = 1_000_000) -> list[str]:
    """Up to `total_chars` of the documents of `source` that training skipped."""
    documents: list[str] = []
    for index, document in enumerate(iter_documents(source)):
        if is_held_out(index):
            documents.append(document[:total_chars])
            total_chars -= len(documents[-1])
            if total_chars <= 0:
                break
    return documents
