"""Running a whole suite on a checkpoint: pick the problems, split them across ranks, score, gather,
summarise, write the report and show the table.

    from picochat.evaluation.suite import evaluate_checkpoint
    from picochat.settings import BaseSuiteOptions
    report = evaluate_checkpoint("base", checkpoint_dir, BaseSuiteOptions(max_per_task=100))
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from picochat.errors import UserError
from picochat.evaluation.base import (
    BASE_KINDS,
    CORE_TASKS,
    EXTRA_TASKS,
    BaseTask,
    evaluate_base_task,
    summarize_base_task,
)
from picochat.evaluation.benchmarks import get_benchmark, load_task
from picochat.evaluation.chat import (
    CHAT_TASKS,
    CODE_TASKS,
    chat_chance,
    evaluate_chat_task,
    pass_at_k,
    spelling_problems,
)
from picochat.evaluation.results import TaskResult, build_report, print_table, task_result, write_report
from picochat.evaluation.runner import Progress, gather, my_share
from picochat.runtime import DistInfo
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
        out[name] = int(shots) if shots else {**CORE_TASKS, **EXTRA_TASKS}.get(name, 0)
    return out


def run_base_suite(
    model, tokenizer, options: SuiteOptions, dist: DistInfo, device, dtype
) -> list[TaskResult]:
    results = []
    progress = Progress(dist.is_main)
    for name, shots in parse_tasks(options.tasks, CORE_TASKS).items():
        kind = get_benchmark(name).kind
        if kind not in BASE_KINDS:
            raise UserError(
                f"{name} is a {kind} task, not a log-likelihood one; it belongs to 'picochat eval chat'"
            )
        task = BaseTask(name, kind, load_task(name, options.benchmarks_root),
                        options.shots if options.shots is not None else shots)  # fmt: skip
        mine = my_share(select_indices(len(task.problems), options.max_per_task, name, options.seed), dist)
        with progress.task(name, len(mine)) as advance:
            outcomes = evaluate_base_task(model, tokenizer, task, mine, device, dtype, options.batch_tokens,
                                          advance, options.seed)  # fmt: skip
        results.append(summarize_base_task(task, gather(outcomes, dist)))
    return results


def load_chat_problems(name: str, root: Path | None) -> list[dict]:
    if name == "spelling":
        return spelling_problems()
    return load_task(name, root)


def run_chat_suite(engine, options: SuiteOptions, dist: DistInfo) -> list[TaskResult]:
    results = []
    progress = Progress(dist.is_main)
    names = [spec.partition(":")[0] for spec in options.tasks] or list(CHAT_TASKS)
    for name in names:
        if name not in CHAT_TASKS:
            raise UserError(f"{name!r} is not a chat task; choose from {', '.join(CHAT_TASKS)}")
        problems = load_chat_problems(name, options.benchmarks_root)
        mine = my_share(select_indices(len(problems), options.max_per_task, name, options.seed), dist)
        samples = options.samples if name in CODE_TASKS else 1  # the others are answered greedily
        with progress.task(name, len(mine)) as advance:
            outcomes = evaluate_chat_task(engine, name, problems, mine, options.batch_size, samples,
                                          options.temperature, options.timeout_s, advance)  # fmt: skip
        outcomes = gather(outcomes, dist)
        chosen = sorted(outcomes)
        extra = {}
        if samples > 1:
            extra[f"pass_at_{samples}"] = sum(
                pass_at_k(samples, outcomes[i]["passed"], samples) for i in chosen
            ) / len(chosen)
            extra["samples"] = samples
        scores = [outcomes[i]["score"] for i in chosen]
        results.append(task_result(name, scores, chat_chance(name, [problems[i] for i in chosen]), **extra))
    return results


def evaluate_checkpoint(
    suite: str,
    checkpoint: Path,
    options: SuiteOptions,
    reports_dir: Path | None = None,
    dtype_name: str = "auto",
) -> dict:
    """Load a checkpoint, run the suite (split across torchrun ranks), write the report on rank 0."""
    from picochat.runtime import init_distributed

    dist, device = init_distributed()
    try:
        return _evaluate(suite, checkpoint, options, reports_dir, dtype_name, dist, device)
    finally:
        if dist.is_distributed:
            import torch.distributed

            torch.distributed.destroy_process_group()


def _evaluate(suite, checkpoint, options, reports_dir, dtype_name, dist, device) -> dict:
    from picochat.checkpoint import load_model, resolve_checkpoint
    from picochat.paths import reports_dir as default_reports_dir
    from picochat.runtime import compute_dtype

    started = time.time()
    checkpoint = resolve_checkpoint(checkpoint)
    model, tokenizer, meta = load_model(checkpoint, device)
    if suite == "base":
        dtype = compute_dtype(device, "fp32" if dtype_name == "auto" and device.type == "cpu" else dtype_name)
        if options.batch_tokens is None:
            options.batch_tokens = 1024 if device.type == "cpu" else 65536
        results = run_base_suite(model, tokenizer, options, dist, device, dtype)
    elif suite == "chat":
        from picochat.engine import Engine

        dtype = None if dtype_name == "auto" else dtype_name
        engine = Engine(model, tokenizer, tool="calculator", dtype=dtype, compile=options.compile)
        results = run_chat_suite(engine, options, dist)
    else:
        raise UserError(f"unknown suite {suite!r}; choose base or chat")
    report = build_report(suite, checkpoint, int(meta.get("step", 0)), started, results)
    if dist.is_main:
        report["path"] = str(write_report(report, reports_dir or default_reports_dir()))
        print_table(report)
    return report
