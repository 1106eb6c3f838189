"""Pretraining: the base model learns to predict the next token of the corpus.

    picochat pretrain --preset cpu-demo                      # ~10 minutes on a 2-core laptop CPU
    picochat pretrain --preset cpu-tiny                      # under a minute; what the tests run
    torchrun --nproc_per_node=8 -m picochat pretrain --preset gpu-d12

One dial: `--depth` sets the model (`GPTConfig.from_depth`). The horizon is, in order of precedence, an
explicit `--steps`, a `--time-budget`, or a tokens-to-parameters ratio `--ratio` (Chinchilla's ≈20).
The batch is counted in tokens (`--batch-tokens`); gradient accumulation makes up the difference between
it and device_batch × seq_len × world_size. Every setting, with its default and range, is declared in
picochat/settings.py (`PretrainConfig`, `PRETRAIN_PRESETS`); the shared training setup and loop are
picochat/training.py's.
"""

from __future__ import annotations

from functools import partial

from picochat.data.loader import PretrainLoader, validation_batches
from picochat.data.shards import list_shards
from picochat.engine import Engine, SamplingParams
from picochat.errors import UserError
from picochat.model import GPT, GPTConfig
from picochat.settings import PRETRAIN_PRESETS, PretrainConfig, from_preset, validate
from picochat.tokenizer import Tokenizer
from picochat.training import start_stage, train_stage

__all__ = ["PretrainConfig", "check_config", "preset_config", "pretrain"]


def preset_config(name: str, **overrides) -> PretrainConfig:
    """Preset `name` of PRETRAIN_PRESETS with `overrides` by setting name (shared or pretraining's own)."""
    return from_preset(PretrainConfig, PRETRAIN_PRESETS, name, **overrides)


def model_config(config: PretrainConfig, vocab_size: int = 256) -> GPTConfig:
    try:
        return GPTConfig.from_depth(
            config.depth, vocab_size=vocab_size, seq_len=config.train.seq_len, kv_groups=config.kv_groups
        )
    except ValueError as error:
        raise UserError(
            f"--depth {config.depth} with --kv-groups {config.kv_groups}: {error}; --kv-groups must "
            "divide the number of heads (one per 64 channels of width, 64 × depth)"
        ) from None


def check_config(config: PretrainConfig) -> None:
    """The rules between pretraining's settings that only the model knows (heads vs --kv-groups)."""
    validate(config)
    model_config(config)
    train = config.train
    if train.steps is None and train.time_budget_s is None and config.ratio is None:
        raise UserError("give a horizon: --steps, --time-budget or --ratio")


def sample_prompts_fn(tokenizer, prompts=("The meaning of life is", "Once upon a time", "The king said")):
    """A closure that greedily completes a few prompts: a glance at what the model has learned."""

    def sample(model) -> str:
        engine = Engine(model, tokenizer, tool=None)
        ids = [tokenizer.encode(p, prepend=tokenizer.bos_id) for p in prompts]
        results = engine.generate(ids, SamplingParams(max_tokens=24, temperature=0.0))
        return "\n".join(f"  {p!r} -> {r.text!r}" for p, r in zip(prompts, results))

    return sample


def horizon_steps(config: PretrainConfig, model: GPT) -> int | None:
    """--steps, else None for a --time-budget, else the steps of ratio × non-embedding parameters tokens."""
    train = config.train
    if train.steps is not None or train.time_budget_s is not None:
        return train.steps
    return max(1, round(config.ratio * model.num_params(include_embedding=False) / train.batch_tokens))


def pretrain(config: PretrainConfig) -> dict:
    """Train a base model as configured; returns the final validation metrics."""
    check_config(config)
    train = config.train
    run = start_stage(train)
    tokenizer = Tokenizer.load(config.tokenizer)
    train_shards, val_shards = list_shards(config.corpus, "train"), list_shards(config.corpus, "val")
    with run.device:
        model = GPT(model_config(config, tokenizer.vocab_size))
    batch = (tokenizer, train.device_batch, train.seq_len)
    make_loader = partial(PretrainLoader, train_shards, *batch, device=run.device, seed=train.seed)
    dist = run.dist
    validation = partial(
        validation_batches, val_shards, *batch, dist.rank, dist.world_size, train.eval_batches, run.device
    )
    run.message(
        f"pretraining d{config.depth}: {model.num_params(False) / 1e6:.2f}M parameters without the "
        f"embedding, width {model.config.n_embd}, {model.config.n_head} heads, vocab {tokenizer.vocab_size}"
    )
    return train_stage(
        run,
        "pretrain",
        config,
        model,
        tokenizer,
        make_loader,
        validation,
        total_steps=horizon_steps(config, model),
        fingerprint={"corpus": str(config.corpus), "ratio": config.ratio},
        sample=sample_prompts_fn(tokenizer),
    )
