"""Stream documents for tokenizer training and evaluation from the user's files and folders.

A source is one path given on the command line, read exactly as `picochat data build --input` reads it
(`picochat.data.parsers.local`): `.txt`/`.md` files one document each (long ones cut at paragraph
breaks), the `text` of each `.jsonl` line and `.parquet` row, folders searched recursively. Lines and
files that cannot be read are counted, skipped and reported once the source is read.

Every HELD_OUT_EVERY-th document of each source is held out: training never sees it, and
`picochat tokenizer eval` measures compression on exactly those documents.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from picochat.data.parsers import parse_local

HELD_OUT_EVERY = 100


def is_held_out(index: int) -> bool:
    """Whether the `index`-th document of a source (counting from 0) is held out for evaluation."""
    return index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def iter_documents(source: str | Path) -> Iterator[str]:
    """Every document of one source, in a fixed order; what had to be skipped is reported at the end."""
    skips: Counter[str] = Counter()
    yield from parse_local([Path(source).expanduser()], skips)
    if skips:
        counts = ", ".join(f"{n} × {reason}" for reason, n in sorted(skips.items()))
        print(f"{source}: skipped {counts}", file=sys.stderr)


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
