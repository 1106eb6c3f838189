"""Task results: accuracy ± standard error, centred accuracy; the suite's JSON report and the table.

accuracy  = mean of per-problem scores s_i (1/0, or a fraction for pass@1 over several samples)
stderr    = sample standard deviation of s_i / √n
centred   = (accuracy − baseline) / (1 − baseline)     (0 = the random baseline, 1 = perfect)
CORE      = mean centred accuracy over the CORE tasks run (the DCLM paper's has 22; the report names the rest)
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


def core_summary(results: list[TaskResult], core_tasks, core_missing) -> dict:
    """The CORE headline over the CORE tasks run, and which of CORE's tasks it lacks."""
    centred = [r.centered for r in results if r.name in core_tasks]
    run = {r.name for r in results}
    missing = [name for name in core_tasks if name not in run] + list(core_missing)
    return {"core": sum(centred) / len(centred) if centred else None, "core_tasks": len(centred)} | {
        "core_missing": missing
    }


def build_report(suite: str, checkpoint: Path, step: int, started: float, results: list[TaskResult]) -> dict:
    checkpoint = Path(checkpoint).resolve()
    return {
        "suite": suite,
        "stage": checkpoint.parent.name or "other",  # the run directory's name: base, sft, rl, ...
        "checkpoint": str(checkpoint),
        "step": step,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 2),
        "tasks": {r.name: r.to_dict() for r in results},
        "core": None,
    }


def print_table(report: dict) -> None:
    table = Table(title=f"{report['suite']} suite · {report['stage']} step {report['step']}")
    columns = (
        "task",
        "scoring",
        "rule",
        "shots (mean used)",
        "accuracy",
        "± stderr",
        "baseline",
        "centred",
        "n",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in columns[:3] else "right")
    for name, r in report["tasks"].items():
        shots = f"{r['shots']} ({r['mean_shots_used']:.2f})" if "shots" in r else "-"
        numbers = f"{r['accuracy']:.4f}", f"{r['stderr']:.4f}", f"{r['chance']:.3f}", f"{r['centered']:+.4f}"
        table.add_row(name, r.get("scoring", "-"), r.get("rule", "-"), shots, *numbers, str(r["n"]))
    console = Console()
    console.print(table)
    if report["core"] is not None:
        console.print(core_line(report))
    console.print(f"{report['seconds']:.1f} s")


def core_line(report: dict) -> str:
    n, missing = report["core_tasks"], report["core_missing"]
    line = f"CORE over {n} of {n + len(missing)} tasks: {report['core']:.4f}"
    rules = {r.get("rule") for r in report["tasks"].values()} - {"greedy", "per-token"}
    if rules:
        line += f" (with rule {', '.join(sorted(rules))}; CORE's own is per-token)"
    return f"{line}. Not run: {', '.join(missing)}; the published CORE averages all of them."
