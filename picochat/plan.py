"""A training plan before any money is spent: `picochat pretrain --plan --gpu h100` (and `picochat run --plan`).

Parameters, tokens, steps and training FLOPs follow from the settings; the time at 30/40/50 % MFU from the
GPU's peak. Memory per GPU is not a hand formula: one real training step (forward, backward, optimizer step)
of the real model runs on fake tensors (`FakeTensorMode`: shapes and dtypes, no data, no device), and torch's
`MemTracker` tallies the live storages of each kind (weights, gradients, optimizer state, activations) at
the step's peak. MemTracker, rather than a plain tally of live bytes, because its module and optimizer
hooks tell which tensor plays which role: the split is what a user changes a setting by.

The step is eager: `--compile` fuses the pointwise chain after the LM head (soft-cap, cross-entropy) and
needs less; the eager peak is the bound that holds either way.
"""

from __future__ import annotations

import time

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker

from picochat.errors import UserError
from picochat.model import GPT, GPTConfig
from picochat.optim import build_optimizer
from picochat.pretrain import horizon_steps
from picochat.pretrain import model_config as pretrain_model_config
from picochat.runtime import autocast
from picochat.settings import GPUS, PRETRAIN_PRESETS, RUN_PRESETS, PretrainConfig, from_preset
from picochat.tokenizer import Tokenizer
from picochat.training import grad_accum_steps

MFUS = (0.3, 0.4, 0.5)
KINDS = {"weights": "Parameter", "gradients": "Gradient", "optimizer state": "Optstate"}


def step_memory(config: GPTConfig, device_batch: int, dtype=torch.bfloat16, **optimizer) -> dict[str, int]:
    """Bytes live at the peak of a steady-state training step of `config` on (device_batch, seq_len) rows,
    by kind (weights, gradients, optimizer state, activations) and in total. An optimizer step on zero
    gradients first creates the optimizer state, as a real run's first step does."""
    cpu = torch.device("cpu")
    optimizer = dict(embedding_lr=0.2, head_lr=0.004, matrix_lr=0.02, weight_decay=0.0) | optimizer
    with FakeTensorMode():
        with cpu:
            model = GPT(config)
            rows = torch.randint(0, config.vocab_size, (device_batch, config.seq_len))  # (B, T)
        opt = build_optimizer(model, tokens_per_step=None, compile=False, **optimizer)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tracker = MemTracker()
        tracker.track_external(model, *opt.optimizers)
        with tracker:
            training_step(model, opt, rows, dtype)
    peak = {getattr(kind, "value", kind): n for kind, n in tracker.get_tracker_snapshot("peak")[cpu].items()}
    split = {name: peak[kind] for name, kind in KINDS.items()}
    split["activations"] = peak["Total"] - sum(split.values())  # with the backward's temporaries
    return split | {"total": peak["Total"]}


def training_step(model: GPT, optimizer, rows: torch.Tensor, dtype) -> None:
    """What `Trainer.train_step` does for one micro-batch: forward under autocast, backward, step, zero."""
    with autocast(rows.device, dtype):
        loss = model(rows, rows)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def tokenizer_vocab(config) -> int:
    """The vocabulary of the tokenizer the config names, or the GPU presets' 65,536 if none is trained yet."""
    try:
        return Tokenizer.load(config.tokenizer).vocab_size
    except UserError:
        return 65536


def plan_run(preset_name: str, gpu: str, gpus: int) -> str:
    """The plan of `picochat run --preset NAME`'s pretraining, the stage that trains longest on the
    largest batch."""
    preset = RUN_PRESETS[preset_name]
    config = from_preset(PretrainConfig, PRETRAIN_PRESETS, preset.stages)
    return f"picochat run --preset {preset_name}: pretraining\n" + plan_pretraining(
        config, preset.vocab_size, gpu, gpus
    )


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def plan_pretraining(config, vocab_size: int, gpu: str, gpus: int) -> str:
    """The plan of `picochat pretrain` with `config` on `gpus` GPUs of kind `gpu`, as text; UserError if a
    step does not fit the GPU's memory, naming the largest device batch that does."""
    train, card = config.train, GPUS[gpu]
    if gpus < 1:
        raise UserError(f"--gpus {gpus}: expected an integer ≥ 1")
    model_config = pretrain_model_config(config, vocab_size)
    with torch.device("meta"):
        model = GPT(model_config)
    accumulation = grad_accum_steps(train.batch_tokens, train.device_batch, train.seq_len, gpus)
    steps = horizon_steps(config, model)
    flops_per_step = model.flops_per_token() * train.batch_tokens
    started = time.perf_counter()
    memory = step_memory(model_config, train.device_batch)
    lines = [
        f"plan: d{config.depth}, vocab {vocab_size}, {gpus} × {gpu} ({gib(card.memory_bytes)}, "
        f"{card.peak_flops / 1e12:.0f} TFLOP/s bf16 each)",
        f"parameters     {model.num_params() / 1e6:.1f} M ({model.num_params(False) / 1e6:.1f} M without the embedding)",
        f"batch          {train.batch_tokens:,} tokens/step = {train.device_batch} rows × {train.seq_len} × "
        f"{gpus} GPUs × {accumulation} accumulation",
    ]
    lines += horizon_lines(train, steps, flops_per_step, card.peak_flops * gpus)
    lines.append(f"memory per GPU at device batch {train.device_batch} (peak of one eager bf16 step):")
    lines += [f"  {name:<16}{gib(n)}" for name, n in memory.items()]
    lines.append(f"(estimated on fake tensors in {time.perf_counter() - started:.1f}s)")
    if memory["total"] > card.memory_bytes:
        raise UserError(
            "\n".join(lines)
            + f"\nthis does not fit {gpu}'s {gib(card.memory_bytes)}: "
            + largest_fitting(model_config, train, gpus, card.memory_bytes, memory)
        )
    return "\n".join(lines)


def horizon_lines(train, steps: int | None, flops_per_step: float, peak_flops: float) -> list[str]:
    """Tokens, steps, FLOPs and time at each MFU; for a time budget, the steps each MFU reaches."""
    if steps is None:
        reached = ", ".join(
            f"{int(train.time_budget_s * mfu * peak_flops / flops_per_step):,} at {mfu:.0%} MFU"
            for mfu in MFUS
        )
        return [f"horizon        time budget {train.time_budget_s:.0f}s: steps {reached}"]
    times = ", ".join(f"{duration(steps * flops_per_step / (mfu * peak_flops))} at {mfu:.0%}" for mfu in MFUS)
    return [
        f"tokens         {steps * train.batch_tokens / 1e9:.3f} B in {steps:,} steps",
        f"training FLOPs {steps * flops_per_step:.2e}",
        f"time           {times} MFU",
    ]


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def largest_fitting(model_config: GPTConfig, train, gpus: int, memory_bytes: float, memory: dict) -> str:
    """The largest device batch (dividing a GPU's rows of a step) whose step fits: activations scale with
    the rows, weights and optimizer state do not; the candidate is checked by its own fake step."""
    rows_per_step = train.batch_tokens // (train.seq_len * gpus)
    fixed = memory["total"] - memory["activations"]
    per_row = memory["activations"] / train.device_batch
    for rows in sorted((r for r in range(1, rows_per_step + 1) if rows_per_step % r == 0), reverse=True):
        if rows < train.device_batch and fixed + rows * per_row <= memory_bytes:
            total = step_memory(model_config, rows)["total"]
            if total <= memory_bytes:
                return f"--device-batch {rows} fits ({gib(total)})"
    return "not even --device-batch 1 fits; use a smaller --depth or --seq-len"
