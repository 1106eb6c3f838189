"""Pretraining: the base model learns to predict the next token of the corpus.

    picochat pretrain --preset cpu-demo                      # the demo's base model, on a laptop CPU
    picochat pretrain --preset cpu-tiny                      # a tiny model: what the tests run
    torchrun --nproc_per_node=8 -m picochat pretrain --preset gpu-d12

`--depth` sets the model. The horizon is `--steps`, else `--time-budget`, else a tokens-to-parameters
`--ratio` (Chinchilla's ≈20). With `--chat-share S`, a share S of every micro-batch's rows are SFT
conversations from `--chat-mix`, so that skills which need many repetitions (spelling) are practised at
pretraining's learning rates; `--mid-share` raises that share over the last `--mid-frac` of the steps
(mid-training). Validation stays on the corpus. Settings: picochat/settings.py; the loop: training.py.

Shapes: a batch is (inputs, targets), each (B, T): B = device_batch rows of T = seq_len tokens.
"""

from __future__ import annotations

from functools import partial

import torch

from picochat.data.conversations import SFTLoader
from picochat.data.loader import PretrainLoader, validation_batches
from picochat.data.shards import list_shards
from picochat.errors import UserError
from picochat.model import GPT, MODEL_OPTIONS, GPTConfig
from picochat.settings import PRETRAIN_PRESETS, PretrainConfig, from_preset, validate
from picochat.tasks import parse_mixture
from picochat.tokenizer import Tokenizer
from picochat.training import greedy_samples, start_stage, train_stage

__all__ = ["PretrainConfig", "check_config", "preset_config", "pretrain"]

PROMPTS = ("The meaning of life is", "Once upon a time", "The king said")  # greedy samples while training
CHAT_OFFSET = 1 << 30  # pretraining's conversations come from here on, so SFT's (from 0) are new ones


def pretrain(config: PretrainConfig) -> dict:
    """Train a base model as configured; returns the final validation metrics."""
    check_config(config)
    train = config.train
    run = start_stage(train)
    tokenizer = Tokenizer.load(config.tokenizer)
    train_shards, val_shards = list_shards(config.corpus, "train"), list_shards(config.corpus, "val")
    with run.device:
        model = GPT(model_config(config, tokenizer.vocab_size))
    make_loader = make_loader_fn(config, tokenizer, train_shards, run.device)
    rows = (tokenizer, train.device_batch, train.seq_len, run.dist.rank, run.dist.world_size)
    validation = partial(validation_batches, val_shards, *rows, train.eval_batches, run.device)
    run.message(
        f"pretraining d{config.depth}: {model.num_params(False) / 1e6:.2f}M parameters without the "
        f"embedding, width {model.config.n_embd}, {model.config.n_head} heads, vocab {tokenizer.vocab_size}"
    )
    fingerprint = {"corpus": str(config.corpus), "ratio": config.ratio}  # what an exact resume keeps
    if config.chat_share:
        fingerprint.update(chat_share=config.chat_share, chat_mix=config.chat_mix)
    if has_mid_phase(config):
        fingerprint.update(mid_frac=config.mid_frac, mid_share=config.mid_share)
    prompts = {p: tokenizer.encode(p, prepend=tokenizer.bos_id) for p in PROMPTS}
    return train_stage(
        run,
        "pretrain",
        config,
        model,
        tokenizer,
        make_loader,
        validation,
        total_steps=horizon_steps(config, model),
        fingerprint=fingerprint,
        sample=greedy_samples(tokenizer, prompts, 24),
    )


def preset_config(name: str, **overrides) -> PretrainConfig:
    """Preset `name` of PRETRAIN_PRESETS with `overrides` by setting name (shared or pretraining's own)."""
    return from_preset(PretrainConfig, PRETRAIN_PRESETS, name, **overrides)


def check_config(config: PretrainConfig) -> None:
    """The rules between pretraining's settings: heads vs --kv-groups, the horizon, mid-training's flags."""
    validate(config)
    model_config(config)
    train = config.train
    if train.steps is None and train.time_budget_s is None and config.ratio is None:
        raise UserError("give a horizon: --steps, --time-budget or --ratio")
    if (config.mid_share is None) != (config.mid_frac == 0):
        raise UserError(
            "mid-training needs both --mid-share (its share of conversation rows) and --mid-frac "
            "(the last fraction of the steps, > 0); give both, or neither"
        )


def model_config(config: PretrainConfig, vocab_size: int = 256) -> GPTConfig:
    try:
        options = {name: getattr(config, name) for name in MODEL_OPTIONS}
        return GPTConfig.from_depth(
            config.depth,
            vocab_size=vocab_size,
            seq_len=config.train.seq_len,
            kv_groups=config.kv_groups,
            **options,
        )
    except ValueError as error:
        raise UserError(
            f"--depth {config.depth} with --kv-groups {config.kv_groups}: {error}; --kv-groups must "
            "divide the number of heads (one per 64 channels of width, 64 × depth)"
        ) from None


def horizon_steps(config: PretrainConfig, model: GPT) -> int | None:
    """--steps, else None for a --time-budget, else the steps of ratio × non-embedding parameters tokens."""
    train = config.train
    if train.steps is not None or train.time_budget_s is not None:
        return train.steps
    return max(1, round(config.ratio * model.num_params(include_embedding=False) / train.batch_tokens))


def make_loader_fn(config: PretrainConfig, tokenizer, shards: list, device):
    """make_loader(rank, world_size) of the corpus, with conversation rows mixed in (--chat/--mid-share)."""
    train = config.train
    chat_rows = share_rows(config.chat_share, train.device_batch, "--chat-share")
    mid = has_mid_phase(config)
    mid_rows = share_rows(config.mid_share, train.device_batch, "--mid-share") if mid else chat_rows
    corpus_rows = train.device_batch - chat_rows
    corpus = partial(
        PretrainLoader, shards, tokenizer, corpus_rows, train.seq_len, device=device, seed=train.seed
    )
    if not chat_rows and not mid_rows:
        return corpus
    mixture = parse_mixture(config.chat_mix, seed=train.seed)

    def make_loader(rank: int, world_size: int) -> MixedLoader:
        chat = SFTLoader(
            mixture, tokenizer, chat_rows, train.seq_len, rank, world_size, device, offset=CHAT_OFFSET
        )
        mid_frac = config.mid_frac if mid else 0.0
        return MixedLoader(corpus(rank, world_size), chat, train.device_batch, chat_rows, mid_rows, mid_frac)

    return make_loader


class MixedLoader:
    """Batches of `chat_rows` conversation rows (`mid_rows` late in the run), then corpus rows."""

    def __init__(self, corpus, chat, batch_size: int, chat_rows: int, mid_rows: int, mid_frac: float):
        self.corpus, self.chat = corpus, chat
        self.batch_size, self.chat_rows = batch_size, chat_rows
        self.mid_rows, self.mid_frac = mid_rows, mid_frac
        self.in_mid = False

    def set_progress(self, step: int, total_steps: int | None) -> None:
        """Step `step` of `total_steps` (None while a time budget has not fixed the end) is next."""
        self.in_mid = in_last_steps(step, total_steps, self.mid_frac)

    def __iter__(self):
        return self

    def __next__(self):
        c = self.mid_rows if self.in_mid else self.chat_rows
        self.chat.batch_size, self.corpus.batch_size = c, self.batch_size - c
        chat_inputs, chat_targets = next(self.chat)  # (c, T): only the assistant's tokens have targets
        inputs, targets = next(self.corpus)  # (B - c, T)
        return torch.cat([chat_inputs, inputs]), torch.cat([chat_targets, targets])  # (B, T)

    def state_dict(self) -> dict:
        return {"corpus": self.corpus.state_dict(), "chat": self.chat.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.corpus.load_state_dict(state["corpus"])
        self.chat.load_state_dict(state["chat"])


def in_last_steps(step: int, total_steps: int | None, frac: float) -> bool:
    """Whether 0-based `step` is among the last round(frac × total_steps) steps of the run."""
    return total_steps is not None and frac > 0 and step >= total_steps - round(frac * total_steps)


def share_rows(share: float, rows: int, flag: str) -> int:
    """The rows of a batch of `rows` that a share `share` of conversations takes (at least one of each)."""
    chat_rows = round(share * rows)
    if share > 0 and not 1 <= chat_rows < rows:
        raise UserError(
            f"{flag} {share} of --device-batch {rows} rows is {chat_rows} rows; it must leave "
            "at least one conversation row and one corpus row"
        )
    return chat_rows


def has_mid_phase(config: PretrainConfig) -> bool:
    """Whether --mid-share and --mid-frac ask for a mid-training phase."""
    return config.mid_share is not None and config.mid_frac > 0
