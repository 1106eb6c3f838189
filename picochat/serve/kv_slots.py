"""Decoding slots over the model's KVCache: the model-side API the scheduler needs, in the shape of the
engine's `DecodeSlots` (prefill one slot, step every slot, free a slot), built on `GPT.make_kv_cache`.

Row `slot` of one batch-wide KVCache holds one sequence. A prefill runs the model on that row alone through
a one-row view of the cache; a step runs every row and then puts the lengths of inactive rows back, so the
key/value they wrote at their next position is overwritten by their next real token.

Shapes: S slots, V vocab, T time.
"""

from __future__ import annotations

import torch
from torch import Tensor

from picochat.model import KVCache
from picochat.runtime import autocast


class KVCacheSlots:
    """`num_slots` independent sequences of at most `max_len` tokens each."""

    def __init__(self, model, num_slots: int, max_len: int, dtype: torch.dtype | None = None):
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = dtype or torch.float32
        self.cache = model.make_kv_cache(num_slots, max_len, dtype=self.dtype)
        self.num_slots, self.max_len = num_slots, max_len

    def prefill(self, slot: int, ids: list[int]) -> Tensor:
        """Append `ids` to the slot; return the (V,) fp32 logits after the last one."""
        if self.length(slot) + len(ids) > self.max_len:
            raise ValueError(f"slot {slot} would hold {self.length(slot) + len(ids)} > {self.max_len} tokens")
        view = KVCache.__new__(KVCache)  # row `slot` of the shared cache: writes land in the shared tensors
        view.k, view.v = self.cache.k[:, slot : slot + 1], self.cache.v[:, slot : slot + 1]
        view.lengths, view.max_len = self.cache.lengths[slot : slot + 1], self.max_len
        idx = torch.tensor([ids], device=self.device)  # (1, T)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            logits = self.model(idx, kv_cache=view, logits_at=torch.tensor([len(ids) - 1], device=self.device))
        return logits[0, 0].float()  # (V,)

    def step(self, tokens: Tensor, active: Tensor) -> Tensor:
        """Append tokens[s] to every active slot s; return the (S, V) fp32 logits after them."""
        before = self.cache.lengths.clone()
        with torch.inference_mode(), autocast(self.device, self.dtype):
            logits = self.model(tokens.to(self.device).view(-1, 1), kv_cache=self.cache)[:, -1]  # (S, V)
        self.cache.lengths.copy_(torch.where(active.to(self.device), before + 1, before))
        return logits.float()

    def free(self, slot: int) -> None:
        self.cache.lengths[slot] = 0

    def length(self, slot: int) -> int:
        return int(self.cache.lengths[slot])
