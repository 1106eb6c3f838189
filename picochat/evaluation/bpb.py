"""Bits per byte and perplexity on held-out batches. Bits per byte (`equations.bits_per_byte`) divides the
summed cross-entropy (nats) by ln 2 × the UTF-8 bytes of the targets, so it does not depend on the
tokenizer; targets of no bytes (special tokens) and masked ones (-1) are left out of both sums.
"""

from collections.abc import Iterable

import torch
from torch import Tensor

from picochat.equations import bits_per_byte, perplexity
from picochat.runtime import autocast


@torch.no_grad()
def evaluate_bpb(
    model, batches: Iterable[tuple[Tensor, Tensor]], token_bytes: Tensor, device, dtype=torch.float32
) -> dict:
    """{"bpb", "loss" (nats per counted token), "ppl", "tokens", "bytes"}, summed over all ranks;
    token_bytes (V,) holds the UTF-8 length of every token id (0 for special tokens)."""
    was_training = model.training
    model.eval()
    token_bytes = token_bytes.to(device)
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_bytes = torch.zeros((), dtype=torch.int64, device=device)
    total_tokens = torch.zeros((), dtype=torch.int64, device=device)
    for inputs, targets in batches:
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast(device, dtype):
            nats = model(inputs, targets, loss_reduction="none")  # (B, T), 0 where target is -1
        nbytes = torch.where(targets >= 0, token_bytes[targets.clamp_min(0)], 0)  # (B, T)
        counted = nbytes > 0
        total_nats += (nats.double() * counted).sum()
        total_bytes += nbytes.sum()
        total_tokens += counted.sum()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for t in (total_nats, total_bytes, total_tokens):
            torch.distributed.all_reduce(t)
    model.train(was_training)
    n_tokens, n_bytes = int(total_tokens), int(total_bytes)
    if n_bytes == 0:
        raise ValueError("evaluation saw no tokens with bytes: the validation split is empty or all special")
    loss, bpb = float(total_nats) / n_tokens, bits_per_byte(float(total_nats), n_bytes)
    return {"bpb": bpb, "loss": loss, "ppl": perplexity(loss), "tokens": n_tokens, "bytes": n_bytes}
