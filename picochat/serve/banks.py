"""Decoding slots in banks of equal size: a step runs only the banks that hold a running sequence.

`decode.DecodeSlots` runs every one of its rows at every step, with the same shapes, so that a row's
numbers never depend on what the other rows hold. With one bank of 32 slots, a lone user would pay for
32 rows at every step. Banks of B slots keep the guarantee (every row always runs in a B-row step,
whatever the others do) while the cost of a step follows the load: one bank when few requests run, all of
them when the server is full. The scheduler hands out the lowest free slot first, so running sequences
gather in the first banks.

    slots = SlotBanks(model, num_slots=32, bank_size=8, max_len=2048)   # 4 banks of 8
    logits = slots.prefill(slot, ids)          # (V,)
    out = slots.step(tokens, active)    # Scored: (S, V) logits, (S,) argmax and logsumexp;
                                               # rows of banks without an active slot are 0
    slots.free(slot)

Shapes: S slots (all banks), B slots per bank, V vocab.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from picochat.decode import DecodeSlots, Scored


class SlotBanks:
    """`num_slots` decoding slots (rounded up to whole banks) in banks of `bank_size` DecodeSlots rows."""

    def __init__(
        self,
        model,
        num_slots: int,
        bank_size: int,
        max_len: int,
        dtype: torch.dtype | None = None,
        compile: bool = False,
        freeze: bool = False,
    ):
        self.bank_size = min(bank_size, num_slots)
        count = math.ceil(num_slots / self.bank_size)
        self.banks = [
            DecodeSlots(model, self.bank_size, max_len, dtype=dtype, compile=compile, freeze=freeze)
            for _ in range(count)
        ]
        self.num_slots = count * self.bank_size
        self.max_len = max_len
        self.vocab_size = model.config.vocab_size

    def _locate(self, slot: int) -> tuple[DecodeSlots, int]:
        return self.banks[slot // self.bank_size], slot % self.bank_size

    def prefill(self, slot: int, ids: list[int]) -> Tensor:
        """Append `ids` to the slot; return the (V,) fp32 logits after the last one."""
        bank, row = self._locate(slot)
        return bank.prefill(row, ids)

    def step(self, tokens: Tensor, active: Tensor) -> Scored:
        """Append tokens[s] to every active slot s, one forward pass per bank that has one; return the
        (S, V) logits with each row's argmax and logsumexp (computed inside each bank's step)."""
        B = self.bank_size
        logits = torch.zeros(self.num_slots, self.vocab_size)  # (S, V)
        best = torch.zeros(self.num_slots, dtype=torch.long)  # (S,)
        logsumexp = torch.zeros(self.num_slots)  # (S,)
        for b, bank in enumerate(self.banks):
            rows = slice(b * B, (b + 1) * B)
            if active[rows].any():
                out = bank.step(tokens[rows], active[rows])  # (B, V), (B,), (B,)
                logits[rows], best[rows], logsumexp[rows] = (t.to(logits.device) for t in out)
        return Scored(logits, best, logsumexp)

    def free(self, slot: int) -> None:
        bank, row = self._locate(slot)
        bank.free(row)

    def length(self, slot: int) -> int:
        bank, row = self._locate(slot)
        return bank.length(row)
