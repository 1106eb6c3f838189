"""Task results: accuracy ± standard error, centred accuracy; the suite's JSON report and the table.

accuracy  = mean of per-problem scores s_i (1/0, or a fraction for pass@1 over several samples)
stderr    = sample standard deviation of s_i / √n
centred   = (accuracy − chance) / (1 − chance)         (0 = guessing, 1 = perfect)
"""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass
class TaskResult:
    name: str
    accuracy: float
    stderr: float
    n: int
    chance: float
    extra: dict = field(default_factory=dict)  # e.g. shots, pass@k

    @property
    def centered(self) -> float:
        return (self.accuracy - self.chance) / (1.0 - self.chance)

    def to_dict(self) -> dict:
        numbers = ("accuracy", "stderr", "n", "chance", "centered")
        return {**{key: getattr(self, key) for key in numbers}, **self.extra}


def mean_and_stderr(scores: list[float]) -> tuple[float, float]:
    n = len(scores)
    mean = sum(scores) / n if n else 0.0
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1) / n)


def guess_rate(problems: list[dict]) -> float:
    return sum(1.0 / len(p["choices"]) for p in problems) / len(problems)


def task_result(name: str, scores: list[float], chance: float, **extra) -> TaskResult:
    accuracy, stderr = mean_and_stderr(scores)
    return TaskResult(name, accuracy, stderr, len(scores), chance, extra)


def build_report(suite: str, checkpoint: Path, step: int, started: float, results: list[TaskResult]) -> dict:
    checkpoint = Path(checkpoint).resolve()
    centred = [r.centered for r in results]
    core = sum(centred) / len(centred) if suite == "base" and centred else None  # the CORE-like headline
    return {
        "suite": suite,
        "stage": checkpoint.parent.name or "other",  # the run directory's name: base, sft, rl, ...
        "checkpoint": str(checkpoint),
        "step": step,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 2),
        "tasks": {r.name: r.to_dict() for r in results},
        "core": core,
    }


def print_table(report: dict) -> None:
    table = Table(title=f"{report['suite']} suite · {report['stage']} step {report['step']}")
    for column in ("task", "accuracy", "± stderr", "chance", "centred", "n"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for name, r in report["tasks"].items():
        numbers = f"{r['accuracy']:.4f}", f"{r['stderr']:.4f}", f"{r['chance']:.3f}", f"{r['centered']:+.4f}"
        table.add_row(name, *numbers, str(r["n"]))
    console = Console()
    console.print(table)
    if report["core"] is not None:
        console.print(
            f"CORE-like (mean centred accuracy over {len(report['tasks'])} tasks): {report['core']:.4f}"
        )
    console.print(f"{report['seconds']:.1f} s")
