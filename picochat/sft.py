"""Supervised fine-tuning: the base model learns to converse, from conversations with loss masks.

    picochat sft                                   # from the latest base checkpoint, the default mixture
    picochat sft --mix identity:2,arithmetic:3,jsonl:my_chats.jsonl:1 --steps 300

Conversations are rendered by the tokenizer (`render_conversation`: ids and a mask that is 1 on what the
assistant says) and packed whole into rows of T+1 tokens; the rest of a row is padding. Targets are -1
where the mask is 0 and on padding, so only the assistant's tokens are learned. The training loop,
checkpoints, resume and progress are pretraining's (`picochat.training`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from picochat.errors import UserError
from picochat.paths import checkpoints_dir


class SFTLoader:
    """(inputs, targets) batches of whole conversations from a task mixture, for one virtual rank.

    Conversation n of the mixture belongs to virtual rank n mod world_size. A row takes conversations in
    order while they fit; a conversation longer than a row is truncated to it. The state is the index of
    the next conversation not yet placed, so a resumed loader yields the very next batch.
    """

    def __init__(self, mixture, tokenizer, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1,
                 device="cpu", offset: int = 0):  # fmt: skip
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


@dataclass
class SFTConfig:
    base: Path = field(default_factory=lambda: checkpoints_dir() / "base")
    run_dir: Path = field(default_factory=lambda: checkpoints_dir() / "sft")
    mix: str = "identity:2,arithmetic:3,spelling:2,chitchat:2,gym:2"
    owner: str = "my user"
    seq_len: int = 512
    device_batch: int = 8
    batch_tokens: int = 8192
    steps: int | None = 300
    time_budget_s: float | None = None
    lr_frac: float = 0.3  # fraction of pretraining's base learning rates
    embedding_lr: float = 0.2
    head_lr: float = 0.004
    matrix_lr: float = 0.02
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "wsd"
    warmdown_frac: float = 1.0  # a linear decay from the start
    grad_clip: float = 1.0
    eval_every: int = 0
    eval_batches: int = 8
    log_every: int = 10
    save_every: int = 0
    keep_last: int = 2
    dtype: str = "auto"
    compile: bool = False
    device: str = "auto"
    seed: int = 7
    resume: str = "auto"
    restart_schedule: bool = False
    stop_after_steps: int | None = None
    tensorboard: bool = False
    wandb_project: str | None = None


VALIDATION_CONVERSATIONS = 1 << 40  # validation draws from a far-away index range of the same mixture


def sft(config: SFTConfig) -> dict:
    """Fine-tune the base checkpoint on the task mixture; returns the final validation metrics."""
    from picochat.checkpoint import load_model
    from picochat.evaluate import evaluate_bpb
    from picochat.optim import build_optimizer
    from picochat.pretrain import grad_accum_steps
    from picochat.runtime import compute_dtype, init_distributed, seed_everything
    from picochat.tasks import parse_mixture
    from picochat.training import LoopSettings, Trainer

    dist_info, device = init_distributed(config.device)
    dtype = compute_dtype(device, config.dtype)
    seed_everything(config.seed)
    model, tokenizer, base_meta = load_model(config.base, device)
    model.train()
    if config.seq_len > model.config.rope_len:
        raise UserError(
            f"--seq-len {config.seq_len} exceeds what the model's positions cover ({model.config.rope_len})"
        )
    mixture = parse_mixture(config.mix, owner=config.owner, seed=config.seed)
    grad_accum = grad_accum_steps(
        config.batch_tokens, config.device_batch, config.seq_len, dist_info.world_size
    )
    virtual_world = dist_info.world_size * grad_accum
    sources = [
        SFTLoader(mixture, tokenizer, config.device_batch, config.seq_len, dist_info.rank * grad_accum + m,
                  virtual_world, device)
        for m in range(grad_accum)
    ]  # fmt: skip
    optimizer = build_optimizer(
        model,
        config.embedding_lr * config.lr_frac,
        config.head_lr * config.lr_frac,
        config.matrix_lr * config.lr_frac,
    )
    token_bytes = torch.as_tensor(tokenizer.token_byte_lengths(), dtype=torch.int64)

    def evaluate(m) -> dict:
        val = SFTLoader(mixture, tokenizer, config.device_batch, config.seq_len, dist_info.rank,
                        dist_info.world_size, device, offset=VALIDATION_CONVERSATIONS)  # fmt: skip
        batches = (next(val) for _ in range(config.eval_batches))
        result = evaluate_bpb(m, batches, token_bytes, device, dtype)
        return {"bpb": result["bpb"], "loss": result["loss"]}

    settings = LoopSettings.from_config(config, run_dir=Path(config.run_dir), total_steps=config.steps)
    fingerprint = {"stage": "sft", "seq_len": config.seq_len, "device_batch": config.device_batch,
                   "mix": config.mix, "seed": config.seed, "steps": config.steps, "base_step": base_meta["step"]}  # fmt: skip
    if dist_info.is_main:
        print(f"SFT from {config.base} (step {base_meta['step']}): mixture {config.mix}; "
              f"{config.batch_tokens} tokens/step", flush=True)  # fmt: skip
    trainer = Trainer(model, optimizer, sources, settings, device, dtype, dist_info, config.batch_tokens,
                      evaluate=evaluate, tokenizer=tokenizer, fingerprint=fingerprint)  # fmt: skip
    return trainer.fit()
