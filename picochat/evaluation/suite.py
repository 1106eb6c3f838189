"""A whole suite on a checkpoint: the problems chosen, split across ranks, scored, gathered, reported.
Rank r of W scores problems r, r + W, r + 2W, ... of each task; `gather` merges every rank's outcomes, so
the numbers are those of one process, whatever W is.
"""

import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch.distributed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from picochat.atomic import atomic_write_json
from picochat.checkpoint import load_model, resolve_checkpoint
from picochat.engine import Engine
from picochat.errors import UserError
from picochat.evaluation import base, chat, results
from picochat.evaluation.benchmarks import get_benchmark, load_task
from picochat.paths import reports_dir as default_reports_dir
from picochat.runtime import DistInfo, compute_dtype, init_distributed
from picochat.settings import SuiteOptions


def select_indices(n_problems: int, max_per_task: int, task: str, seed: int) -> list[int]:
    """All problems, or a seeded random `max_per_task` of them (in index order)."""
    if max_per_task <= 0 or max_per_task >= n_problems:
        return list(range(n_problems))
    return sorted(random.Random(f"{seed}-{task}-subset").sample(range(n_problems), max_per_task))


def parse_tasks(specs: list[str], defaults: dict[str, int]) -> dict[str, int]:
    """['arc_easy:5', 'piqa'] -> {'arc_easy': 5, 'piqa': default shots}."""
    if not specs:
        return dict(defaults)
    out = {}
    for spec in specs:
        name, _, shots = spec.partition(":")
        if shots and not shots.isdigit():
            raise UserError(f"in --tasks, {spec!r}: shots must be a whole number, as in arc_easy:5")
        out[name] = int(shots) if shots else {**base.CORE_TASKS, **base.EXTRA_TASKS}.get(name, 0)
    return out


def gather(outcomes: dict[int, object], dist: DistInfo) -> dict[int, object]:
    if not dist.is_distributed:
        return outcomes
    parts: list[dict | None] = [None] * dist.world_size
    torch.distributed.all_gather_object(parts, outcomes)
    return {i: outcome for part in parts for i, outcome in (part or {}).items()}


@contextlib.contextmanager
def progress_bar(enabled: bool, name: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yields advance(k), to call as problems finish: a bar on rank 0 when it writes to a terminal."""
    if not enabled or not sys.stdout.isatty():
        yield lambda k: None
        return
    columns = (TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        handle = bar.add_task(name, total=total)
        yield lambda k: bar.advance(handle, k)


def my_share(name: str, n_problems: int, options: SuiteOptions, dist: DistInfo) -> list[int]:
    return select_indices(n_problems, options.max_per_task, name, options.seed)[dist.rank :: dist.world_size]


def load_base_tasks(options: SuiteOptions) -> list[base.BaseTask]:
    """Every task of the run, read before any is scored, so a missing one stops the run at once."""
    tasks = []
    for name, shots in parse_tasks(options.tasks, base.CORE_TASKS).items():
        kind = get_benchmark(name).kind
        if kind not in base.BASE_KINDS:
            raise UserError(f"{name} is a {kind} task, not a log-likelihood one: see 'picochat eval chat'")
        shots = options.shots if options.shots is not None else shots
        tasks.append(base.BaseTask(name, kind, load_task(name, options.benchmarks_root), shots))
    return tasks


def run_base_suite(model, tokenizer, tasks, options: SuiteOptions, dist: DistInfo, device, dtype) -> list:
    done = []
    for task in tasks:
        mine = my_share(task.name, len(task.problems), options, dist)
        with progress_bar(dist.is_main, task.name, len(mine)) as advance:
            outcomes = base.evaluate_base_task(
                model,
                tokenizer,
                task,
                mine,
                device,
                dtype,
                options.batch_tokens,
                advance,
                options.seed,
                options.rule,
            )
        done.append(base.summarize_base_task(task, gather(outcomes, dist), options.rule))
    return done


def load_chat_tasks(options: SuiteOptions) -> dict[str, list[dict]]:
    """Every task's problems, read before any is asked, so a missing one stops the run at once."""
    tasks = {}
    for name in [spec.partition(":")[0] for spec in options.tasks] or list(chat.CHAT_TASKS):
        if name not in chat.CHAT_TASKS:
            raise UserError(f"{name!r} is not a chat task; choose from {', '.join(chat.CHAT_TASKS)}")
        tasks[name] = (
            chat.spelling_problems() if name == "spelling" else load_task(name, options.benchmarks_root)
        )
    return tasks


def run_chat_suite(engine, tasks, options: SuiteOptions, dist: DistInfo) -> list[results.TaskResult]:
    done = []
    asking = {key: getattr(options, key) for key in ("batch_size", "temperature", "timeout_s")}
    for name, problems in tasks.items():
        samples = options.samples if name in chat.CODE_TASKS else 1  # the others are answered greedily
        mine = my_share(name, len(problems), options, dist)
        with progress_bar(dist.is_main, name, len(mine)) as advance:
            outcomes = chat.evaluate_chat_task(
                engine, name, problems, mine, samples=samples, on_batch=advance, **asking
            )
        outcomes = gather(outcomes, dist)
        chosen = sorted(outcomes)
        extra = {}
        if samples > 1:
            passed = sum(chat.pass_at_k(samples, outcomes[i]["passed"], samples) for i in chosen)
            extra = {f"pass_at_{samples}": passed / len(chosen), "samples": samples}
        chance = results.guess_rate([problems[i] for i in chosen]) if name in chat.LETTER_TASKS else 0.0
        done.append(results.task_result(name, [outcomes[i]["score"] for i in chosen], chance, **extra))
    return done


def evaluate_checkpoint(
    suite: str, checkpoint: Path, options: SuiteOptions, reports_dir: Path | None = None, dtype_name="auto"
) -> dict:
    """Load a checkpoint, run the suite (split across torchrun ranks), write the report on rank 0."""
    if suite not in ("base", "chat"):
        raise UserError(f"unknown suite {suite!r}; choose base or chat")
    dist, device = init_distributed()
    try:
        started = time.time()
        checkpoint = resolve_checkpoint(checkpoint)
        tasks = load_chat_tasks(options) if suite == "chat" else load_base_tasks(options)
        model, tokenizer, meta = load_model(checkpoint, device)
        if suite == "chat":
            dtype = None if dtype_name == "auto" else dtype_name
            engine = Engine(model, tokenizer, tool="calculator", dtype=dtype, compile=options.compile)
            scored = run_chat_suite(engine, tasks, options, dist)
        else:
            fp32_on_cpu = dtype_name == "auto" and device.type == "cpu"
            dtype = compute_dtype(device, "fp32" if fp32_on_cpu else dtype_name)
            if options.batch_tokens is None:
                options.batch_tokens = 1024 if device.type == "cpu" else 65536
            scored = run_base_suite(model, tokenizer, tasks, options, dist, device, dtype)
        report = results.build_report(suite, checkpoint, meta.step, started, scored)
        if suite == "base":
            report |= results.core_summary(scored, base.CORE_TASKS, base.CORE_MISSING)
        if dist.is_main:
            path = Path(reports_dir or default_reports_dir()) / f"eval_{suite}_{report['stage']}.json"
            atomic_write_json(path, report, indent=2)
            report["path"] = str(path)
            results.print_table(report)
        return report
    finally:
        if dist.is_distributed:
            torch.distributed.destroy_process_group()
