"""Tiny stand-in models shared by the engine, serving and evaluation tests."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from picochat.model import GPT, GPTConfig, KVCache


def tiny_gpt(vocab_size: int, seed: int = 0) -> GPT:
    """A 2-layer GPT with every weight random (the init zeroes output projections), so every path matters."""
    model = GPT(GPTConfig(vocab_size=vocab_size, seq_len=64, n_layer=2, n_head=2, n_kv_head=1, n_embd=32))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


class ScriptedModel(nn.Module):
    """A stand-in GPT that ignores what it reads: after `prompt_len` tokens it predicts, position by
    position, the tokens of `script` (then repeats the last one), so a test knows what will be written."""

    def __init__(self, script: list[int], prompt_len: int, vocab_size: int):
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab_size, seq_len=64, n_layer=1, n_head=1, n_kv_head=1, n_embd=2)
        self.script = torch.tensor(script)
        self.prompt_len = prompt_len
        self.unused = nn.Parameter(torch.zeros(1))  # the engine finds the device from the parameters

    def make_kv_cache(self, batch_size: int, max_len: int, dtype=None) -> KVCache:
        return KVCache(self.config, batch_size, max_len)

    def forward(self, idx, kv_cache: KVCache, logits_at=None):
        positions = kv_cache.positions(idx.size(1))  # (B, T)
        kv_cache.advance(idx.size(1))
        if logits_at is not None:
            positions = positions[torch.arange(idx.size(0)), logits_at].unsqueeze(1)  # (B, 1)
        step = (positions + 1 - self.prompt_len).clamp(0, len(self.script) - 1)
        return 30.0 * F.one_hot(self.script[step], self.config.vocab_size).float()  # (B, T, V)
