"""The pretraining data loader: parquet shards -> tokens -> packed (B, T) batches, resumable exactly.

    row groups of the shards --(dealt to ranks)--> this rank's parts
    --(worker thread: read `text`, tokenize with <|bos|> first)--> queue of tokenized chunks
    --(main thread: best-fit packing, packing.py)--> rows (B, T+1) --> inputs, targets (B, T)

Every epoch the row groups are shuffled by `seed` and dealt round-robin to the ranks, so each document is
read by one rank (with fewer row groups than ranks, each rank keeps every world_size-th document).
Resume: the state holds the position (epoch, part, doc) of the next document and the position and offset of
every buffered piece in arrival order; packing is deterministic, so re-adding them gives the same batches.
"""

from __future__ import annotations

import hashlib
import itertools
import queue
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow.parquet as pq
import torch

from picochat.data.packing import BestFitPacker
from picochat.data.shards import validate_shard
from picochat.errors import UserError

DOCS_PER_CHUNK = 256  # documents per tokenizer call and per queue item
STATE_VERSION = 1
COUNTERS = (
    "batches rows docs_read docs_skipped crops tokens_read tokens_packed tokens_headless tokens_left_at_end"
).split()

# (epoch, index of the part in this rank's list for that epoch, index of the document in that part)
Position = tuple[int, int, int]


class Part(NamedTuple):
    """One unit of reading: row group `row_group` of shard `shard`, documents start, start+step, ..."""

    shard: int
    row_group: int
    start: int = 0
    step: int = 1


def list_row_groups(shard_paths: list[Path]) -> list[tuple[int, int, int]]:
    """(shard index, row group index, rows) for every row group; a clear error for a missing or bad shard."""
    if not shard_paths:
        raise UserError("no shards given to the data loader; build a corpus first with `picochat data`")
    row_groups = []
    for shard, path in enumerate(shard_paths):
        validate_shard(path)
        metadata = pq.ParquetFile(path).metadata
        row_groups += [(shard, g, metadata.row_group(g).num_rows) for g in range(metadata.num_row_groups)]
    if not any(rows for _, _, rows in row_groups):
        raise UserError(f"the {len(shard_paths)} shards given to the data loader hold no rows")
    return row_groups


def rank_parts(row_groups: list[tuple[int, int, int]], rank: int, world_size: int, epoch: int, seed: int):
    """This rank's parts for `epoch`, in reading order. Across ranks, each document is in exactly one part."""
    order = [(shard, row_group) for shard, row_group, rows in row_groups if rows > 0]
    random.Random(f"picochat-loader:{seed}:{epoch}").shuffle(order)
    if len(order) >= world_size:
        return [Part(shard, row_group) for shard, row_group in order[rank::world_size]]
    return [Part(shard, row_group, rank, world_size) for shard, row_group in order]


def read_part(shard_paths: list[Path], part: Part) -> list:
    """The `text` values of one part, as Python objects (not necessarily strings: bad values are kept)."""
    path = shard_paths[part.shard]
    try:
        table = pq.ParquetFile(path).read_row_group(part.row_group, columns=["text"])
    except Exception as error:
        raise UserError(
            f"shard {path}: cannot read row group {part.row_group} ({error}); "
            "delete the shard and rebuild the corpus"
        ) from error
    return table.column("text").to_pylist()[part.start :: part.step]


def is_usable(text: object) -> bool:
    return isinstance(text, str) and text != "" and not text.isspace()


class PretrainLoader:
    """Infinite (or one-epoch) iterator of (inputs, targets) int64 batches of shape (B, T) for one rank."""

    def __init__(
        self,
        shard_paths: list[Path],
        tokenizer,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        device="cpu",
        seed: int = 0,
        buffer_docs: int = 1000,
        tokenizer_threads: int = 1,
        loop: bool = True,
    ):
        if batch_size < 1 or seq_len < 1:
            raise UserError(f"batch_size and seq_len must be positive, got {batch_size} and {seq_len}")
        if not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is outside 0..{world_size - 1} (world_size {world_size})")
        if buffer_docs < 1:
            raise UserError(f"buffer_docs must be at least 1, got {buffer_docs}")
        self.shard_paths = sorted(Path(p) for p in shard_paths)  # every rank must see one order
        self.tokenizer, self.batch_size, self.seq_len = tokenizer, batch_size, seq_len
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.device = torch.device(device)
        self.buffer_docs, self.tokenizer_threads, self.loop = buffer_docs, tokenizer_threads, loop
        self.row_groups = list_row_groups(self.shard_paths)
        names = ",".join(f"{self.shard_paths[s].name}:{g}:{rows}" for s, g, rows in self.row_groups)
        self.corpus_id = hashlib.sha1(names.encode()).hexdigest()[:16]
        self._reset(next_position=(0, 0, 0))
        self._counts = dict.fromkeys(COUNTERS, 0)

    def _reset(self, next_position: Position) -> None:
        self._worker = None
        self._packer = BestFitPacker(self.seq_len + 1)
        self._next: Position = next_position  # the next document packing will take from the stream
        self._chunk: list = []  # the tokenized chunk being consumed, starting at self._chunk_start
        self._chunk_start: Position = next_position
        self._exhausted = False

    # --- the document stream (worker thread) -------------------------------------------------------------

    def _tokenize(self, texts: list) -> list[list[int] | None]:
        usable = [text for text in texts if is_usable(text)]
        if not usable:
            return [None] * len(texts)
        bos, threads = self.tokenizer.bos_id, self.tokenizer_threads
        encoded = iter(self.tokenizer.encode_batch(usable, prepend=bos, num_threads=threads))
        return [next(encoded) if is_usable(text) else None for text in texts]

    def _produce(self, start: Position, stop: threading.Event, out: queue.Queue) -> None:
        """Worker thread: tokenized chunks ("docs", position of the first, token lists) from `start` on."""

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        try:
            epoch, first_part, first_doc = start
            while True:
                parts = rank_parts(self.row_groups, self.rank, self.world_size, epoch, self.seed)
                whole_epoch, usable_docs = (first_part, first_doc) == (0, 0), 0
                for k in range(first_part, len(parts)):
                    texts = read_part(self.shard_paths, parts[k])
                    for i in range(first_doc if k == first_part else 0, len(texts), DOCS_PER_CHUNK):
                        tokens = self._tokenize(texts[i : i + DOCS_PER_CHUNK])
                        usable_docs += sum(t is not None for t in tokens)
                        if not put(("docs", (epoch, k, i), tokens)):
                            return
                if whole_epoch and usable_docs == 0:
                    raise UserError(
                        f"rank {self.rank}'s share of the {len(self.shard_paths)} shards (first: "
                        f"{self.shard_paths[0]}) holds no usable documents: every `text` is empty or "
                        "not a string"
                    )
                if not self.loop:
                    put(("end",))
                    return
                epoch, first_part, first_doc = epoch + 1, 0, 0
        except BaseException as error:  # handed to the main thread, which re-raises it
            put(("error", error))

    def _start_worker(self) -> None:
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=max(4, 2 * self.buffer_docs // DOCS_PER_CHUNK + 1))
        args = (self._next, self._stop, self._queue)
        self._worker = threading.Thread(target=self._produce, args=args, daemon=True, name="picochat-loader")
        self._worker.start()

    def close(self) -> None:
        """Stop the tokenizer thread (a daemon: forgetting this only wastes a little CPU)."""
        if self._worker is not None:
            self._stop.set()
            self._worker.join()
            self._worker = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- packing (main thread) ---------------------------------------------------------------------------

    def _next_document(self) -> tuple[Position, list[int]] | None:
        while True:
            offset = self._next[2] - self._chunk_start[2]
            if self._next[:2] != self._chunk_start[:2] or not 0 <= offset < len(self._chunk):
                if self._worker is None:
                    self._start_worker()
                item = self._queue.get()
                if item[0] == "error":
                    self.close()
                    raise item[1]
                if item[0] == "end":
                    return None
                _, self._chunk_start, self._chunk = item
                self._next = self._chunk_start
                continue
            position, tokens = self._next, self._chunk[offset]
            self._next = (position[0], position[1], position[2] + 1)
            if tokens is None:
                self._counts["docs_skipped"] += 1
                continue
            self._counts["docs_read"] += 1
            self._counts["tokens_read"] += len(tokens)
            return position, tokens

    def _top_up(self) -> None:
        """Keep at least `buffer_docs` documents and a row's worth of tokens (enough to fill a row, see
        BestFitPacker.pack_row) buffered while the stream lasts."""
        packer = self._packer
        while not self._exhausted and (
            len(packer) < self.buffer_docs or packer.tokens_buffered <= self.seq_len
        ):
            if (document := self._next_document()) is None:
                self._exhausted = True
            else:
                packer.add(*document)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = self.batch_size, self.seq_len
        rows = np.empty((B, T + 1), dtype=np.int64)  # (B, T+1)
        for b in range(B):
            self._top_up()
            if self._packer.tokens_buffered < T + 1:  # only at the end of a one-epoch stream
                self._finish(rows_packed=b)
            packing = self._packer.pack_row(rows[b], self._top_up)
            self._counts["crops"] += packing.crops
            self._counts["tokens_headless"] += packing.tokens_headless
        self._counts["rows"] += B
        self._counts["batches"] += 1
        self._counts["tokens_packed"] += rows.size
        # inputs and targets in one (2, B, T) tensor: one pinned buffer, one copy to the device
        pinned = self.device.type == "cuda"
        pair = torch.empty((2, B, T), dtype=torch.int64, pin_memory=pinned)
        pair[0] = torch.from_numpy(rows[:, :-1])  # inputs (B, T)
        pair[1] = torch.from_numpy(rows[:, 1:])  # targets (B, T): each input's next token
        if self.device.type != "cpu":
            pair = pair.to(self.device, non_blocking=pinned)
        return pair[0], pair[1]

    def _finish(self, rows_packed: int) -> None:
        """End of a one-epoch stream: drop the partial batch and what is left in the buffer."""
        self._counts["tokens_left_at_end"] += self._packer.tokens_buffered + rows_packed * (self.seq_len + 1)
        self._packer = BestFitPacker(self.seq_len + 1)
        self.close()
        if self._counts["batches"] == 0:
            raise UserError(
                f"rank {self.rank}'s share of the {len(self.shard_paths)} shards "
                f"(first: {self.shard_paths[0]}) holds {self._counts['tokens_read']} tokens, fewer than "
                f"one batch of {self.batch_size} x {self.seq_len + 1}; use a smaller batch or more data"
            )
        raise StopIteration

    @property
    def stats(self) -> dict:
        """Counters since the start of training (saved in the state). tokens_read = tokens_packed +
        tokens_buffered + tokens_left_at_end; tokens_headless: packed tokens whose document start is not in
        their row."""
        return {"epoch": self._next[0], **self._counts, "tokens_buffered": self._packer.tokens_buffered}

    # --- exact resume ------------------------------------------------------------------------------------

    def _config(self) -> dict:
        names = ("seq_len", "buffer_docs", "rank", "world_size", "seed", "corpus_id")
        return {name: getattr(self, name) for name in names}

    def state_dict(self) -> dict:
        """Where this rank is in its stream: small and JSON-serialisable; each rank saves its own."""
        return {
            "version": STATE_VERSION,
            **self._config(),
            "next": list(self._next),
            # [epoch, part, doc, offset] of each buffered piece, in the order the packer received them
            "buffer": [[*key, offset] for key, offset in self._packer.buffered()],
            "stats": dict(self._counts),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state`: the next batch equals the one the run that saved it would have produced."""
        if state.get("version") != STATE_VERSION:
            raise UserError(f"loader state version {state.get('version')!r} is not {STATE_VERSION}")
        config = self._config()
        mismatched = [f"{k} {state.get(k)!r} (now {v!r})" for k, v in config.items() if state.get(k) != v]
        if mismatched:
            raise UserError(
                f"the loader state was saved with different settings: {', '.join(mismatched)}; resume with "
                "the same shards, seq_len, buffer_docs, seed and number of ranks, or start the data afresh"
            )
        self.close()
        self._reset(next_position=tuple(state["next"]))
        documents = {}  # (epoch, part, doc) -> tokens, reading each row group once
        for epoch, part in sorted({(epoch, part) for epoch, part, _, _ in state["buffer"]}):
            wanted = sorted({doc for e, p, doc, _ in state["buffer"] if (e, p) == (epoch, part)})
            parts = rank_parts(self.row_groups, self.rank, self.world_size, epoch, self.seed)
            texts = read_part(self.shard_paths, parts[part])
            for doc, tokens in zip(wanted, self._tokenize([texts[d] for d in wanted])):
                documents[epoch, part, doc] = tokens
        for epoch, part, doc, offset in state["buffer"]:
            self._packer.add((epoch, part, doc), documents[epoch, part, doc], offset)
        self._counts = {name: int(state["stats"][name]) for name in self._counts}


def validation_batches(
    shard_paths: list[Path],
    tokenizer,
    batch_size: int,
    seq_len: int,
    rank: int = 0,
    world_size: int = 1,
    max_batches: int | None = None,
    device="cpu",
) -> Iterator:
    """The validation split as (inputs, targets) batches, the same every call: one pass over this rank's
    share, or exactly `max_batches` (wrapping round, so every rank yields the same count for DDP)."""
    loop = max_batches is not None
    loader = PretrainLoader(shard_paths, tokenizer, batch_size, seq_len, rank, world_size, device, loop=loop)

    try:
        yield from itertools.islice(loader, max_batches)
    finally:
        loader.close()
