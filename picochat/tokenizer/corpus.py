"""Documents for tokenizer training and evaluation: a source is one path, read as `picochat data build
--input` reads it. Every HELD_OUT_EVERY-th document is held out for `picochat tokenizer eval`.
"""

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from picochat.data.parsers import parse_local

HELD_OUT_EVERY = 100


def iter_documents(source: str | Path) -> Iterator[str]:
    """Every document of one source, in a fixed order; what had to be skipped is reported at the end."""
    skips: Counter[str] = Counter()
    yield from parse_local([Path(source).expanduser()], skips)
    if skips:
        counts = ", ".join(f"{n} × {reason}" for reason, n in sorted(skips.items()))
        print(f"{source}: skipped {counts}", file=sys.stderr)


def split_documents(source: str | Path, held_out: bool) -> Iterator[str]:
    """The documents of `source` that training reads, or (`held_out`) every HELD_OUT_EVERY-th it skips."""
    for index, document in enumerate(iter_documents(source)):
        if (index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1) == held_out:
            yield document


def training_documents(
    sources: Iterable[str | Path],
    doc_chars: int = 10_000,
    total_chars: int | None = None,
    on_document: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """The documents to train on, each cut to `doc_chars`, `total_chars` in all. Sources take turns, so that
    a total cap takes a fair share of each; `on_document(chars)` reports progress."""
    streams = [split_documents(source, held_out=False) for source in sources]
    remaining = total_chars if total_chars is not None else float("inf")
    while streams and remaining > 0:
        stream = streams.pop(0)
        document = next(stream, None)
        if document is None:
            continue  # the source is used up
        streams.append(stream)
        document = document[: int(min(doc_chars, remaining))]
        remaining -= len(document)
        if on_document is not None:
            on_document(len(document))
        yield document


def held_out_documents(source: str | Path, total_chars: int = 1_000_000) -> list[str]:
    """Up to `total_chars` of the documents of `source` that training skipped."""
    documents: list[str] = []
    for document in split_documents(source, held_out=True):
        documents.append(document[:total_chars])
        total_chars -= len(documents[-1])
        if total_chars <= 0:
            break
    return documents
