"""Batches of whole conversations for training: SFT's loader, also the conversation rows of pretraining.
Conversations are rendered by the tokenizer (ids, and a mask that is 1 on what the assistant says) and
packed whole into rows of T+1 tokens, the rest padding; targets are -1 except on the assistant's tokens.
"""

from __future__ import annotations

import torch

from picochat.errors import UserError


class SFTLoader:
    """(inputs, targets) batches of whole conversations from a task mixture, for one virtual rank: the
    conversations n with n mod world_size == rank. A row takes conversations in order while they fit (one
    longer than a row is truncated); the state is the next conversation's index, so resuming is exact."""

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
