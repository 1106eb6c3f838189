"""The training loop every stage shares (pretraining, SFT, RL): the `Trainer`, then the stage's setup.

A stage declares its config in picochat/settings.py (shared `TrainSettings` as `config.train`) and trains in
three moves (docs/training.md):

    run = start_stage(config.train)                  # device, dtype, torchrun, seed, gradient accumulation
    model = ...                                      # built or loaded on run.device
    return train_stage(run, "sft", config, model, tokenizer, make_loader, validation, fingerprint=...)

Every micro-batch has its own data stream, a *virtual rank* v = rank × grad_accum + micro_step, so a
step's data depends only on world_size × grad_accum. Everything a step depends on is checkpointed, so a
killed and resumed run continues bit-for-bit (same machine, thread count and world size).

Shapes: a batch is (inputs, targets), each (B, T) token ids: B = device_batch rows of T = seq_len tokens.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from picochat.checkpoint import (
    CheckpointMeta,
    check_compatible,
    check_keep,
    latest_checkpoint,
    open_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    set_aside_run,
    set_rng_state,
    update_meta,
)
from picochat.engine import Engine, SamplingParams
from picochat.errors import UserError
from picochat.evaluation.bpb import evaluate_bpb
from picochat.optim import CombinedOptimizer, build_optimizer
from picochat.progress import MetricsLog, ProgressReporter
from picochat.rundir import RunDirLock
from picochat.runtime import (
    DistInfo,
    autocast,
    can_compile,
    compute_dtype,
    init_distributed,
    peak_flops,
    seed_everything,
)
from picochat.schedule import TimeBudget, lr_multiplier, muon_momentum
from picochat.settings import TrainSettings, changed, recorded
from picochat.textbook import use_textbook_adamw

# loss(model, batch) -> the loss, or (the loss, {name: number} to log with the step)
LossFn = Callable[[torch.nn.Module, Any], torch.Tensor | tuple[torch.Tensor, dict[str, float]]]


class Trainer:
    """Trains `model` on `sources` (one batch stream per micro-step of this process) to the horizon."""

    clock = staticmethod(time.perf_counter)  # the wall clock a time budget reads (tests give it another)

    def __init__(
        self,
        model,
        optimizer: CombinedOptimizer,
        sources: list,
        run: StageRun,
        total_steps: int | None,
        evaluate: Callable[[torch.nn.Module], dict] | None = None,
        sample: Callable[[torch.nn.Module], str] | None = None,
        tokenizer=None,
        fingerprint: dict | None = None,
        config: dict | None = None,
        loss: LossFn | None = None,
    ):
        settings = self.s = run.settings
        self.run, self.device, self.dtype, self.dist = run, run.device, run.dtype, run.dist
        self.raw_model, self.model = model, compiled_and_distributed(model, run)
        self.optimizer, self.sources, self.grad_accum = optimizer, sources, len(sources)
        self.evaluate_fn, self.sample_fn, self.loss_fn = evaluate, sample, loss or next_token_loss
        self.step_metrics: dict[str, float] = {}  # what loss_fn reported this step, besides the loss
        self.tokenizer, self.config = tokenizer, config or {}  # config: saved with every checkpoint
        self.tokens_per_step = settings.batch_tokens
        layout = dict(
            world_size=run.dist.world_size, grad_accum=self.grad_accum, tokens_per_step=self.tokens_per_step
        )
        self.fingerprint = {**(fingerprint or {}), **layout}  # what an exact resume must find unchanged
        self.step, self.total_steps = 0, total_steps  # None: the time budget decides, from the wall clock
        budgeted = total_steps is None and settings.time_budget_s
        self.budget = TimeBudget(settings.time_budget_s, **schedule_shape(settings)) if budgeted else None
        self.flops_per_step = model.flops_per_token() * self.tokens_per_step
        self.peak = peak_flops(run.device, run.dtype)
        # fp16 has too few exponent bits for small gradients: scale the loss up, the gradients back down
        self.scaler = torch.amp.GradScaler(run.device.type, enabled=run.dtype == torch.float16)
        logged = {"config": self.config, "fingerprint": self.fingerprint}
        log_path, wandb = Path(settings.run_dir) / "metrics.jsonl", settings.wandb_project
        self.log = MetricsLog(
            log_path, run.dist.is_main, tensorboard=settings.tensorboard, wandb_project=wandb, config=logged
        )
        self.last_eval, self.last_checkpoint, self.lr_factor = {}, None, 1.0  # last_checkpoint: a Path
        self.earlier_log: int | None = None  # a new run: the bytes of metrics.jsonl the earlier one wrote

    def fit(self) -> dict:
        """Train to the horizon; return the final evaluation (and the step count)."""
        check_keep(self.s.keep_last)  # before training, not at the first save
        with RunDirLock(self.s.run_dir, enabled=self.dist.is_main):  # one writer per run directory
            if self.dist.is_main:
                remove_stale_temporaries(self.s.run_dir)  # the new writer sweeps up after dead ones
            return self._fit()

    def _fit(self) -> dict:
        progress = None
        try:
            self.maybe_resume()
            if self.s.resume == "never" or self.s.restart_schedule:  # a new schedule: a new run
                self.earlier_log = self.log.path.stat().st_size if self.log.path.exists() else 0
            if self.total_steps is None and self.s.time_budget_s is None:
                raise UserError("give a horizon: a step count, a tokens:params ratio, or a time budget")
            self.raw_model.train()
            progress = ProgressReporter(
                self.total_steps or 0, self.step, enabled=self.dist.is_main, log_every=self.s.log_every
            )
            tick = self.clock()  # the wall clock, for a time budget: steps and what follows them
            if self.budget is not None:  # the stage's setup (loading the model and the data) is spent too
                self.budget.elapsed_s += self.rank0_seconds(tick - self.run.started)[0]
            while self.total_steps is None or self.step < self.total_steps:
                t0 = time.perf_counter()
                loss = self.train_step()
                dt = time.perf_counter() - t0
                self.check_finite(loss)
                self.step += 1  # steps completed; records and checkpoints are numbered by it
                record = self.record(loss, dt)
                eta = self.budget.remaining_s() if self.budget is not None else None
                progress.update(self.step - 1, loss, record["tokens_per_s"], record["mfu"], eta)
                if self.budget is not None:
                    tick, last = self.clock(), tick
                    self.follow_budget(tick - last, progress)
                done = self.total_steps is not None and self.step >= self.total_steps
                self.after_step(done, progress)
                if self.s.stop_after_steps is not None and self.step >= self.s.stop_after_steps and not done:
                    return {"step": self.step, "stopped_early": True}
            self.finish()
        finally:
            if progress is not None:
                progress.close()
            self.log.close()
            for source in self.sources:
                if hasattr(source, "close"):
                    source.close()
        return {"step": self.step, **self.last_eval}

    def train_step(self) -> float:
        """One optimizer step over grad_accum micro-batches; returns the mean loss across ranks."""
        loss_sum = torch.zeros((), device=self.device)
        self.step_metrics = {}
        for micro, source in enumerate(self.sources):
            if hasattr(source, "set_progress"):  # a mixture that changes with the step (mid-training)
                source.set_progress(self.step, self.total_steps)
            batch = next(source)
            with self.gradient_sync(micro):
                with autocast(self.device, self.dtype):
                    loss = self.loss_fn(self.model, batch)
                if isinstance(loss, tuple):  # (loss, metrics of this micro-batch), e.g. RL's rewards
                    loss, metrics = loss
                    for k, v in metrics.items():
                        self.step_metrics[k] = self.step_metrics.get(k, 0.0) + float(v) / self.grad_accum
                self.scaler.scale(loss / self.grad_accum).backward()
            loss_sum += loss.detach()
        self.optimizer_update()
        mean_loss = loss_sum / self.grad_accum
        if self.dist.is_distributed:
            dist.all_reduce(mean_loss, op=dist.ReduceOp.AVG)
        return float(mean_loss)

    def gradient_sync(self, micro: int):
        """Under torchrun, gradients are averaged over ranks once per step: in the last micro-step's backward."""
        last = micro == self.grad_accum - 1
        return contextlib.nullcontext() if last or not self.dist.is_distributed else self.model.no_sync()

    def optimizer_update(self) -> None:
        """Unscale (fp16), clip, set the scheduled learning rate and Muon momentum, step, zero the gradients."""
        for optimizer in self.optimizer.optimizers:
            self.scaler.unscale_(optimizer)  # a no-op unless fp16
        if self.s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.s.grad_clip)
        if self.budget is not None:
            self.lr_factor = self.budget.lr_multiplier(self.step)
        else:
            self.lr_factor = lr_multiplier(self.step, self.total_steps, **schedule_shape(self.s))
        self.optimizer.set_lr_multiplier(self.lr_factor)
        momentum = muon_momentum(self.step, self.s.muon_ramp_steps, end=self.s.muon_momentum)
        self.optimizer.set_muon_momentum(momentum)
        for optimizer in self.optimizer.optimizers:
            self.scaler.step(optimizer)  # skipped when fp16 gradients overflowed
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def check_finite(self, loss: float) -> None:
        if math.isfinite(loss):
            return
        where = f"; the last good checkpoint {self.last_checkpoint} is intact" if self.last_checkpoint else ""
        raise UserError(
            f"the loss became {loss} at step {self.step}{where}. Lower the learning rates or check the data, "
            "then resume."
        )

    def record(self, loss: float, dt: float) -> dict:
        """The step's metrics (numbered by steps completed), written to metrics.jsonl."""
        record = {"step": self.step, "loss": loss, "lr_factor": self.lr_factor}
        record |= {"tokens_per_s": self.tokens_per_step / dt, "mfu": self.flops_per_step / dt / self.peak}
        record |= {"step_time_s": dt, "tokens": self.step * self.tokens_per_step, **self.step_metrics}
        self.log.write(record)
        return record

    def rank0_seconds(self, *seconds: float) -> list[float]:
        """Rank 0's times on every rank: all ranks must plan the same horizon, or collectives would hang."""
        if not self.dist.is_distributed:
            return list(seconds)
        t = torch.tensor(seconds, dtype=torch.float64, device=self.device)
        dist.broadcast(t, 0)
        return t.tolist()

    def follow_budget(self, duration_s: float, progress: ProgressReporter) -> None:
        """Account for the step's wall time (rank 0's clock) and take the horizon the budget now plans."""
        duration_s, self.budget.reserve_s = self.rank0_seconds(duration_s, self.budget.reserve_s)
        planned = self.total_steps
        if self.evaluate_fn is not None and not self.budget.reserve_measured and self.budget.pace is not None:
            # no evaluation timed yet: keep back an estimate of the final one, eval_batches forward passes
            # at about a third of a micro-batch's forward and backward each (no earlier evaluation: SFT)
            self.budget.reserve_s = self.budget.pace * self.s.eval_batches / (3 * self.grad_accum)
        self.budget.observe(self.step, duration_s)
        self.total_steps = self.budget.end_step
        if self.total_steps is not None and self.total_steps != planned:
            progress.set_total(self.total_steps)
            if planned is None or self.s.log_every and self.step % self.s.log_every == 0:
                spent = f"{self.budget.elapsed_s:.0f}s of {self.budget.budget_s:.0f}s spent"
                self.run.message(
                    f"time budget: {spent} at {self.budget.pace:.2f}s/step; ending at step {self.total_steps}"
                )

    def after_step(self, done: bool, progress: ProgressReporter) -> None:
        """What is due after a step that is not the last: a checkpoint, an evaluation, a sample."""
        s = self.s
        eval_due = s.eval_every and self.step % s.eval_every == 0
        save_due = s.save_every and self.step % s.save_every == 0
        if done:
            return
        t0 = self.clock()
        if save_due or eval_due:
            self.save()  # before evaluations: a crash there loses nothing
        if eval_due:
            self.run_evaluation()
        if self.budget is not None and (save_due or eval_due):  # keep time back for the final ones
            self.budget.reserve_s = self.clock() - t0
            self.budget.reserve_measured = self.budget.reserve_measured or bool(eval_due)
        if self.sample_fn and s.sample_every and self.step % s.sample_every == 0 and self.dist.is_main:
            progress.message(self.sample_fn(self.raw_model))

    def finish(self) -> None:
        """The last checkpoint, the final evaluation (recorded in that checkpoint too), a last sample."""
        self.save()
        self.run_evaluation()
        if self.dist.is_main and self.last_eval and self.last_checkpoint:
            update_meta(self.last_checkpoint, last_eval=self.last_eval)
        if self.sample_fn and self.s.sample_every and self.dist.is_main:
            print(self.sample_fn(self.raw_model), flush=True)

    def run_evaluation(self) -> None:
        if self.evaluate_fn is None:
            return
        result = self.evaluate_fn(self.raw_model)
        self.last_eval = {"step": self.step, **result}
        self.log.write({"step": self.step, **{f"val_{k}": v for k, v in result.items()}})
        summary = " | ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
        )
        self.run.message(f"step {self.step}: validation {summary}")

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
            self.run.message(f"loaded weights from {ckpt.path}; restarting the optimizer, data and schedule")
            return
        saved = ckpt.meta.fingerprint
        differences = {k: (saved[k], v) for k, v in self.fingerprint.items() if k in saved and saved[k] != v}
        if ckpt.meta.model_config != self.raw_model.config.to_dict():
            differences["model_config"] = (ckpt.meta.model_config, self.raw_model.config.to_dict())
        if differences:
            lines = "\n".join(f"  {k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in differences.items())
            raise UserError(
                f"cannot resume from {ckpt.path}: the run's settings differ, so the continuation would not "
                f"be the run that was checkpointed:\n{lines}\nUse the original settings, pass "
                "--restart-schedule to keep only the weights and start a new schedule, or choose a new --run-dir."
            )
        self.optimizer.load_state_dict(ckpt.optimizer_state())
        if ckpt.meta.grad_scaler and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt.meta.grad_scaler)
        for micro, source in enumerate(self.sources):
            source.load_state_dict(ckpt.meta.loaders[str(self.run.virtual_rank(micro))])
        set_rng_state(ckpt.rng_state())
        self.step, self.total_steps = ckpt.meta.step, ckpt.meta.total_steps
        if self.budget is not None and ckpt.meta.time_budget:
            self.budget.load_state_dict(ckpt.meta.time_budget)
        self.log.truncate_after(self.step)
        self.run.message(f"resumed from {ckpt.path} at step {self.step}/{self.total_steps}")
        for name, before, now in changed(ckpt.meta.config, self.config):
            self.run.message(f"  changed since that checkpoint: {name} {before!r} -> {now!r}")

    def save(self) -> None:
        local = {str(self.run.virtual_rank(m)): src.state_dict() for m, src in enumerate(self.sources)}
        if self.dist.is_distributed:
            gathered: list = [None] * self.dist.world_size
            dist.all_gather_object(gathered, local)
            local = {k: v for part in gathered for k, v in part.items()}
        # a new run sets the earlier one aside at its first save, so one that fails before changes nothing
        aside = (
            self.dist.is_main
            and self.earlier_log is not None
            and set_aside_run(self.s.run_dir, self.earlier_log)
        )
        if aside:
            self.run.message(f"a new run in {self.s.run_dir}: the earlier one's checkpoints are in {aside}")
        self.earlier_log = None
        if self.dist.is_main:
            meta = CheckpointMeta(
                step=self.step,
                total_steps=self.total_steps,
                loaders=local,
                fingerprint=self.fingerprint,
                config=self.config,
                last_eval=self.last_eval,
                time_budget=self.budget.state_dict() if self.budget is not None else None,
                grad_scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            )
            self.last_checkpoint = save_checkpoint(
                self.s.run_dir, self.raw_model, meta, self.optimizer, self.tokenizer, self.s.keep_last
            )
        if self.dist.is_distributed:
            dist.barrier()


def bpb_evaluation(
    run: StageRun, tokenizer, batches: Callable[[], Iterable]
) -> Callable[[torch.nn.Module], dict]:
    """An evaluation of validation bits per byte, loss and perplexity on the batches `batches()` yields."""
    token_bytes = torch.as_tensor(tokenizer.token_byte_lengths(), dtype=torch.int64)

    def evaluate(model) -> dict:
        result = evaluate_bpb(model, batches(), token_bytes, run.device, run.dtype)
        return {"bpb": result["bpb"], "loss": result["loss"], "ppl": result["ppl"]}

    return evaluate


def train_stage(
    run: StageRun,
    stage: str,
    config,
    model,
    tokenizer,
    make_loader: Callable[[int, int], Iterator],
    validation: Callable[[], Iterable] | None = None,
    *,
    total_steps: int | None = None,
    fingerprint: dict | None = None,
    lr_scale: float = 1.0,
    evaluate: Callable[[torch.nn.Module], dict] | None = None,
    sample: Callable[[torch.nn.Module], str] | None = None,
    loss: LossFn | None = None,
    trainer_class: type[Trainer] | Callable[..., Trainer] = Trainer,
) -> dict:
    """Train `model` as `config.train` says; return the final evaluation (and the step count).
    make_loader(virtual_rank, virtual_world) -> a resumable batch iterator per micro-step; loss(model, batch)
    -> the loss, or (loss, {name: number}) (default `next_token_loss`); validation() -> fresh validation
    batches, or evaluate(model) -> a dict; total_steps: None for --steps or --time-budget; fingerprint: what
    an exact resume must keep; trainer_class: Trainer, or a subclass with its own `train_step` (GRPO)."""
    model.textbook = run.settings.textbook
    sources = [make_loader(run.virtual_rank(m), run.virtual_world) for m in range(run.grad_accum)]
    optimizer = stage_optimizer(run.settings, model, lr_scale)
    if evaluate is None and validation is not None:
        evaluate = bpb_evaluation(run, tokenizer, validation)
    horizon = total_steps or run.settings.steps  # None: the time budget decides
    run.describe(stage, model, horizon)
    fingerprint = {"stage": stage, **resume_fingerprint(run.settings), **(fingerprint or {})}
    settings = recorded(config)  # saved with every checkpoint
    trainer = trainer_class(
        model, optimizer, sources, run, horizon, evaluate, sample, tokenizer, fingerprint, settings, loss
    )
    return trainer.fit()


@dataclass
class StageRun:
    """Where a stage trains, set up from its shared settings by `start_stage`."""

    settings: TrainSettings
    dist: DistInfo
    device: torch.device
    dtype: torch.dtype
    grad_accum: int  # micro-steps per optimizer step on each process
    started: float  # Trainer.clock() when the stage began: a time budget counts its setup too

    @property
    def virtual_world(self) -> int:
        return self.dist.world_size * self.grad_accum

    def virtual_rank(self, micro: int) -> int:
        """The data stream of micro-step `micro` of this process: rank × grad_accum + micro."""
        return self.dist.rank * self.grad_accum + micro

    def describe(self, stage: str, model, total_steps: int | None) -> None:
        s = self.settings
        horizon = f"{total_steps} steps" if total_steps else f"time budget {s.time_budget_s:.0f}s"
        self.message(
            f"{stage}: {model.num_params() / 1e6:.2f}M parameters; {s.batch_tokens} tokens/step = "
            f"{s.device_batch}×{s.seq_len}×{self.dist.world_size} × {self.grad_accum} accumulation; "
            f"{self.device.type} {str(self.dtype).removeprefix('torch.')}{' textbook' if s.textbook else ''}; "
            f"{horizon}"
        )

    def message(self, text: str) -> None:
        if self.dist.is_main:
            print(text, flush=True)


def start_stage(settings: TrainSettings) -> StageRun:
    """Join torchrun, pick the device and dtype, seed every RNG, size the gradient accumulation."""
    started = Trainer.clock()
    dist_info, device = init_distributed(settings.device)
    dtype = compute_dtype(device, settings.dtype)
    seed_everything(settings.seed)
    grad_accum = grad_accum_steps(
        settings.batch_tokens, settings.device_batch, settings.seq_len, dist_info.world_size
    )
    return StageRun(settings, dist_info, device, dtype, grad_accum, started)


def grad_accum_steps(batch_tokens: int, device_batch: int, seq_len: int, world_size: int) -> int:
    """Micro-steps per optimizer step: batch_tokens = device_batch × seq_len × world_size × this."""
    per_step = device_batch * seq_len * world_size
    if batch_tokens % per_step:
        raise UserError(
            f"--batch-tokens {batch_tokens} is not a multiple of device_batch × seq_len × world_size = "
            f"{device_batch} × {seq_len} × {world_size} = {per_step}; pick a multiple of {per_step}"
        )
    return batch_tokens // per_step


def stage_optimizer(s: TrainSettings, model, lr_scale: float = 1.0) -> CombinedOptimizer:
    """Muon + AdamW at the settings' learning rates × `lr_scale`; AdamW written out with --textbook."""
    optimizer = build_optimizer(
        model,
        embedding_lr=s.embedding_lr * lr_scale,
        head_lr=s.head_lr * lr_scale,
        matrix_lr=s.matrix_lr * lr_scale,
        weight_decay=s.weight_decay,
        scalar_lr=s.scalar_lr * lr_scale,
        adamw_matrix_lr=s.adamw_matrix_lr * lr_scale if s.optimizer == "adamw" else None,
        ns_steps=s.ns_steps,
        tokens_per_step=s.batch_tokens if s.lr_batch_scaling else None,
        compile=s.compile and can_compile(model.lm_head.weight.device) and not s.textbook,
    )
    if s.textbook:
        use_textbook_adamw(optimizer)
    return optimizer


def schedule_shape(s: TrainSettings) -> dict:
    """The learning-rate schedule's settings, as `lr_multiplier` and `TimeBudget` take them."""
    return {name: getattr(s, name) for name in ("schedule", "warmup_steps", "warmdown_frac", "final_lr_frac")}


def resume_fingerprint(s: TrainSettings) -> dict:
    """The shared settings a run must keep to be resumed exactly (the rest may change, with a message)."""
    return {
        n: getattr(s, n)
        for n in ("seq_len", "device_batch", "seed", "schedule", "steps", "time_budget_s", "optimizer")
    }


def next_token_loss(model, batch) -> torch.Tensor:
    """Pretraining's and SFT's loss: the mean cross-entropy of the target tokens (-1: not learned)."""
    inputs, targets = batch
    return model(inputs, targets)


def compiled_and_distributed(model, run: StageRun):
    """The module a training step calls: `model` compiled (--compile) and wrapped for torchrun."""
    if run.settings.compile and not can_compile(run.device):
        run.message(
            "--compile needs a C compiler on a CPU (inductor builds kernels); none found, so "
            "training runs eagerly. Install gcc to compile."
        )
    elif run.settings.compile:
        model = torch.compile(model)
    if run.dist.is_distributed:
        device_ids = [run.device.index] if run.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return model


def greedy_samples(
    tokenizer, prompts: dict[str, list[int]], max_tokens: int
) -> Callable[[torch.nn.Module], str]:
    """sample(model) -> the greedy completion of each prompt (text: token ids), a line each."""

    def sample(model) -> str:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        results = Engine(model, tokenizer, tool=None).generate(list(prompts.values()), params)
        return "\n".join(f"  {text!r} -> {r.text!r}" for text, r in zip(prompts, results))

    return sample
