"""Validation bits per byte of a checkpoint on each source of a picochat-built corpus.

    python bench/bpb_by_source.py CHECKPOINT [--corpus DIR] [--max-tokens 60000]

Each validation document is tokenized with BOS first and cut into rows of the model's context; a source's
figure is its summed cross-entropy over ln 2 × the UTF-8 bytes of its predicted tokens
(`picochat.evaluation.bpb.evaluate_bpb`), over its first documents up to --max-tokens tokens.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from picochat.checkpoint import load_model
from picochat.data.shards import iter_rows, list_shards
from picochat.evaluation.bpb import evaluate_bpb
from picochat.paths import data_dir


def rows_of(ids: list[int], seq_len: int):
    """(inputs, targets) rows of `seq_len`; the last row's missing targets are -1 (not counted)."""
    for start in range(0, len(ids) - 1, seq_len):
        chunk = ids[start : start + seq_len + 1]
        inputs = chunk[:-1] + [0] * (seq_len + 1 - len(chunk))
        targets = chunk[1:] + [-1] * (seq_len + 1 - len(chunk))
        yield inputs, targets


def batches_by_source(corpus: Path, tokenizer, seq_len: int, max_tokens: int, rows: int = 16):
    per_source, used = defaultdict(list), defaultdict(int)
    for text, source in iter_rows(list_shards(corpus, "val")):
        if used[source] >= max_tokens:
            continue
        ids = [tokenizer.bos_id, *tokenizer.encode(text)][: max_tokens - used[source] + 1]
        used[source] += len(ids) - 1
        per_source[source] += list(rows_of(ids, seq_len))
    for source, pairs in sorted(per_source.items()):
        batches = [
            tuple(torch.tensor([p[i] for p in pairs[s : s + rows]]) for i in (0, 1))
            for s in range(0, len(pairs), rows)
        ]
        yield source, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--max-tokens", type=int, default=60_000)
    args = parser.parse_args()
    model, tokenizer, meta = load_model(args.checkpoint, torch.device("cpu"))
    token_bytes = torch.as_tensor(tokenizer.token_byte_lengths(), dtype=torch.int64)
    corpus = args.corpus or data_dir() / "default"
    results = {}
    for source, batches in batches_by_source(corpus, tokenizer, model.config.seq_len, args.max_tokens):
        r = evaluate_bpb(model, batches, token_bytes, torch.device("cpu"))
        results[source] = {"bpb": round(r["bpb"], 4), "tokens": r["tokens"], "bytes": r["bytes"]}
        print(f"{source:<24} {r['bpb']:.4f} bpb over {r['tokens']:,} tokens")
    print(json.dumps({"checkpoint": str(args.checkpoint), "step": meta.step, "sources": results}))


if __name__ == "__main__":
    main()
