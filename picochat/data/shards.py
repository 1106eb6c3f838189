"""Parquet shards, the one on-disk format of every corpus: `<corpus>/{train,val}/shard_00000.parquet ...`,
each with a string `text` column (one document per row) and, for corpora picochat builds, `source`.
Hugging Face shard sets (FineWeb-Edu, ClimbMix) use the same layout without `source`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from picochat.atomic import atomic_write_bytes
from picochat.errors import UserError

SPLITS = ("train", "val")
ROW_GROUP_SIZE = 128  # documents per row group (~1M chars): the unit loaders shuffle and deal to ranks


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.parquet"


def write_shard(path: Path, texts: Sequence[str], sources: Sequence[str] | None = None) -> Path:
    """Write one shard atomically (no half-written file under its name), with `sources` if given."""
    path = Path(path)
    columns = {"text": pa.array(texts, type=pa.string())}
    if sources is not None:
        if len(sources) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(sources)} source labels for {path}")
        columns["source"] = pa.array(sources, type=pa.string())
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), buffer, row_group_size=ROW_GROUP_SIZE, compression="zstd")
    atomic_write_bytes(path, buffer.getvalue().to_pybytes())
    return path


def validate_shard(path: Path) -> int:
    """The row count of `path`, or a UserError saying what to do when it is missing, unreadable or has no
    string `text` column."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"shard {path} does not exist; run 'picochat data fetch' or 'picochat data build'")
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except PermissionError:
        raise UserError(
            f"cannot read shard {path}: permission denied; its owner can share it (chmod a+r)"
        ) from None
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise UserError(
            f"shard {path} is not a readable parquet file ({exc}); delete it and fetch or build it again"
        ) from exc
    if "text" not in schema.names:
        raise UserError(
            f"shard {path} has no `text` column (columns: {schema.names}); it is not a corpus shard"
        )
    text_type = schema.field("text").type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise UserError(f"shard {path}: column `text` is {text_type}, expected strings")
    return parquet.metadata.num_rows


def list_shards(corpus_dir: Path, split: str) -> list[Path]:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    split_dir = Path(corpus_dir) / split
    if not (paths := sorted(split_dir.glob("*.parquet"))):
        raise UserError(
            f"no parquet shards in {split_dir}; build a corpus with 'picochat data build' "
            "(or 'picochat data fetch fineweb-edu' on a machine with internet)"
        )
    return paths


def iter_rows(paths: Iterable[Path], with_source: bool = True) -> Iterator[tuple[str | None, str]]:
    """(text, source) for every row of the shards in order, streamed by row group; shards without a
    `source` column report their corpus folder's name."""
    for path in paths:
        validate_shard(path)
        parquet = pq.ParquetFile(path)
        has_source = with_source and "source" in parquet.schema_arrow.names
        columns = ["text", "source"] if has_source else ["text"]
        for batch in parquet.iter_batches(ROW_GROUP_SIZE, columns=columns):
            texts = batch.column(0).to_pylist()
            sources = batch.column(1).to_pylist() if has_source else [path.parent.parent.name] * len(texts)
            yield from zip(texts, sources)


def iter_documents(paths: Iterable[Path]) -> Iterator[str]:
    """Every document (the `text` column) of the shards in order, a null as "": exactly what they hold."""
    return (text or "" for text, _ in iter_rows(paths, with_source=False))
