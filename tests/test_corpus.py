"""Building corpora: layout, manifest last, held-out slice of every source, fixed seed, dedupe, counted skips,
failures that leave the old corpus intact; shards; the synthetic corpus; the `picochat data` CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from picochat import paths
from picochat.cli import main
from picochat.data import corpus as corpus_module
from picochat.data import sources as sources_module
from picochat.data.corpus import (
    Deduplicator,
    build_corpus,
    corpus_dir,
    corpus_stats,
    load_manifest,
    split_train_val,
    write_synthetic_corpus,
)
from picochat.data.shards import iter_documents, list_shards, validate_shard, write_shard
from picochat.data.sources import Package, Source
from picochat.errors import UserError

QUIET = {"log": lambda _: None}


def paragraph(topic: str, i: int) -> str:
    return f"This is paragraph {i} about {topic}, written only for the tests of the corpus builder. " * 3


def write_inputs(folder: Path, topic: str, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{topic}_{i:03d}.txt").write_text(
            paragraph(topic, i) + "\n\n" + paragraph(topic, i + 1000)
        )
    return folder


@pytest.fixture
def fake_sources(tmp_path, monkeypatch):
    """Two registered 'package' sources whose fetch is a local folder and whose parser reads .txt files."""

    def parse_txt(root: Path, skips: Counter):
        for path in sorted(root.glob("*.txt")):
            yield path.read_text()

    registry = {}
    for name, n in (("alpha", 30), ("beta", 10)):
        write_inputs(tmp_path / "fetched" / name, name, n)
        registry[name] = Source(name, f"{name} texts", "test licence", Package("npm", name, "1.0"), parse_txt)
    monkeypatch.setattr(sources_module, "SOURCES", registry)
    monkeypatch.setattr(corpus_module, "fetch_source", lambda source, log: tmp_path / "fetched" / source.name)
    return registry


def test_build_writes_layout_manifest_and_held_out_slices(fake_sources):
    manifest = build_corpus("mix", sources=["alpha", "beta"], val_fraction=0.1, **QUIET)
    directory = paths.data_dir() / "mix"
    assert load_manifest(directory) == manifest
    assert manifest["sources"]["alpha"]["documents"] == {"train": 27, "val": 3}
    assert manifest["sources"]["beta"]["documents"] == {"train": 9, "val": 1}  # every source is held out
    assert manifest["sources"]["beta"]["licence"] == "test licence"
    table = pq.read_table(list_shards(directory, "val")[0])
    assert table.column_names == ["text", "source"]
    assert sorted(table.column("source").to_pylist()) == ["alpha"] * 3 + ["beta"]
    train = set(iter_documents(list_shards(directory, "train")))
    val = set(iter_documents(list_shards(directory, "val")))
    assert len(train) == 36 and not train & val
    assert not list(paths.data_dir().glob(".mix.*")) and not list(directory.rglob("*.tmp"))


def test_same_seed_same_corpus_other_seed_other_split(fake_sources):
    build_corpus("one", sources=["alpha"], seed=7, **QUIET)
    build_corpus("two", sources=["alpha"], seed=7, **QUIET)
    build_corpus("three", sources=["alpha"], seed=8, **QUIET)

    def docs(name, split):
        return list(iter_documents(list_shards(paths.data_dir() / name, split)))

    assert docs("one", "train") == docs("two", "train") and docs("one", "val") == docs("two", "val")
    assert docs("one", "val") != docs("three", "val")


def test_local_inputs_dedupe_and_counted_skips(tmp_path):
    folder = write_inputs(tmp_path / "mine", "gardens", 12)
    (folder / "copy.txt").write_text((folder / "gardens_000.txt").read_text().upper())  # exact duplicate
    (folder / "short.txt").write_text("Too short.")
    (folder / "empty.md").write_text("   \n\n")
    (folder / "latin1.txt").write_bytes(b"Caf\xe9 " * 100)
    (folder / "docs.jsonl").write_text(json.dumps({"text": paragraph("jsonl", 1) * 2}) + "\n{broken\n")
    manifest = build_corpus("mine", inputs=[folder], **QUIET)
    local = manifest["sources"]["local"]
    assert local["documents"]["train"] + local["documents"]["val"] == 13
    assert local["skipped"] == {
        "exact duplicate": 1,
        "shorter than 200 characters": 1,
        "empty document": 1,
        f"file is not UTF-8 ({folder / 'latin1.txt'} line 1)": 1,
        f"JSONL line is not valid JSON (first: {folder / 'docs.jsonl'} line 2)": 1,
    }


def test_a_source_that_yields_nothing_is_an_error_and_the_old_corpus_survives(tmp_path):
    build_corpus("keep", inputs=[write_inputs(tmp_path / "good", "rivers", 5)], **QUIET)
    before = load_manifest(corpus_dir("keep"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/tiny.txt").write_text("tiny")
    with pytest.raises(UserError, match="yielded no usable documents"):
        build_corpus("keep", inputs=[tmp_path / "bad"], **QUIET)
    assert load_manifest(corpus_dir("keep")) == before


def test_rebuild_replaces_the_corpus(tmp_path):
    build_corpus("re", inputs=[write_inputs(tmp_path / "a", "apples", 20)], **QUIET)
    build_corpus("re", inputs=[write_inputs(tmp_path / "b", "boats", 4)], **QUIET)
    texts = list(iter_documents(list_shards(corpus_dir("re"), "train")))
    assert len(texts) == 3 and all("boats" in t for t in texts)


def test_shards_are_small_when_asked(tmp_path):
    manifest = build_corpus(
        "small", inputs=[write_inputs(tmp_path / "s", "stones", 20)], shard_chars=2_000, **QUIET
    )
    assert len(manifest["shards"]["train"]) > 3
    assert [p.name for p in list_shards(corpus_dir("small"), "train")] == manifest["shards"]["train"]


def test_deduplicator_catches_near_duplicates():
    dedup = Deduplicator()
    paragraphs = [paragraph("near", i) for i in range(5)]
    assert dedup.check("\n\n".join(paragraphs)) is None
    assert dedup.check("\n\n".join(paragraphs[:4] + ["A different ending."])) == "near duplicate"
    assert dedup.check("\n\n".join(p.upper() for p in paragraphs)) == "exact duplicate"


def test_split_keeps_one_val_document_for_tiny_sources():
    assert split_train_val(["a", "b"], 1, "x", 0.01)[1] in (["a"], ["b"])
    assert split_train_val(["only"], 1, "x", 0.5) == (["only"], [])


# ------------------------------------------------------------------------------------ shards


def test_list_shards_and_validation_errors(tmp_path):
    with pytest.raises(UserError, match="no parquet shards"):
        list_shards(tmp_path, "train")
    with pytest.raises(UserError, match="unknown split"):
        list_shards(tmp_path, "test")
    (tmp_path / "train").mkdir()
    (tmp_path / "train/shard_00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="not a readable parquet"):
        list(iter_documents(list_shards(tmp_path, "train")))
    import pyarrow as pa

    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "nottext.parquet")
    with pytest.raises(UserError, match="no `text` column"):
        validate_shard(tmp_path / "nottext.parquet")


def test_write_shard_is_atomic_and_roundtrips(tmp_path):
    path = write_shard(tmp_path / "x/shard_00000.parquet", ["a", "b"], ["s", "s"])
    assert list((tmp_path / "x").iterdir()) == [path] and validate_shard(path) == 2
    with pytest.raises(ValueError):
        write_shard(tmp_path / "x/shard_00001.parquet", ["a"], ["s", "t"])
    assert not (tmp_path / "x/shard_00001.parquet").exists()


def test_load_manifest_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="picochat data build"):
        load_manifest(tmp_path)


# ------------------------------------------------------------------------------------ synthetic corpus


def test_synthetic_corpus_is_deterministic_and_in_the_standard_layout(tmp_path):
    a = write_synthetic_corpus(tmp_path / "a", n_docs=40, seed=3)
    b = write_synthetic_corpus(tmp_path / "b", n_docs=40, seed=3)
    c = write_synthetic_corpus(tmp_path / "c", n_docs=40, seed=4)
    docs_a = list(iter_documents(list_shards(a, "train")))
    assert docs_a == list(iter_documents(list_shards(b, "train")))
    assert docs_a != list(iter_documents(list_shards(c, "train")))
    assert len(docs_a) == 36 and len(list(iter_documents(list_shards(a, "val")))) == 4
    assert all(doc[0].isupper() and doc.endswith((".", "!")) for doc in docs_a)
    assert load_manifest(a)["sources"]["synthetic"]["documents"] == {"train": 36, "val": 4}


def test_stats_count_tokens_with_a_tokenizer(tmp_path):
    directory = write_synthetic_corpus(tmp_path / "t", n_docs=10, seed=0)

    class WordTokenizer:
        def encode_batch(self, texts):
            return [text.split() for text in texts]

    rows = corpus_stats(directory, WordTokenizer())
    assert [(r["source"], r["split"], r["documents"]) for r in rows] == [
        ("synthetic", "train", 9),
        ("synthetic", "val", 1),
    ]
    assert all(r["tokens"] > 50 for r in rows)
    assert corpus_stats(directory)[0]["tokens"] is None


# ------------------------------------------------------------------------------------ CLI


def test_cli_build_stats_list_synthetic(tmp_path, capsys):
    folder = write_inputs(tmp_path / "cli", "lamps", 8)
    assert main(["data", "build", "--input", str(folder), "--name", "lamps"]) == 0
    assert main(["data", "stats", "--name", "lamps"]) == 0
    out = capsys.readouterr().out
    assert "local" in out and "no tokens column" in out
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "gcide" in out and "GPL-2.0-or-later" in out and "lamps" in out
    assert main(["data", "synthetic", "--name", "tiny", "--docs", "20"]) == 0
    assert (paths.data_dir() / "tiny/manifest.json").is_file()
    assert main(["data", "stats", "--name", "nothing-here"]) == 2
    assert main(["data", "build", "--sources", "no-such-source"]) == 2
    assert "unknown source" in capsys.readouterr().err
