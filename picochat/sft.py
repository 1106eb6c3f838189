"""Supervised fine-tuning: the base model learns to converse, from conversations with loss masks.

    picochat sft                                   # from the latest base checkpoint, the default mixture
    picochat sft --mix identity:2,arithmetic:3,jsonl:my_chats.jsonl:1 --steps 300

Conversations are rendered by the tokenizer (`render_conversation`: ids and a mask that is 1 on what the
assistant says) and packed whole into rows of T+1 tokens; the rest of a row is padding. Targets are -1
where the mask is 0 and on padding, so only the assistant's tokens are learned. The training loop,
checkpoints, resume and progress are every stage's (`picochat.training`); the settings are declared in
picochat/settings.py (`SFTConfig`).
"""

from __future__ import annotations

import torch

from picochat.checkpoint import load_model
from picochat.engine import Engine, SamplingParams
from picochat.errors import UserError
from picochat.settings import SFTConfig, validate
from picochat.tasks import parse_mixture
from picochat.training import start_stage, train_stage

__all__ = ["SFTConfig", "SFTLoader", "sft"]


class SFTLoader:
    """(inputs, targets) batches of whole conversations from a task mixture, for one virtual rank.

    Conversation n of the mixture belongs to virtual rank n mod world_size. A row takes conversations in
    order while they fit; a conversation longer than a row is truncated to it. The state is the index of
    the next conversation not yet placed, so a resumed loader yields the very next batch.
    """

    def __init__(
        self,
        mixture,
        tokenizer,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        device="cpu",
        offset: int = 0,
    ):
        self.mixture, self.tokenizer = mixture, tokenizer
        self.batch_size, self.row_len = batch_size, seq_len + 1
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.offset = offset  # conversations before this index are held out for validation
        self.next_local = 0  # conversations of this rank placed so far
        self.pad_id = tokenizer.bos_id
        self.rendered: dict[int, tuple[list[int], list[int]]] = {}

    def _render(self, local: int) -> tuple[list[int], list[int]]:
        if local not in self.rendered:
            if len(self.rendered) > 4 * self.batch_size:
                self.rendered.clear()
            n = self.offset + local * self.world_size + self.rank
            _, messages = self.mixture.conversation(n)
            self.rendered[local] = self.tokenizer.render_conversation(messages, max_tokens=self.row_len)
        return self.rendered[local]

    def __iter__(self):
        return self

    def __next__(self):
        rows = torch.full((self.batch_size, self.row_len), self.pad_id, dtype=torch.long)  # (B, T+1)
        learn = torch.zeros((self.batch_size, self.row_len), dtype=torch.bool)  # (B, T+1)
        for b in range(self.batch_size):
            used = 0
            while used < self.row_len:
                ids, mask = self._render(self.next_local)
                if used and used + len(ids) > self.row_len:
                    break  # the next conversation starts the next row
                n = min(len(ids), self.row_len - used)
                rows[b, used : used + n] = torch.tensor(ids[:n])
                learn[b, used : used + n] = torch.tensor(mask[:n], dtype=torch.bool)
                used += n
                self.next_local += 1
        inputs = rows[:, :-1]
        targets = torch.where(learn[:, 1:], rows[:, 1:], -1)  # only what the assistant says is learned
        if self.device.type == "cuda":
            inputs, targets = inputs.pin_memory(), targets.pin_memory()
        return inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"next_local": self.next_local, "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if (state["rank"], state["world_size"]) != (self.rank, self.world_size):
            raise UserError(
                "SFT loader state belongs to another rank layout; resume with the same world size"
            )
        self.next_local = int(state["next_local"])
        self.rendered.clear()


VALIDATION_CONVERSATIONS = 1 << 40  # validation draws from a far-away index range of the same mixture


def sample_chat_fn(tokenizer, questions=("Who are you?", "What is 12 + 30?")):
    """A closure that greedily answers a few questions: a glance at what the model has learned to say."""

    def sample(model) -> str:
        engine = Engine(model, tokenizer, tool=None)
        ids = [tokenizer.render_for_completion([{"role": "user", "content": q}]) for q in questions]
        results = engine.generate(ids, SamplingParams(max_tokens=32, temperature=0.0))
        return "\n".join(f"  {q!r} -> {r.text!r}" for q, r in zip(questions, results))

    return sample


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

    def make_loader(rank: int, world_size: int) -> SFTLoader:
        return SFTLoader(mixture, tokenizer, train.device_batch, train.seq_len, rank, world_size, run.device)

    def validation():
        val = SFTLoader(
            mixture,
            tokenizer,
            train.device_batch,
            train.seq_len,
            run.dist.rank,
            run.dist.world_size,
            run.device,
            offset=VALIDATION_CONVERSATIONS,
        )
        return (next(val) for _ in range(train.eval_batches))

    run.message(f"SFT from {config.base} (step {base_meta['step']}): mixture {config.mix}")
    return train_stage(
        run,
        "sft",
        config,
        model,
        tokenizer,
        make_loader,
        validation,
        lr_scale=config.lr_frac,
        fingerprint={"mix": config.mix, "base_step": base_meta["step"]},
        sample=sample_chat_fn(tokenizer),
    )
