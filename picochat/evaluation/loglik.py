"""Log-likelihood scoring: how well a model predicts a continuation after a context.

A row is a token sequence whose tail (from `start`) is the continuation being judged. For every row we
return the summed negative log-likelihood of the continuation's tokens (nats), their count, and whether
greedy decoding would have produced exactly those tokens (LAMBADA-style tasks).

The rows of a problem (one per choice) always travel in the same batch, so a problem costs one forward.
Problems are packed: sorted by length and batched until `batch_tokens` (rows × longest row) is reached, so
little is spent on padding. Rows are right-padded; with causal attention the padding never influences a
real position, and only continuation positions go through the log-softmax.

Shapes: B rows, T time, V vocab, N continuation tokens in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from picochat.equations import log_softmax
from picochat.runtime import autocast


@dataclass(frozen=True)
class Row:
    """Token ids and where the continuation starts (start >= 1: the first token is only context)."""

    ids: list[int]
    start: int


@dataclass(frozen=True)
class RowScore:
    nll: float  # -sum log p(continuation token | everything before it), in nats
    tokens: int  # continuation tokens
    greedy: bool  # every continuation token is the argmax of its prediction

    @property
    def mean_nll(self) -> float:
        return self.nll / self.tokens


def split_continuation(tokenizer, context: str, continuation: str) -> Row:
    """<|bos|> + context + continuation as one encoding; the continuation starts where the tokens of the
    context alone stop agreeing with it (BPE may merge across the boundary)."""
    bos = tokenizer.bos_id
    whole = tokenizer.encode(context + continuation, prepend=bos)
    prefix = tokenizer.encode(context, prepend=bos)
    start = 0
    for a, b in zip(whole, prefix):
        if a != b:
            break
        start += 1
    start = max(1, min(start, len(whole) - 1))
    return Row(whole, start)


def pack_problems(problems: Sequence[Sequence[Row]], batch_tokens: int) -> list[list[int]]:
    """Group problem indices into batches of at most `batch_tokens` (rows × longest row), longest first.

    A problem is never split across batches; a problem larger than the budget gets a batch of its own.
    """
    order = sorted(range(len(problems)), key=lambda i: -max(len(r.ids) for r in problems[i]))
    batches, current, rows, longest = [], [], 0, 0
    for i in order:
        n, length = len(problems[i]), max(len(r.ids) for r in problems[i])
        if current and (rows + n) * max(longest, length) > batch_tokens:
            batches.append(current)
            current, rows, longest = [], 0, 0
        current.append(i)
        rows += n
        longest = max(longest, length)
    if current:
        batches.append(current)
    return batches


@torch.no_grad()
def score_rows(model, rows: Sequence[Row], device, dtype=torch.float32) -> list[RowScore]:
    """Score rows in one forward pass (right-padded to the longest)."""
    T = max(len(r.ids) for r in rows)
    inputs = torch.zeros((len(rows), T), dtype=torch.long)
    row_of, position, target = [], [], []
    for b, r in enumerate(rows):
        if not 1 <= r.start < len(r.ids):
            raise ValueError(f"row {b}: continuation start {r.start} outside 1..{len(r.ids) - 1}")
        inputs[b, : len(r.ids)] = torch.tensor(r.ids)
        for t in range(r.start, len(r.ids)):  # token t is predicted at position t - 1
            row_of.append(b)
            position.append(t - 1)
            target.append(r.ids[t])
    row_of_t = torch.tensor(row_of, device=device)
    target_t = torch.tensor(target, device=device)
    with autocast(device, dtype):
        logits = model(inputs.to(device))  # (B, T, V) fp32
    picked = logits[row_of_t, torch.tensor(position, device=device)].float()  # (N, V)
    token_nll = -log_softmax(picked)[torch.arange(len(target), device=device), target_t]  # (N,)
    hit = (picked.argmax(dim=-1) == target_t).long()  # (N,)
    nll = torch.zeros(len(rows), dtype=torch.float64, device=device).index_add_(
        0, row_of_t, token_nll.double()
    )
    count = torch.zeros(len(rows), dtype=torch.long, device=device).index_add_(
        0, row_of_t, torch.ones_like(hit)
    )
    hits = torch.zeros(len(rows), dtype=torch.long, device=device).index_add_(0, row_of_t, hit)
    return [RowScore(float(nll[b]), int(count[b]), bool(hits[b] == count[b])) for b in range(len(rows))]


def score_problems(
    model,
    problems: Sequence[Sequence[Row]],
    device,
    dtype=torch.float32,
    batch_tokens: int = 8192,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[RowScore]]:
    """Scores for every row of every problem, in the problems' order; `on_batch(k)` after each batch of
    k problems (for a progress bar)."""
    was_training = model.training
    model.eval()
    scores: list[list[RowScore] | None] = [None] * len(problems)
    for batch in pack_problems(problems, batch_tokens):
        flat = [row for i in batch for row in problems[i]]
        results = iter(score_rows(model, flat, device, dtype))
        for i in batch:
            scores[i] = [next(results) for _ in problems[i]]
        if on_batch is not None:
            on_batch(len(batch))
    model.train(was_training)
    return scores  # type: ignore[return-value]
