"""The pretraining loader: packing invariants, sharding across ranks, exact resume, bad input."""

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from picochat.data.loader import PretrainLoader, list_row_groups, rank_parts, read_part, validation_batches
from picochat.data.packing import BestFitPacker
from picochat.errors import UserError

BOS = 256


class ByteTokenizer:
    """A tiny stand-in for picochat's tokenizer: one token per UTF-8 byte, <|bos|> = 256."""

    bos_id = BOS
    vocab_size = 257

    def encode_batch(self, texts, prepend=None, num_threads=0):
        head = [] if prepend is None else [prepend]
        return [head + list(text.encode()) for text in texts]


def make_docs(count, seed=0, max_len=60):
    rng = random.Random(seed)
    return [
        f"<{i}>" + "".join(rng.choice("abcdefgh ") for _ in range(rng.randint(1, max_len)))
        for i in range(count)
    ]


def write_corpus(directory, docs, shards=3, row_group_size=7):
    """`docs` split over `shards` parquet files with small row groups; returns the sorted shard paths."""
    directory.mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(docs) // shards)
    paths = []
    for s in range(shards):
        path = directory / f"shard_{s:05d}.parquet"
        table = pa.table({"text": pa.array(docs[s * per_shard : (s + 1) * per_shard], type=pa.string())})
        pq.write_table(table, path, row_group_size=row_group_size)
        paths.append(path)
    return paths


def epoch_documents(shard_paths, rank=0, world_size=1, epoch=0, seed=0):
    """The raw `text` values one rank reads in one epoch, in order (the loader's document stream)."""
    for part in rank_parts(list_row_groups(shard_paths), rank, world_size, epoch, seed):
        yield from read_part(shard_paths, part)


@pytest.fixture
def corpus(tmp_path):
    docs = make_docs(100)
    return docs, write_corpus(tmp_path / "train", docs)


# --- packing ---------------------------------------------------------------------------------------------


def runs(row):
    """Split a row of test tokens (token j of document k is k * 1000 + j) into pieces (k, first j, length)."""
    pieces = []
    for token in row:
        k, j = divmod(int(token), 1000)
        if pieces and pieces[-1][0] == k and pieces[-1][1] + pieces[-1][2] == j:
            pieces[-1][2] += 1
        else:
            pieces.append([k, j, 1])
    return pieces


@settings(max_examples=80, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=60),
    row_len=st.integers(1, 32),
    buffer_docs=st.integers(1, 8),
    carry=st.booleans(),
)
def test_best_fit_rows_are_full_and_account_for_every_token(lengths, row_len, buffer_docs, carry):
    docs = [[k * 1000 + j for j in range(n)] for k, n in enumerate(lengths)]  # j == 0: the <|bos|>
    stream = iter(enumerate(docs))
    packer, added, added_keys = BestFitPacker(row_len, carry_remainders=carry), 0, []
    rows, cropped, headless = [], 0, 0

    def top_up():
        nonlocal added
        while len(packer) < buffer_docs or packer.tokens_buffered < row_len:
            key, doc = next(stream, (None, None))
            if doc is None:
                return
            packer.add(key, doc)
            added += len(doc)
            added_keys.append(key)

    while True:
        top_up()
        if packer.tokens_buffered < row_len:
            break
        row = np.full(row_len, -1, dtype=np.int64)
        packing = packer.pack_row(row, top_up)
        cropped, headless = cropped + packing.tokens_cropped, headless + packing.tokens_headless
        rows.append(row)

    assert all((row >= 0).all() for row in rows), "every row is full"
    packed = [int(t) for row in rows for t in row]
    assert len(packed) == len(set(packed)), "no token is packed twice"
    buffered = {k * 1000 + j for k, offset in packer.buffered() for j in range(offset, lengths[k])}
    expected = {t for k in added_keys for t in docs[k]}
    assert set(packed).isdisjoint(buffered) and set(packed) | buffered <= expected
    if carry:
        assert set(packed) | buffered == expected, "carrying remainders loses no token"
        assert added == len(packed) + packer.tokens_buffered
    else:
        assert added == len(packed) + cropped + packer.tokens_buffered
        assert headless == 0
    assert headless == sum(length for row in rows for _, j, length in runs(row) if j > 0)
    for row in rows:
        pieces = runs(row)
        for k, j, length in pieces[:-1]:
            assert j + length == lengths[k], "only the last piece of a row may be cropped"
        if not carry:
            assert all(j == 0 for _, j, _ in pieces), "without carrying, every piece is a document start"


def test_best_fit_takes_the_longest_document_that_fits():
    packer = BestFitPacker(10)
    for key, length in enumerate([3, 6, 4, 9]):
        packer.add(key, [key] * length)
    row = np.zeros(10, dtype=np.int64)
    assert packer.pack_row(row) == (1, 2, 0)  # 9 fits; then 1 left and nothing fits: the 3 is cropped
    assert list(row) == [3] * 9 + [0]
    assert packer.buffered() == [(1, 0), (2, 0), (0, 1)]  # the rest of the 3 is carried, last in
    assert packer.pack_row(row) == (0, 0, 0)  # 6 then 4: exactly full
    assert list(row) == [1] * 6 + [2] * 4


def test_best_fit_crops_the_shortest_when_nothing_fits_and_gives_long_documents_a_row():
    packer = BestFitPacker(5, rows_apart=1)
    packer.add("long", list(range(12)))
    packer.add("a", [1] * 4)
    packer.add("b", [2] * 3)
    row = np.zeros(5, dtype=np.int64)
    assert packer.pack_row(row) == (1, 7, 0)  # a row-or-longer document fills a row on its own
    assert list(row) == [0, 1, 2, 3, 4]
    assert packer.pack_row(row) == (1, 2, 5)  # its carried 7 tokens: a row of their own again, headless
    assert list(row) == [5, 6, 7, 8, 9]
    assert packer.pack_row(row) == (1, 1, 1)  # "a" fits (4), then 1 left: the shortest, the last 2 of "long"
    assert list(row) == [1, 1, 1, 1, 10]
    assert packer.buffered() == [("b", 0), ("long", 11)]


def test_long_documents_take_rows_in_turn_once_enough_wait():
    def first_tokens(packer, rows):
        row, firsts = np.zeros(4, dtype=np.int64), []
        for _ in range(rows):
            packer.pack_row(row)
            firsts.append(chr(row[0]) if row[0] else "-")
        return "".join(firsts)

    packer = BestFitPacker(4, rows_apart=3)
    for key in "abc":
        packer.add(key, [ord(key)] * 12)  # three rows each
    packer.add("x", [0, 0])
    packer.add("y", [0, 0])
    # not aaabbbccc: one document's rows are spread out; once a is done only two wait, so x+y go first
    assert first_tokens(packer, 10) == "abcabca-bc"

    packer = BestFitPacker(4, rows_apart=3)
    packer.add("a", [ord("a")] * 12)
    packer.add("x", [0, 0])
    packer.add("y", [0, 0])
    assert first_tokens(packer, 4) == "-aaa"  # alone, it waits while short documents can fill a row


# --- the loader ------------------------------------------------------------------------------------------


class PositionTokenizer:
    """Tokens that say where they come from: character j (from 1) of document "<i>..." is i * 1000 + j."""

    bos_id = 999_999
    vocab_size = 1_000_000

    def encode_batch(self, texts, prepend=None, num_threads=0):
        def doc_id(text):
            return int(text[1 : text.index(">")])

        head = [] if prepend is None else [prepend]
        return [head + [doc_id(t) * 1000 + j for j in range(1, len(t) + 1)] for t in texts]


def test_loader_rows_are_full_mark_every_document_start_and_lose_no_token(corpus):
    docs, paths = corpus
    loader = PretrainLoader(paths, PositionTokenizer(), batch_size=2, seq_len=31, buffer_docs=16, loop=False)
    bos, seen, starts_after_lone_bos, lone_bos = PositionTokenizer.bos_id, set(), 0, 0
    for inputs, targets in loader:
        assert inputs.shape == targets.shape == (2, 31)
        assert inputs.dtype == targets.dtype == torch.int64
        assert (inputs[:, 1:] == targets[:, :-1]).all()
        rows = np.concatenate([inputs.numpy(), targets.numpy()[:, -1:]], axis=1)
        for row in rows:
            pieces = []  # [document, last j]; a piece opened by <|bos|> has document None until known
            for token in map(int, row):
                if token == bos:
                    pieces.append([None, 0])
                    continue
                i, j = divmod(token, 1000)
                assert (i, j) not in seen, "no token is packed twice"
                seen.add((i, j))
                if pieces and pieces[-1][0] in (None, i) and pieces[-1][1] == j - 1:
                    pieces[-1] = [i, j]
                else:
                    starts_after_lone_bos += j == 1  # its <|bos|> was cropped off alone at a row's end
                    pieces.append([i, j])
            lone_bos += pieces[-1] == [None, 0]
            for i, last in pieces[:-1]:
                assert last == len(docs[i]), "every piece but a row's last runs to its document's end"
    assert starts_after_lone_bos <= lone_bos, "every document starts with <|bos|>"
    stats = loader.stats
    assert stats["docs_read"] == len(docs) and stats["docs_skipped"] == 0
    assert stats["tokens_read"] == sum(len(d) + 1 for d in docs)
    assert stats["tokens_read"] == stats["tokens_packed"] + stats["tokens_left_at_end"]
    assert stats["tokens_left_at_end"] < 2 * 32 * 2  # at most a partial batch and what cannot fill a row
    assert len(seen) >= sum(map(len, docs)) - stats["tokens_left_at_end"]
    assert 0 < stats["tokens_headless"] < stats["tokens_packed"]


@pytest.mark.parametrize(("world_size", "shards", "row_group_size"), [(2, 3, 7), (3, 1, 60)])
def test_ranks_together_read_every_document_exactly_once_per_epoch(
    tmp_path, world_size, shards, row_group_size
):
    # (3, 1, 60): two row groups for three ranks, so ranks split row groups by document instead
    docs = make_docs(100)
    paths = write_corpus(tmp_path, docs, shards, row_group_size)
    for epoch in (0, 1):
        read = [doc for rank in range(world_size) for doc in epoch_documents(paths, rank, world_size, epoch)]
        assert sorted(read) == sorted(docs)
    loaders = [
        PretrainLoader(paths, ByteTokenizer(), 1, 15, rank, world_size, buffer_docs=4, loop=False)
        for rank in range(world_size)
    ]
    for loader in loaders:
        for _ in loader:
            pass
    assert sum(loader.stats["docs_read"] for loader in loaders) == len(docs)


@pytest.mark.parametrize(("rank", "world_size", "buffer_docs"), [(0, 1, 1), (0, 1, 20), (1, 2, 5)])
def test_resume_mid_epoch_gives_the_batches_an_uninterrupted_run_would(corpus, rank, world_size, buffer_docs):
    _, paths = corpus

    def make():
        return PretrainLoader(
            paths, ByteTokenizer(), 4, 32, rank, world_size, seed=7, buffer_docs=buffer_docs
        )

    with make() as reference:
        batches = [next(reference) for _ in range(60)]  # several epochs of this small corpus
        assert reference.stats["epoch"] >= 2
    for stop_after in (0, 1, 13, 29, 47):
        with make() as first:
            for _ in range(stop_after):
                next(first)
            state = json.loads(json.dumps(first.state_dict()))
        with make() as resumed:
            resumed.load_state_dict(state)
            for inputs, targets in batches[stop_after : stop_after + 6]:
                got_inputs, got_targets = next(resumed)
                assert (got_inputs == inputs).all() and (got_targets == targets).all()
            assert resumed.stats["batches"] == stop_after + 6


def test_resume_refuses_a_state_saved_with_other_settings(corpus):
    _, paths = corpus
    with PretrainLoader(paths, ByteTokenizer(), 2, 16) as loader:
        next(loader)
        state = loader.state_dict()
    with PretrainLoader(paths, ByteTokenizer(), 2, 32) as other, pytest.raises(UserError, match="seq_len 16"):
        other.load_state_dict(state)


def test_validation_batches_are_the_same_every_call(tmp_path):
    paths = write_corpus(tmp_path / "val", make_docs(40, seed=1), shards=1)
    first = list(validation_batches(paths, ByteTokenizer(), 2, 16))
    second = list(validation_batches(paths, ByteTokenizer(), 2, 16))
    assert len(first) == len(second) > 0
    for (a, b), (c, d) in zip(first, second, strict=True):
        assert (a == c).all() and (b == d).all()
    wrapped = list(validation_batches(paths, ByteTokenizer(), 2, 16, max_batches=len(first) + 5))
    assert len(wrapped) == len(first) + 5  # every rank yields exactly max_batches


# --- bad input -------------------------------------------------------------------------------------------


def test_empty_and_missing_documents_are_skipped_and_counted(tmp_path):
    docs = ["", "hello world, this is a document", None, "   ", "another document here"] * 4
    path = tmp_path / "shard_00000.parquet"
    pq.write_table(pa.table({"text": pa.array(docs, type=pa.string())}), path)
    loader = PretrainLoader([path], ByteTokenizer(), 1, 8, loop=False)
    batches = list(loader)
    assert batches
    stats = loader.stats
    assert stats["docs_skipped"] == 12 and stats["docs_read"] == 8
    with pytest.raises(StopIteration):  # and stays finished
        next(loader)
    assert loader.stats == stats
    assert stats["tokens_read"] == stats["tokens_packed"] + stats["tokens_left_at_end"]


def test_missing_corrupt_and_columnless_shards_are_named(tmp_path):
    missing = tmp_path / "shard_00009.parquet"
    with pytest.raises(UserError, match="shard_00009.parquet does not exist"):
        PretrainLoader([missing], ByteTokenizer(), 1, 8)
    corrupt = tmp_path / "shard_00001.parquet"
    corrupt.write_bytes(b"this is not parquet")
    with pytest.raises(UserError, match="shard_00001.parquet is not a readable parquet file"):
        PretrainLoader([corrupt], ByteTokenizer(), 1, 8)
    columnless = tmp_path / "shard_00002.parquet"
    pq.write_table(pa.table({"body": ["x"]}), columnless)
    with pytest.raises(UserError, match="shard_00002.parquet has no `text` column"):
        PretrainLoader([columnless], ByteTokenizer(), 1, 8)
    with pytest.raises(UserError, match="no shards"):
        PretrainLoader([], ByteTokenizer(), 1, 8)


def test_a_source_with_nothing_usable_says_so(tmp_path):
    path = tmp_path / "shard_00000.parquet"
    pq.write_table(pa.table({"text": pa.array(["", None, " "], type=pa.string())}), path)
    with PretrainLoader([path], ByteTokenizer(), 1, 8) as loader, pytest.raises(UserError, match="no usable"):
        next(loader)
    small = tmp_path / "small.parquet"
    pq.write_table(pa.table({"text": ["tiny"]}), small)
    with pytest.raises(UserError, match="fewer than one batch"):
        next(PretrainLoader([small], ByteTokenizer(), 4, 64, loop=False))


def test_a_shard_corrupt_inside_a_row_group_is_named_when_read(tmp_path):
    path = tmp_path / "shard_00003.parquet"
    pq.write_table(pa.table({"text": make_docs(200, max_len=200)}), path, row_group_size=50)
    data = bytearray(path.read_bytes())
    data[100:2000] = b"\xff" * 1900  # inside the first row group's pages; the footer stays readable
    path.write_bytes(data)
    loader = PretrainLoader([path], ByteTokenizer(), 2, 16, loop=False)
    with pytest.raises(UserError, match="shard_00003.parquet: cannot read row group"):
        list(loader)
