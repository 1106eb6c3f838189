"""`picochat eval`: bits per byte and chat probes (no subcommand), or the benchmark suites
(`fetch`, `base`, `chat`, `contamination`; `--list` lists their tasks)."""

from picochat import settings
from picochat.errors import UserError
from picochat.settings import add_command

HELP = "Evaluate a checkpoint: bits per byte, benchmark suites (base, chat), contamination check."


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, "eval", run_bpb, settings.BpbOptions, HELP)
    parser.add_argument("--list", action="store_true", help="list the benchmark tasks and exit")
    suites = parser.add_subparsers(dest="suite", metavar="{fetch,base,chat,contamination}")
    add_command(suites, "fetch", run_fetch, settings.BenchmarkOptions)
    add_command(suites, "base", run_suite, settings.BaseSuiteOptions)
    add_command(suites, "chat", run_suite, settings.ChatSuiteOptions)
    add_command(suites, "contamination", run_contamination, settings.ContaminationOptions)


def run_list() -> int:
    from rich.console import Console
    from rich.table import Table

    from picochat.evaluation.benchmarks import list_benchmarks

    columns = ("task", "kind", "split", "problems", "on disk", "licence", "package", "title")
    table = Table(*columns, title="benchmark tasks ('picochat eval fetch' to get them)")
    table.columns[3].justify = "right"
    keys = ("name", "kind", "split", "size", "fetched", "licence", "package", "title")
    for row in list_benchmarks():
        row = {**row, "size": f"{row['size']:,}", "fetched": "yes" if row["fetched"] else "no"}
        table.add_row(*(row[k] for k in keys))
    table.add_row(
        "spelling", "answer", "-", "200", "yes", "MIT (picochat)", "-", "letter counts in held-out words"
    )
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(table)
    return 0


def run_fetch(options: settings.BenchmarkOptions, args) -> None:
    from picochat.evaluation.benchmarks import fetch_benchmarks, tasks_dir

    for name, n in fetch_benchmarks(list(options.tasks) or None).items():
        print(f"  {name:<16} {n:>7,} problems")
    print(f"benchmark tasks in {tasks_dir()}")


def run_suite(options, args) -> None:
    from picochat.evaluation.suite import evaluate_checkpoint
    from picochat.paths import checkpoints_dir

    checkpoint = options.checkpoint or checkpoints_dir() / ("base" if args.suite == "base" else "sft")
    evaluate_checkpoint(args.suite, checkpoint, options, dtype_name=options.dtype)


def run_contamination(options: settings.ContaminationOptions, args) -> None:
    from picochat.data.fetch import fetch_task_data
    from picochat.evaluation.benchmarks import BENCHMARKS, load_task, tasks_dir
    from picochat.evaluation.contamination import ContaminationError, check_contamination, mixture_documents

    names = options.tasks or [n for n in BENCHMARKS if (tasks_dir() / f"{n}.jsonl").exists()]
    if not names:
        raise UserError("no benchmark task is on disk; run 'picochat eval fetch' first")
    tasks = {name: load_task(name) for name in names}
    mixture = options.mixture or recorded_mixture(options.checkpoint)
    fetch_task_data(mixture)
    documents = mixture_documents(mixture, options.conversations)
    try:
        found = check_contamination(documents, tasks, options.threshold, options.ngram)
    except ContaminationError as error:
        print_overlaps(error.overlaps, options.ngram)
        raise
    print_overlaps(found, options.ngram)
    print(f"no task above {options.threshold:.1%}: the SFT mixture is clean of these benchmarks")


def recorded_mixture(checkpoint) -> str:
    """The task mixture an SFT checkpoint was trained on (its meta.json's `mix`)."""
    from picochat.checkpoint import read_meta, resolve_checkpoint
    from picochat.paths import checkpoints_dir

    path = resolve_checkpoint(checkpoint or checkpoints_dir() / "sft")
    mixture = read_meta(path).config.get("mix")
    if not mixture:
        raise UserError(f"{path} records no SFT task mixture (not an SFT checkpoint?); pass --mixture")
    print(f"checking the mixture {path} was trained on: {mixture}")
    return mixture


def print_overlaps(found, n: int) -> None:
    print(f"{n}-gram overlap between the SFT sample and each benchmark:")
    for o in found:
        sources = f"  from {', '.join(f'{k} ({v})' for k, v in o.sources.items())}" if o.sources else ""
        print(f"  {o.task:<16} {o.contaminated:>6,} / {o.problems:<7,} ({o.fraction:.2%}){sources}")


def run_bpb(options: settings.BpbOptions, args) -> int:
    import torch

    from picochat.checkpoint import load_model
    from picochat.data.loader import validation_batches
    from picochat.data.shards import list_shards
    from picochat.engine import Engine
    from picochat.evaluation.bpb import evaluate_bpb
    from picochat.evaluation.probes import print_probes, run_chat_probes
    from picochat.paths import checkpoints_dir
    from picochat.runtime import compute_dtype, pick_device

    if args.list:
        return run_list()
    device = pick_device()
    model, tokenizer, meta = load_model(options.checkpoint or checkpoints_dir() / "base", device)
    shards, rows, seq_len = list_shards(options.corpus, "val"), options.batch_size, model.config.seq_len
    batches = validation_batches(shards, tokenizer, rows, seq_len, max_batches=options.batches, device=device)
    token_bytes = torch.as_tensor(tokenizer.token_byte_lengths(), dtype=torch.int64)
    r = evaluate_bpb(model, batches, token_bytes, device, compute_dtype(device, options.dtype))
    print(
        f"checkpoint step {meta.step}: validation bits per byte {r['bpb']:.4f}, loss {r['loss']:.4f}"
        f" nats/token, perplexity {r['ppl']:.2f} ({r['tokens']:,} tokens, {r['bytes']:,} bytes)"
    )
    if options.probes:
        print_probes(run_chat_probes(Engine(model, tokenizer, tool="calculator")))
    return 0
