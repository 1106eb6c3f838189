"""What a user sees while a model trains: a progress line or bar, and metrics as JSON lines.

Only rank 0 reports: a rich progress bar on a terminal, else a plain line every `log_every` steps. Every
step's metrics go to `metrics.jsonl`, and to TensorBoard or wandb when asked for; the wandb run id is kept in
the run directory (`wandb_id`), so a resumed run continues the same wandb run.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from picochat.atomic import atomic_write_text

WANDB_ID_FILE = "wandb_id"  # in the run directory: the wandb run a resumed run continues


class ProgressReporter:
    """A rich bar on a terminal, plain lines elsewhere."""

    def __init__(self, total_steps: int, first_step: int, *, enabled: bool, log_every: int):
        self.total_steps, self.enabled, self.log_every = total_steps, enabled, log_every
        self.steady_since: float | None = None
        self.steady_step = first_step
        self.bar = None
        if enabled and sys.stdout.isatty():
            columns = [TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
            self.bar = Progress(*columns, TextColumn("{task.fields[info]}"))
            self.task = self.bar.add_task("training", total=total_steps, completed=first_step, info="")
            self.bar.start()

    def set_total(self, total_steps: int) -> None:
        self.total_steps = total_steps
        if self.bar is not None:
            self.bar.update(self.task, total=total_steps)

    def update(
        self, step: int, loss: float, tokens_per_s: float, mfu: float, eta_s: float | None = None
    ) -> None:
        """Show step `step` (0-based); `eta_s` overrides the ETA (a time budget knows its own)."""
        if not self.enabled:
            return
        # the ETA is paced by the steps after the first one, which pays for compilation and warm caches
        if self.steady_since is None:
            self.steady_since, self.steady_step = time.perf_counter(), step
        done = step - self.steady_step
        elapsed = time.perf_counter() - self.steady_since
        eta = elapsed / done * (self.total_steps - step - 1) if done else 0.0
        eta = max(0.0, eta_s) if eta_s is not None else eta
        info = f"loss {loss:.4f} | {tokens_per_s:,.0f} tok/s | MFU {100 * mfu:.1f}%"
        if self.bar is not None:
            self.bar.update(self.task, completed=step + 1, info=info)
        elif step % self.log_every == 0 or step + 1 == self.total_steps:
            total = self.total_steps or "?"  # a time budget's horizon is known once its decay is planned
            print(f"step {step + 1:5d}/{total} | {info} | ETA {format_duration(eta)}", flush=True)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text)
        elif self.enabled:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class MetricsLog:
    """Append-only JSON lines (resume drops entries after its step), also to TensorBoard or wandb."""

    def __init__(
        self,
        path: Path,
        enabled: bool = True,
        *,
        tensorboard: bool = False,
        wandb_project: str | None = None,
        config: dict | None = None,
    ):
        self.path, self.enabled = Path(path), enabled
        self.tb = self.wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.path.parent / "tensorboard"))
            except ImportError:
                print(
                    "tensorboard is not installed; pip install tensorboard to use --tensorboard",
                    file=sys.stderr,
                )
        if wandb_project:
            self.wandb = start_wandb(wandb_project, self.path.parent, config)

    def truncate_after(self, step: int) -> None:
        """Keep only entries up to `step`: a resumed run rewrites what the killed run logged after it."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:
                continue  # a line cut short by a kill
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        step = record.get("step", 0)
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if self.tb is not None:
            for k, v in numbers.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(numbers, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def start_wandb(project: str, run_dir: Path, config: dict | None = None):
    """The wandb run of `run_dir` (its saved `wandb_id`), else a new one; None without wandb."""
    try:
        import wandb
    except ImportError:
        print("wandb is not installed; pip install wandb to use --wandb", file=sys.stderr)
        return None
    id_file = Path(run_dir) / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else ""
    if not run_id:
        run_id = secrets.token_hex(4)  # wandb ids: letters and digits
        atomic_write_text(id_file, run_id)
    config = json.loads(json.dumps(config, default=str)) if config else None  # paths and the like as text
    return wandb.init(
        project=project, dir=str(run_dir), id=run_id, resume="allow", name=Path(run_dir).name, config=config
    )


def format_duration(seconds: float) -> str:
    h, rem = divmod(max(0, int(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
