"""Pretraining: the base model learns to predict the next token of the corpus.

    picochat pretrain --preset cpu-demo                      # ~10 minutes on a 2-core laptop CPU
    picochat pretrain --preset cpu-tiny                      # under a minute; what the tests run
    torchrun --nproc_per_node=8 -m picochat pretrain --preset gpu-d12

One dial: `--depth` sets the model (`GPTConfig.from_depth`). The horizon is, in order of precedence, an
explicit `--steps`, a `--time-budget`, or a tokens-to-parameters ratio `--ratio` (Chinchilla's ≈20).
The batch is counted in tokens (`--batch-tokens`); gradient accumulation makes up the difference between
it and device_batch × seq_len × world_size.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from picochat.errors import UserError
from picochat.paths import checkpoints_dir, data_dir, tokenizer_dir


@dataclass
class PretrainConfig:
    depth: int = 4
    seq_len: int = 512
    device_batch: int = 8  # rows per micro-batch on each device
    batch_tokens: int = 16384  # tokens per optimizer step, all devices and micro-steps together
    kv_groups: int = 1
    # horizon: steps > time_budget > ratio
    steps: int | None = None
    time_budget_s: float | None = None
    ratio: float | None = 20.0  # training tokens per (non-embedding) parameter
    # optimisation
    embedding_lr: float = 0.2
    head_lr: float = 0.004
    matrix_lr: float = 0.02
    weight_decay: float = 0.0
    lr_batch_scaling: bool = False
    schedule: str = "wsd"
    warmup_steps: int = 10
    warmdown_frac: float = 0.4
    final_lr_frac: float = 0.0
    grad_clip: float = 1.0
    # evaluation, logging, checkpoints
    eval_every: int = 0
    eval_batches: int = 20
    sample_every: int = 0
    log_every: int = 10
    save_every: int = 0
    keep_last: int = 3
    # machine
    dtype: str = "auto"
    compile: bool = False
    device: str = "auto"
    seed: int = 1337
    # where
    corpus: Path = field(default_factory=lambda: data_dir() / "default")
    tokenizer: Path = field(default_factory=tokenizer_dir)
    run_dir: Path = field(default_factory=lambda: checkpoints_dir() / "base")
    resume: str = "auto"
    restart_schedule: bool = False
    stop_after_steps: int | None = None
    tensorboard: bool = False
    wandb_project: str | None = None


PRESETS: dict[str, dict] = {
    # tests and CI: a couple of layers, a few dozen steps, well under a minute
    "cpu-tiny": dict(depth=2, seq_len=128, device_batch=8, batch_tokens=1024, steps=40, warmup_steps=5,
                     eval_batches=4, log_every=10, matrix_lr=0.03),
    # the README's main job: the best base model ten minutes of a 2-core CPU can buy
    "cpu-demo": dict(depth=4, seq_len=256, device_batch=16, batch_tokens=8192, time_budget_s=600, compile=True,
                     matrix_lr=0.04, embedding_lr=0.4, head_lr=0.008, warmup_steps=10, eval_every=200,
                     eval_batches=20, sample_every=200, log_every=20),
    # an 8-GPU node: d12 (~GPT-2 small width) and d20, Chinchilla-style 20 tokens per parameter
    "gpu-d12": dict(depth=12, seq_len=2048, device_batch=32, batch_tokens=524288, ratio=20.0, compile=True,
                    eval_every=250, eval_batches=40, sample_every=1000, log_every=10, save_every=1000,
                    warmup_steps=0),
    "gpu-d20": dict(depth=20, seq_len=2048, device_batch=32, batch_tokens=524288, ratio=20.0, compile=True,
                    eval_every=250, eval_batches=40, sample_every=1000, log_every=10, save_every=1000,
                    warmup_steps=0),
}  # fmt: skip


def preset_config(name: str, **overrides) -> PretrainConfig:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PretrainConfig(), **{**PRESETS[name], **overrides})


def parse_duration(text: str) -> float:
    """'90s', '10m', '1.5h' or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not match:
        raise UserError(f"cannot read the duration {text!r}; write it like 90s, 10m or 1.5h")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


def grad_accum_steps(batch_tokens: int, device_batch: int, seq_len: int, world_size: int) -> int:
    per_step = device_batch * seq_len * world_size
    if batch_tokens % per_step:
        raise UserError(
            f"--batch-tokens {batch_tokens} is not a multiple of device_batch × seq_len × world_size = "
            f"{device_batch} × {seq_len} × {world_size} = {per_step}; pick a multiple of {per_step}"
        )
    return batch_tokens // per_step


def sample_prompts_fn(tokenizer, prompts=("The meaning of life is", "Once upon a time", "The king said")):
    """A closure that greedily completes a few prompts: a glance at what the model has learned."""

    def sample(model) -> str:
        from picochat.engine import Engine, SamplingParams

        engine = Engine(model, tokenizer, tool=None)
        ids = [tokenizer.encode(p, prepend=tokenizer.bos_id) for p in prompts]
        results = engine.generate(ids, SamplingParams(max_tokens=24, temperature=0.0))
        return "\n".join(f"  {p!r} -> {r.text!r}" for p, r in zip(prompts, results))

    return sample


def pretrain(config: PretrainConfig) -> dict:
    """Train a base model as configured; returns the final validation metrics."""
    from picochat.data.loader import PretrainLoader, validation_batches
    from picochat.data.shards import list_shards
    from picochat.evaluate import evaluate_bpb
    from picochat.model import GPT, GPTConfig
    from picochat.optim import build_optimizer
    from picochat.runtime import compute_dtype, init_distributed, seed_everything
    from picochat.tokenizer import Tokenizer
    from picochat.training import LoopSettings, Trainer

    dist_info, device = init_distributed(config.device)
    dtype = compute_dtype(device, config.dtype)
    seed_everything(config.seed)
    tokenizer = Tokenizer.load(config.tokenizer)
    train_shards, val_shards = list_shards(config.corpus, "train"), list_shards(config.corpus, "val")

    model_config = GPTConfig.from_depth(
        config.depth, vocab_size=tokenizer.vocab_size, seq_len=config.seq_len, kv_groups=config.kv_groups
    )
    with torch.device(device):
        model = GPT(model_config)
    grad_accum = grad_accum_steps(
        config.batch_tokens, config.device_batch, config.seq_len, dist_info.world_size
    )
    optimizer = build_optimizer(
        model, config.embedding_lr, config.head_lr, config.matrix_lr, config.weight_decay,
        tokens_per_step=config.batch_tokens if config.lr_batch_scaling else None,
    )  # fmt: skip

    steps = config.steps
    if steps is None and config.time_budget_s is None:
        if not config.ratio:
            raise UserError("give a horizon: --steps, --time-budget or --ratio")
        steps = max(1, round(config.ratio * model.num_params(include_embedding=False) / config.batch_tokens))

    virtual_world = dist_info.world_size * grad_accum
    sources = [
        PretrainLoader(train_shards, tokenizer, config.device_batch, config.seq_len,
                       rank=dist_info.rank * grad_accum + m, world_size=virtual_world, device=device, seed=config.seed)
        for m in range(grad_accum)
    ]  # fmt: skip
    token_bytes = torch.as_tensor(tokenizer.token_byte_lengths(), dtype=torch.int64)

    def evaluate(m) -> dict:
        batches = validation_batches(val_shards, tokenizer, config.device_batch, config.seq_len,
                                     dist_info.rank, dist_info.world_size, config.eval_batches, device)  # fmt: skip
        result = evaluate_bpb(m, batches, token_bytes, device, dtype)
        return {"bpb": result["bpb"], "loss": result["loss"], "ppl": result["ppl"]}

    recorded = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    settings = LoopSettings.from_config(
        config, run_dir=Path(config.run_dir), total_steps=steps, extra={"config": recorded}
    )
    fingerprint = {
        "stage": "pretrain", "seq_len": config.seq_len, "device_batch": config.device_batch,
        "corpus": str(config.corpus), "seed": config.seed, "schedule": config.schedule,
        "steps": config.steps, "time_budget_s": config.time_budget_s, "ratio": config.ratio,
    }  # fmt: skip
    if dist_info.is_main:
        n_params = model.num_params()
        print(
            f"pretraining d{config.depth}: {n_params / 1e6:.2f}M parameters ({model.num_params(False) / 1e6:.2f}M "
            f"without the embedding), width {model_config.n_embd}, {model_config.n_head} heads, vocab "
            f"{model_config.vocab_size}, seq {config.seq_len}; {config.batch_tokens} tokens/step = "
            f"{config.device_batch}×{config.seq_len}×{dist_info.world_size} × {grad_accum} accumulation; "
            f"{device.type} {str(dtype).removeprefix('torch.')}"
            + (f"; {steps} steps" if steps else f"; time budget {config.time_budget_s:.0f}s"),
            flush=True,
        )
    trainer = Trainer(
        model, optimizer, sources, settings, device, dtype, dist_info, config.batch_tokens,
        evaluate=evaluate, sample=sample_prompts_fn(tokenizer) if config.sample_every else None,
        tokenizer=tokenizer, fingerprint=fingerprint,
    )  # fmt: skip
    return trainer.fit()
