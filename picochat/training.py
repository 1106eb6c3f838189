"""The training loop shared by pretraining and SFT: accumulate, clip, step, log, evaluate, checkpoint, resume.

One optimizer step sees `grad_accum` micro-batches on each of `world_size` processes. Every micro-batch has
its own data stream, a *virtual rank* v = rank × grad_accum + micro_step, so the data of a step depends
only on world_size × grad_accum: two processes with one micro-step each see exactly the batches of one
process with two micro-steps, and their losses agree to float tolerance.

Exact resume. Everything a step depends on is saved: weights, optimizer state, every data stream's
position, every RNG, the step and the horizon. The schedule, Muon's momentum warmup and the data are pure
functions of those, so a run killed at any moment and resumed from its last checkpoint continues
bit-for-bit where the uninterrupted run would be (on the same machine, thread count and world size).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist

from picochat.checkpoint import (
    check_compatible,
    check_keep,
    latest_checkpoint,
    open_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from picochat.errors import UserError
from picochat.progress import MetricsLog, ProgressReporter
from picochat.rundir import RunDirLock
from picochat.runtime import DistInfo, autocast, peak_flops
from picochat.schedule import lr_multiplier, muon_momentum

BUDGET_WARM_STEPS = 2  # steps not timed for a time budget: the first pays for compilation and warm caches
BUDGET_PROBE_STEPS = 10  # steps timed, after those, to fix the horizon


@dataclass
class LoopSettings:
    """How long to train and how often to log, evaluate, sample and save."""

    run_dir: Path
    total_steps: int | None = None  # None: decided by time_budget_s after a few measured steps
    time_budget_s: float | None = None
    schedule: str = "wsd"
    warmup_steps: int = 10
    warmdown_frac: float = 0.4
    final_lr_frac: float = 0.0
    grad_clip: float = 1.0  # 0 disables clipping
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate only at the end
    sample_every: int = 0  # 0: never sample during training
    save_every: int = 0  # 0: save only at the end (and before each evaluation)
    keep_last: int = 3
    resume: str = "auto"  # "auto": latest checkpoint in run_dir if any; "never"; or a checkpoint path
    restart_schedule: bool = False  # resume weights only, with a fresh optimizer, data and schedule
    compile: bool = False
    tensorboard: bool = False
    wandb_project: str | None = None
    stop_after_steps: int | None = None  # stop (as if killed) after this step, for tests and debugging
    extra: dict = field(default_factory=dict)  # recorded in checkpoints, checked on resume

    @classmethod
    def from_config(cls, config, **overrides) -> LoopSettings:
        """The settings of a stage's config (PretrainConfig, SFTConfig): every field of the same name."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in asdict(config).items() if k in names}
        return cls(**{**values, **overrides})


class Trainer:
    """Trains `model` on `sources` (one batch stream per micro-step of this process)."""

    def __init__(
        self,
        model,
        optimizer,
        sources: list,
        settings: LoopSettings,
        device,
        dtype,
        dist_info: DistInfo,
        tokens_per_step: int,
        evaluate=None,
        sample=None,
        tokenizer=None,
        fingerprint: dict | None = None,
    ):
        self.raw_model = model
        self.optimizer = optimizer
        self.sources = sources
        self.grad_accum = len(sources)
        self.s = settings
        self.device, self.dtype, self.dist = device, dtype, dist_info
        self.tokens_per_step = tokens_per_step
        self.evaluate_fn, self.sample_fn = evaluate, sample
        self.tokenizer = tokenizer
        self.fingerprint = {
            **(fingerprint or {}),
            "world_size": dist_info.world_size,
            "grad_accum": self.grad_accum,
            "tokens_per_step": tokens_per_step,
        }
        self.step = 0
        self.total_steps = settings.total_steps
        self.flops_per_step = model.flops_per_token() * tokens_per_step
        self.peak = peak_flops(device, dtype)
        self.log = MetricsLog(
            Path(settings.run_dir) / "metrics.jsonl",
            dist_info.is_main,
            settings.tensorboard,
            settings.wandb_project,
        )
        self.model = model
        if settings.compile and device.type == "cpu" and not (shutil.which("cc") or shutil.which("gcc")):
            self.message("--compile needs a C compiler on a CPU (inductor builds kernels); none found, so "
                         "training runs eagerly. Install gcc to compile.")  # fmt: skip
        elif settings.compile:
            self.model = torch.compile(model)
        if dist_info.is_distributed:
            device_ids = [device.index] if device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self.last_eval: dict = {}
        self.last_checkpoint: Path | None = None

    # --- resume --------------------------------------------------------------------------------------

    def maybe_resume(self) -> None:
        s = self.s
        if s.resume == "never":
            return
        path = latest_checkpoint(s.run_dir) if s.resume == "auto" else Path(s.resume)
        if path is None:
            return
        ckpt = open_checkpoint(path)
        check_compatible(ckpt, self.raw_model.config, self.tokenizer)  # before any weights are loaded
        self.raw_model.load_state_dict(ckpt.model_state())
        if s.restart_schedule:
            self.message(f"loaded weights from {ckpt.path}; restarting the optimizer, data and schedule")
            return
        saved = ckpt.meta.get("fingerprint", {})
        differences = {
            k: (saved.get(k), v) for k, v in self.fingerprint.items() if saved.get(k) != v and k in saved
        }
        if ckpt.meta.get("model_config") != self.raw_model.config.to_dict():
            differences["model_config"] = (ckpt.meta.get("model_config"), self.raw_model.config.to_dict())
        if differences:
            lines = "\n".join(f"  {k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in differences.items())
            raise UserError(
                f"cannot resume from {ckpt.path}: the run's settings differ, so the continuation would not be the "
                f"run that was checkpointed:\n{lines}\nUse the original settings, pass --restart-schedule to keep "
                "only the weights and start a new schedule, or choose a new --run-dir."
            )
        self.optimizer.load_state_dict(ckpt.optimizer_state())
        loaders = ckpt.meta["loaders"]
        for micro, source in enumerate(self.sources):
            source.load_state_dict(loaders[str(self.virtual_rank(micro))])
        set_rng_state(ckpt.rng_state())
        self.step = ckpt.step
        self.total_steps = ckpt.meta["total_steps"]
        self.log.truncate_after(self.step)
        self.message(f"resumed from {ckpt.path} at step {self.step}/{self.total_steps}")

    def virtual_rank(self, micro: int) -> int:
        return self.dist.rank * self.grad_accum + micro

    # --- checkpoints ---------------------------------------------------------------------------------

    def save(self) -> None:
        local = {str(self.virtual_rank(m)): src.state_dict() for m, src in enumerate(self.sources)}
        if self.dist.is_distributed:
            gathered: list = [None] * self.dist.world_size
            dist.all_gather_object(gathered, local)
            local = {k: v for part in gathered for k, v in part.items()}
        if self.dist.is_main:
            meta = {
                "total_steps": self.total_steps,
                "loaders": local,
                "fingerprint": self.fingerprint,
                "settings": json.loads(json.dumps(asdict(self.s), default=str)),
                "last_eval": self.last_eval,
            }
            self.last_checkpoint = save_checkpoint(
                self.s.run_dir,
                self.step,
                self.raw_model,
                self.optimizer,
                meta,
                self.tokenizer,
                self.s.keep_last,
            )
        if self.dist.is_distributed:
            dist.barrier()

    # --- the loop ------------------------------------------------------------------------------------

    def message(self, text: str) -> None:
        if self.dist.is_main:
            print(text, flush=True)

    def train_step(self) -> float:
        """One optimizer step over grad_accum micro-batches; returns the mean loss across ranks."""
        loss_sum = torch.zeros((), device=self.device)
        for micro, source in enumerate(self.sources):
            inputs, targets = next(source)
            last = micro == self.grad_accum - 1
            sync = contextlib.nullcontext() if last or not self.dist.is_distributed else self.model.no_sync()
            with sync:
                with autocast(self.device, self.dtype):
                    loss = self.model(inputs, targets)
                (loss / self.grad_accum).backward()
            loss_sum += loss.detach()
        if self.s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.s.grad_clip)
        factor = lr_multiplier(
            self.step,
            self.total_steps or 10**9,
            self.s.schedule,
            self.s.warmup_steps,
            self.s.warmdown_frac,
            self.s.final_lr_frac,
        )
        self.optimizer.set_lr_multiplier(factor)
        for group in self.optimizer.param_groups:
            if group.get("name") == "matrices":
                group["momentum"] = muon_momentum(self.step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        mean_loss = loss_sum / self.grad_accum
        if self.dist.is_distributed:
            dist.all_reduce(mean_loss, op=dist.ReduceOp.AVG)
        self.lr_factor = factor
        return float(mean_loss)

    def fix_horizon_from_budget(self, per_step: float, steps_done: int) -> None:
        """With a time budget, the horizon is fixed once, from the pace of the first steps: the warm-up
        steps (compilation, caches) plus as many steps as the budget holds at that pace."""
        steps = max(steps_done + 1, BUDGET_WARM_STEPS + int(self.s.time_budget_s / per_step))
        if self.dist.is_distributed:  # every rank must agree on the horizon
            t = torch.tensor([steps], device=self.device)
            dist.broadcast(t, 0)
            steps = int(t)
        self.total_steps = steps
        self.message(f"time budget {self.s.time_budget_s:.0f}s at {per_step:.2f}s/step: {steps} steps")

    def run_evaluation(self) -> None:
        if self.evaluate_fn is None:
            return
        result = self.evaluate_fn(self.raw_model)
        self.last_eval = {"step": self.step, **result}
        self.log.write({"step": self.step, **{f"val_{k}": v for k, v in result.items()}})
        summary = " | ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
        )
        self.message(f"step {self.step}: validation {summary}")

    def fit(self) -> dict:
        """Train to the horizon; return the final evaluation (and the step count)."""
        check_keep(self.s.keep_last)  # before training, not at the first save
        with RunDirLock(self.s.run_dir, enabled=self.dist.is_main):  # one writer per run directory
            return self._fit()

    def _fit(self) -> dict:
        progress = None
        try:
            self.maybe_resume()
            if self.total_steps is None and self.s.time_budget_s is None:
                raise UserError("give a horizon: a step count, a tokens:params ratio, or a time budget")
            self.raw_model.train()
            progress = ProgressReporter(self.total_steps or 0, self.step, self.dist.is_main, self.s.log_every)
            probe_times: list[float] = []  # step times that fix a time-budget horizon
            while self.total_steps is None or self.step < self.total_steps:
                t0 = time.perf_counter()
                loss = self.train_step()
                dt = time.perf_counter() - t0
                if not math.isfinite(loss):
                    where = (
                        f"; the last good checkpoint {self.last_checkpoint} is intact"
                        if self.last_checkpoint
                        else ""
                    )
                    raise UserError(
                        f"the loss became {loss} at step {self.step}{where}. Lower the learning rates or "
                        "check the data, then resume."
                    )
                if self.total_steps is None:  # time budget: time steps after the warm-up ones
                    if self.step >= BUDGET_WARM_STEPS:
                        probe_times.append(dt)
                    if len(probe_times) == BUDGET_PROBE_STEPS:  # the median shrugs off a noisy step
                        self.fix_horizon_from_budget(statistics.median(probe_times), steps_done=self.step + 1)
                        progress.set_total(self.total_steps)
                tokens_per_s = self.tokens_per_step / dt
                mfu = self.flops_per_step / dt / self.peak
                self.step += 1  # steps completed; records and checkpoints are numbered by it
                record = {
                    "step": self.step, "loss": loss, "lr_factor": self.lr_factor, "tokens_per_s": tokens_per_s,
                    "mfu": mfu, "step_time_s": dt, "tokens": self.step * self.tokens_per_step,
                }  # fmt: skip
                self.log.write(record)
                progress.update(self.step - 1, loss, tokens_per_s, mfu)
                done = self.total_steps is not None and self.step >= self.total_steps
                eval_due = self.s.eval_every and self.step % self.s.eval_every == 0 and not done
                save_due = self.s.save_every and self.step % self.s.save_every == 0
                if (save_due or eval_due) and not done and self.total_steps is not None:
                    self.save()  # before evaluations: a crash there loses nothing
                if eval_due:
                    self.run_evaluation()
                sample_due = self.sample_fn and self.s.sample_every and self.step % self.s.sample_every == 0
                if sample_due and not done and self.dist.is_main:
                    progress.message(self.sample_fn(self.raw_model))
                if self.s.stop_after_steps is not None and self.step >= self.s.stop_after_steps and not done:
                    return {"step": self.step, "stopped_early": True}
            self.save()
            self.run_evaluation()
            if self.dist.is_main and self.last_eval:
                # the final checkpoint records the final evaluation too
                meta_path = self.last_checkpoint / "meta.json" if self.last_checkpoint else None
                if meta_path and meta_path.exists():
                    meta = json.loads(meta_path.read_text())
                    meta["last_eval"] = self.last_eval
                    tmp = meta_path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(meta, indent=1))
                    tmp.replace(meta_path)
            if self.sample_fn and self.dist.is_main:
                print(self.sample_fn(self.raw_model), flush=True)
        finally:
            if progress is not None:
                progress.close()
            self.log.close()
            for source in self.sources:
                if hasattr(source, "close"):
                    source.close()
        return {"step": self.step, **self.last_eval}
