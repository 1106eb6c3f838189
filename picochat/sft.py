"""Supervised fine-tuning: the base model learns to converse, from conversations with loss masks.

    picochat sft                                   # from the latest base checkpoint, the default mixture
    picochat sft --mix identity:2,arithmetic:3,jsonl:my_chats.jsonl:1 --steps 300

Conversations are rendered by the tokenizer (`render_conversation`) and packed whole into rows of T+1
tokens; targets are -1 except on what the assistant says. The loop is `picochat.training`'s; the settings
are `SFTConfig`. Shapes: a batch is (inputs, targets), each (B, T).
"""

from __future__ import annotations

from picochat.checkpoint import load_model
from picochat.data.conversations import SFTLoader
from picochat.errors import UserError
from picochat.settings import SFTConfig, validate
from picochat.tasks import parse_mixture
from picochat.training import greedy_samples, start_stage, train_stage

__all__ = ["SFTConfig", "SFTLoader", "sft"]

QUESTIONS = ("Who are you?", "What is 12 + 30?")  # answered greedily while training
VALIDATION_CONVERSATIONS = 1 << 40  # validation draws from a far-away index range of the same mixture


def sft(config: SFTConfig) -> dict:
    """Fine-tune the base checkpoint on the task mixture; returns the final validation metrics."""
    validate(config)
    train = config.train
    run = start_stage(train)
    model, tokenizer, base_meta = load_model(config.base, run.device)
    model.train()
    if train.seq_len > model.config.rope_len:
        raise UserError(
            f"--seq-len {train.seq_len} exceeds what the model's positions cover ({model.config.rope_len})"
        )
    mixture = parse_mixture(config.mix, owner=config.owner, seed=train.seed)
    rows = (mixture, tokenizer, train.device_batch, train.seq_len)

    def make_loader(rank: int, world_size: int) -> SFTLoader:
        return SFTLoader(*rows, rank, world_size, run.device)

    def validation():
        val = SFTLoader(
            *rows, run.dist.rank, run.dist.world_size, run.device, offset=VALIDATION_CONVERSATIONS
        )
        return (next(val) for _ in range(train.eval_batches))

    run.message(f"SFT from {config.base} (step {base_meta.step}): mixture {config.mix}")
    fingerprint = {"mix": config.mix, "base_step": base_meta.step}
    questions = {q: tokenizer.render_for_completion([{"role": "user", "content": q}]) for q in QUESTIONS}
    return train_stage(
        run,
        "sft",
        config,
        model,
        tokenizer,
        make_loader,
        validation,
        lr_scale=config.lr_frac,
        fingerprint=fingerprint,
        sample=greedy_samples(tokenizer, questions, 32),
    )
