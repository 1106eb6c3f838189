"""Log-likelihood scoring: a row's continuation's summed negative log-likelihood (nats), token count, and
whether greedy decoding reproduces it; a problem's rows share what they share once (docs/evaluation.md).
Shapes: P problems, R rows, V vocab; C, M, Q the longest context, shared continuation and own tail.
"""

from collections.abc import Sequence
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
    whole = tokenizer.encode(context + continuation, prepend=tokenizer.bos_id)
    prefix = tokenizer.encode(context, prepend=tokenizer.bos_id)
    agree = next((t for t, (a, b) in enumerate(zip(whole, prefix)) if a != b), min(len(whole), len(prefix)))
    return Row(whole, max(1, min(agree, len(whole) - 1)))


def pack_problems(problems: Sequence[Sequence[Row]], batch_tokens: int) -> list[list[int]]:
    """Problem indices, batched of at most `batch_tokens` (rows × longest row), none split, longest first."""
    longest = [max(len(r.ids) for r in p) for p in problems]
    own = [longest[i] - shared_prefix(p)[1] for i, p in enumerate(problems)]  # tokens after the shared ones
    order = sorted(range(len(problems)), key=lambda i: (-own[i], -longest[i]))
    batches: list[list[int]] = [[]]
    rows = width = 0
    for i in order:
        if batches[-1] and (rows + len(problems[i])) * max(width, longest[i]) > batch_tokens:
            batches.append([])
            rows = width = 0
        batches[-1].append(i)
        rows, width = rows + len(problems[i]), max(width, longest[i])
    return [batch for batch in batches if batch]


def shared_prefix(rows: Sequence[Row]) -> tuple[int, int]:
    """(context, shared) for a problem's rows: `shared` leading tokens are the same in every row, and the
    first `context` of them (context <= shared) also come before every row's continuation."""
    first = rows[0].ids
    shared = min(len(r.ids) for r in rows)
    for r in rows[1:]:
        shared = next((t for t in range(shared) if r.ids[t] != first[t]), shared)
    return min(shared, min(r.start for r in rows)), shared


def right_padded(pieces: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    out = torch.zeros((len(pieces), max(1, width)), dtype=torch.long)
    for b, piece in enumerate(pieces):
        out[b, : len(piece)] = torch.tensor(piece, dtype=torch.long)
    return out


@torch.inference_mode()
def score_batch(
    model, problems: Sequence[Sequence[Row]], device, dtype=torch.float32
) -> list[list[RowScore]]:
    """Score several problems' rows in three passes through a KV cache (`forward_passes`), shared tokens once:
    1. each problem's context, whose last logits predict every row's first continuation token; 2. the
    continuation tokens all its rows still share (PIQA's solutions often differ in a word or two); 3. each
    row's own tokens. Rows are right-padded and see only their own keys, so padding changes no result."""
    rows = [r for p in problems for r in p]
    for b, r in enumerate(rows):
        if not 1 <= r.start < len(r.ids):
            raise ValueError(f"row {b}: continuation start {r.start} outside 1..{len(r.ids) - 1}")
    owner = [i for i, p in enumerate(problems) for _ in p]  # the problem of each row
    bounds = [shared_prefix(p) for p in problems]
    passes = forward_passes(model, problems, bounds, owner, device, dtype)
    at_context_end, middle, shared_logits, row_logits = passes
    scores = []
    for b, r in enumerate(rows):
        i, (c, s) = owner[b], bounds[owner[b]]
        # logits of positions c-1, c, ..., len-2, from the three passes; token t is predicted at position t-1
        parts = [at_context_end[i]]
        if middle[i]:
            parts.append(shared_logits[i, : len(middle[i])])
        if len(r.ids) - 1 > s:
            parts.append(row_logits[b, : len(r.ids) - 1 - s])
        logits = torch.cat(parts)[r.start - c : len(r.ids) - c].float()  # (N, V)
        target = torch.tensor(r.ids[r.start :], device=device)
        token_nll = -log_softmax(logits)[torch.arange(len(target), device=device), target]  # (N,)
        greedy = bool((logits.argmax(dim=-1) == target).all())
        scores.append(RowScore(float(token_nll.double().sum()), len(target), greedy))
    in_order = iter(scores)
    return [[next(in_order) for _ in p] for p in problems]


def forward_passes(model, problems, bounds, owner, device, dtype):
    """The three passes of `score_batch`: (context-end logits (P, 1, V), each problem's shared continuation,
    its logits (P, M, V), the rows' own logits (R, Q, V))."""
    context = [p[0].ids[:c] for p, (c, _) in zip(problems, bounds)]
    # A row's last token predicts nothing, so it is never fed: tails stop one short of the row's end, and so
    # does the shared part when it is a whole row (one-row problems such as LAMBADA).
    middle = [p[0].ids[c : min(s, max(len(r.ids) for r in p) - 1)] for p, (c, s) in zip(problems, bounds)]
    tails = [r.ids[bounds[i][1] : len(r.ids) - 1] for i, p in enumerate(problems) for r in p]
    C, M, Q = (max(len(x) for x in part) for part in (context, middle, tails))
    max_len = max(C + M, max(s for _, s in bounds) + max(Q, 1))
    shared_logits = row_logits = None
    with autocast(device, dtype):
        cache = model.make_kv_cache(len(problems), max_len, dtype=dtype)
        lengths = torch.tensor([c for c, _ in bounds], device=device)
        at_context_end = model(right_padded(context, C).to(device), kv_cache=cache, logits_at=lengths - 1)
        cache.set_lengths(lengths)
        if M > 0:
            shared_logits = model(right_padded(middle, M).to(device), kv_cache=cache)
            cache.set_lengths(lengths + torch.tensor([len(m) for m in middle], device=device))
        cache.keep_rows(torch.tensor(owner, device=device))
        if Q > 0:
            row_logits = model(right_padded(tails, Q).to(device), kv_cache=cache)
    return at_context_end, middle, shared_logits, row_logits


def score_problems(
    model, problems: Sequence[Sequence[Row]], device, dtype=torch.float32, batch_tokens=1024, on_batch=None
) -> list[list[RowScore]]:
    was_training = model.training
    model.eval()
    scores: list[list[RowScore] | None] = [None] * len(problems)
    for batch in pack_problems(problems, batch_tokens):
        for i, s in zip(batch, score_batch(model, [problems[i] for i in batch], device, dtype)):
            scores[i] = s
        if on_batch is not None:
            on_batch(len(batch))
    model.train(was_training)
    return scores  # type: ignore[return-value]
