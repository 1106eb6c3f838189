"""One bits-per-byte definition for any causal language model, so picochat's and nanochat's models are
scored alike: the same documents, each tokenized by the model's own tokenizer with BOS first.

    bpb = Σ_docs nats(doc) / (ln 2 · Σ_docs UTF-8 bytes(doc))

nats(doc): the total cross-entropy of every token after BOS given the tokens before it, the document cut
into rows of at most `seq_len` inputs (the context the model was trained on); the last row is moved back to
end at the document's end, so it keeps a full context and no row has a single input. Every token is
predicted once, and the tokens decode to the document, so their bytes are the document's bytes.

This file imports no picochat code: the harness (bench_vs_nanochat.py) runs it with nanochat's Python,
inside nanochat's checkout, as `python vs_nanochat_score.py TEXTS.json OUT.json SEQ_LEN MODEL_TAG`, and
imports `score` for picochat's side.
"""

from __future__ import annotations

import json
import math
import sys


def rows(n_tokens: int, seq_len: int) -> list[tuple[int, int, int]]:
    """(start, end, first) for each row of a document of n_tokens (BOS included): inputs ids[start:end],
    scored on the targets ids[first + 1 : end + 1], so each target 1 … n_tokens − 1 is scored once."""
    out = []
    for first in range(0, n_tokens - 1, seq_len):
        end = min(first + seq_len, n_tokens - 1)
        out.append((max(0, end - seq_len), end, first))
    return out


def document_nats(forward, ids: list[int], seq_len: int) -> float:
    """Σ −ln p(ids[j] | the row's inputs before j) over j ≥ 1; forward: (1, T) ids -> (1, T, V) logits."""
    import torch
    import torch.nn.functional as F

    total = 0.0
    for start, end, first in rows(len(ids), seq_len):
        inputs = torch.tensor(ids[start:end])[None]  # (1, T)
        targets = torch.tensor(ids[first + 1 : end + 1])  # (K,) the last K positions' targets
        logits = forward(inputs)[0, first - start :].float()  # (K, V)
        total += F.cross_entropy(logits, targets, reduction="sum").item()
    return total


def score(forward, encode, texts: list[str], seq_len: int) -> list[dict]:
    """Per document: nats (above) and its UTF-8 bytes. encode: text -> ids with BOS first."""
    return [
        {"nats": document_nats(forward, encode(t), seq_len), "bytes": len(t.encode("utf-8"))} for t in texts
    ]


def bits_per_byte(records: list[dict]) -> float:
    return sum(r["nats"] for r in records) / (math.log(2) * sum(r["bytes"] for r in records))


def score_nanochat(texts_file: str, out_file: str, seq_len: int, model_tag: str) -> None:
    """nanochat's side: its last base checkpoint under $NANOCHAT_BASE_DIR/base_checkpoints/MODEL_TAG."""
    import torch
    from nanochat.checkpoint_manager import load_model

    model, tokenizer, _ = load_model("base", torch.device("cpu"), "eval", model_tag=model_tag)
    bos = tokenizer.get_bos_token_id()
    with open(texts_file, encoding="utf-8") as f:
        texts = json.load(f)
    with torch.no_grad():
        records = score(model, lambda text: tokenizer.encode(text, prepend=bos), texts, seq_len)
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(records, f)


if __name__ == "__main__":
    score_nanochat(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
