"""`picochat tokenizer`: train, evaluate and inspect the byte-level BPE tokenizer.

picochat tokenizer train --input data/ --vocab-size 8192          # -> $PICOCHAT_HOME/tokenizer
picochat tokenizer train --input shard_00.parquet notes.txt --vocab-size 4096 --max-chars 20000000
picochat tokenizer fetch-reference                                # GPT-2 / GPT-4 ranks, via npm
picochat tokenizer eval --input data/                             # bytes per token, held-out text
picochat tokenizer show "Hello world!"                            # the tokens of a text
"""

from __future__ import annotations

import time
from pathlib import Path

from picochat import paths
from picochat.errors import UserError

HELP = "Train, evaluate and inspect the byte-level BPE tokenizer."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("tokenizer", help=HELP, description=HELP)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = actions.add_parser("train", help="learn a tokenizer from text files, folders, JSONL or parquet")
    train.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="text files, folders, .jsonl (a 'text' field) or .parquet (a 'text' column)",
    )
    train.add_argument(
        "--vocab-size", type=int, default=8192, help="tokens in all, special tokens included (default 8192)"
    )
    train.add_argument(
        "--output", type=Path, default=None, help=f"directory to save to (default {paths.tokenizer_dir()})"
    )
    train.add_argument(
        "--doc-chars",
        type=int,
        default=10_000,
        help="use at most this many characters of each document (default 10000)",
    )
    train.add_argument(
        "--max-chars",
        type=int,
        default=1_000_000_000,
        help="stop after this many characters in all (default 1e9)",
    )
    train.add_argument("--force", action="store_true", help="replace an existing tokenizer at the output")
    train.set_defaults(func=run_train)

    evaluate = actions.add_parser("eval", help="bytes per token on held-out text, next to GPT-2 and GPT-4")
    evaluate.add_argument("--input", nargs="+", required=True, metavar="PATH", help="the sources to measure")
    evaluate.add_argument(
        "--tokenizer", type=Path, default=None, help=f"tokenizer directory (default {paths.tokenizer_dir()})"
    )
    evaluate.add_argument(
        "--held-out-chars",
        type=int,
        default=1_000_000,
        help="held-out characters to measure per source (default 1e6)",
    )
    evaluate.set_defaults(func=run_eval)

    fetch = actions.add_parser("fetch-reference", help="fetch GPT-2 and GPT-4 rank files (npm js-tiktoken)")
    fetch.set_defaults(func=run_fetch_reference)

    show = actions.add_parser("show", help="print the tokens of a text")
    show.add_argument("text")
    show.add_argument("--tokenizer", type=Path, default=None, help="tokenizer directory")
    show.set_defaults(func=run_show)


MAX_VOCAB = 1 << 20  # far beyond any useful size, small enough that a typo fails fast


def check_whole(value: int, flag: str, low: int, high: int | None = None) -> None:
    """A whole-number flag within [low, high], else a UserError naming the flag."""
    if value < low or (high is not None and value > high):
        bound = f"between {low:,} and {high:,}" if high is not None else f"at least {low:,}"
        raise UserError(f"{flag} must be {bound}, got {value:,}")


def run_train(args) -> int:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from picochat.tokenizer import Tokenizer
    from picochat.tokenizer.corpus import training_documents

    check_whole(args.vocab_size, "--vocab-size", 1, MAX_VOCAB)
    check_whole(args.doc_chars, "--doc-chars", 1)
    check_whole(args.max_chars, "--max-chars", 1)
    output = args.output if args.output is not None else paths.tokenizer_dir()
    if output.exists() and not args.force:
        raise UserError(
            f"{output} already exists; pass --force to replace it (the old one stays intact until the new "
            "tokenizer is complete), or choose another --output. Checkpoints keep their own copy."
        )
    console = Console(stderr=True)
    start = time.perf_counter()
    read = {"documents": 0, "chars": 0}
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("reading documents", total=None)

        def on_document(chars: int) -> None:
            read["documents"] += 1
            read["chars"] += chars
            if read["documents"] % 1000 == 1:
                bar.update(
                    task,
                    description=f"reading: {read['documents']:,} documents, {read['chars'] / 1e6:,.1f}M chars",
                )

        documents = training_documents(args.input, args.doc_chars, args.max_chars, on_document)

        def counted():
            yield from documents
            bar.update(
                task,
                description=f"read {read['documents']:,} documents, {read['chars'] / 1e6:,.1f}M "
                f"chars; learning {args.vocab_size:,} tokens",
            )

        tokenizer = Tokenizer.train(counted(), args.vocab_size)
    directory = tokenizer.save(output)
    seconds = time.perf_counter() - start
    print(
        f"trained a {tokenizer.vocab_size:,}-token tokenizer on {read['chars'] / 1e6:,.1f}M characters "
        f"({read['documents']:,} documents) in {seconds:.1f}s; saved to {directory}"
    )
    return 0


def run_eval(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from picochat.evaluation.compression import evaluate_compression
    from picochat.tokenizer import Tokenizer

    check_whole(args.held_out_chars, "--held-out-chars", 1)
    result = evaluate_compression(Tokenizer.load(args.tokenizer), args.input, args.held_out_chars)
    table = Table(title="bytes per token on held-out text (higher is better)")
    table.add_column("source", overflow="fold")
    table.add_column("bytes", justify="right")
    for name in result.tokenizers:
        table.add_column(name, justify="right")
    for source, size, values in result.rows:
        table.add_row(source, f"{size:,}", *(f"{value:.3f}" for value in values))
    console = Console()
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}")
    return 0


def run_fetch_reference(args) -> int:
    from picochat.tokenizer.reference import fetch_references

    for directory in fetch_references():
        print(f"saved {directory}")
    return 0


def run_show(args) -> int:
    from picochat.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(args.tokenizer)
    ids = tokenizer.encode(args.text)
    pieces = [tokenizer.decode_bytes([token_id]) for token_id in ids]
    print(f"{len(ids)} tokens for {len(args.text.encode('utf-8'))} bytes")
    for token_id, piece in zip(ids, pieces):
        print(f"{token_id:>7}  {piece!r}")
    return 0
