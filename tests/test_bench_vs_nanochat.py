"""The side-by-side harness's pure parts: the corpus in nanochat's shard layout, and the one bits-per-byte
definition both models are scored by, against a hand computation one token at a time."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from picochat.data.shards import shard_name, write_shard
from picochat.model import GPT, GPTConfig

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


score = load("vs_nanochat_score")
harness = load("bench_vs_nanochat")


def test_corpus_becomes_nanochats_layout_with_validation_last(tmp_path):
    corpus = tmp_path / "corpus"
    splits = {"train": [["a1", "a2", "a3"], ["b1"]], "val": [["v1", "v2"], ["v3"]]}
    for split, shards in splits.items():
        for i, texts in enumerate(shards):
            write_shard(corpus / split / shard_name(i), texts)
    data = tmp_path / "base" / "base_data_climbmix"
    data.mkdir(parents=True)
    (data / "shard_00009.parquet").write_bytes(b"stale")  # an earlier conversion's extra file goes
    harness.convert_corpus(corpus, data)
    # nanochat's dataset.list_parquet_files: sorted *.parquet names; the last is "val", the rest "train"
    files = sorted(f for f in os.listdir(data) if f.endswith(".parquet"))
    read = [pq.read_table(data / f).column("text").to_pylist() for f in files]
    assert files == ["shard_00000.parquet", "shard_00001.parquet", "shard_00002.parquet"]
    assert read[:-1] == splits["train"] and read[-1] == ["v1", "v2", "v3"]


def test_document_nats_equals_a_hand_computation_token_by_token():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, seq_len=8, n_layer=1, n_head=2, n_kv_head=2, n_embd=16))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    ids = torch.randint(0, 50, (20,)).tolist()  # BOS-first document of 20 tokens: 19 targets
    seq_len = 6
    hand = 0.0
    for j in range(1, len(ids)):  # target j: its row is block (j-1)//6, moved back if it is the last
        end = min(((j - 1) // seq_len + 1) * seq_len, len(ids) - 1)
        start = max(0, end - seq_len)
        row = model(torch.tensor([ids[start:j]]))[0, -1].double().tolist()
        hand += math.log(sum(math.exp(z) for z in row)) - row[ids[j]]
    with torch.no_grad():
        got = score.document_nats(model, ids, seq_len)
        whole = score.document_nats(model, ids, 64)  # one row: the plain full-context sum
        full = torch.nn.functional.cross_entropy(
            model(torch.tensor([ids[:-1]]))[0], torch.tensor(ids[1:]), reduction="sum"
        )
    assert got == pytest.approx(hand, rel=1e-5)
    assert whole == pytest.approx(full.item(), rel=1e-5) and abs(whole - got) > 1e-3
    assert score.rows(20, 6) == [(0, 6, 0), (6, 12, 6), (12, 18, 12), (13, 19, 18)]


def test_bits_per_byte_counts_utf8_bytes_of_every_document():
    texts = ["héllo", "🙂 ok"]
    records = score.score(lambda x: torch.zeros(1, x.size(1), 4), lambda t: [0] + [1] * len(t), texts, 3)
    # uniform logits over 4 tokens: ln 4 nats per predicted token; 5 + 4 tokens; 6 + 7 UTF-8 bytes
    assert [r["bytes"] for r in records] == [6, 7]
    assert score.bits_per_byte(records) == pytest.approx(9 * math.log(4) / (math.log(2) * 13))


def test_nanochat_pace_is_read_from_its_progress_lines():
    line = (
        "step 00012/00020 (60.00%) | loss: 5.1 | lrm: 1.00 | dt: 123.50ms | tok/sec: 66,000 | bf16_mfu: 0.1"
    )
    assert harness.step_seconds(f"{line}\n{line.replace('123.50', '100.00')}") == [0.1235, 0.1]


def test_a_pair_of_unequal_wall_times_is_flagged():
    assert harness.unequal_time(300, 309) == []  # within a tenth: a fair pair
    assert "Not equal wall time" in harness.unequal_time(183, 309)[0]


def test_picochat_gets_no_more_seconds_than_nanochat_used():
    args = harness.parse_args(["--seconds", "600"])
    short, over = {"wall_s": 547.0}, {"wall_s": 613.0}
    assert harness.picochat_seconds(args, short) == 547.0  # nanochat came in short: so does picochat
    assert harness.picochat_seconds(args, over) == 600.0  # nanochat ran over: picochat gets the 600
