"""`picochat data`: list, fetch and build corpora; show their statistics.

picochat data build                            # the default corpus -> $PICOCHAT_HOME/data/default
picochat data build --input notes/ --name mine # your own .txt/.md/.jsonl/.parquet files
picochat data fetch fineweb-edu --shards 4     # Hugging Face shards, with internet
"""

from dataclasses import dataclass
from pathlib import Path

from picochat import paths
from picochat.errors import UserError
from picochat.settings import add_command, comma_list, setting

HELP = "List, fetch and build corpora; show their statistics."


@dataclass
class FetchOptions:
    """Download sources (default: the offline default mix)."""

    shards: int = setting(1, "Hugging Face sets: training shards to fetch", min=1, max=100_000)
    name: str | None = setting(None, "Hugging Face sets: corpus name (default: the source's name)")
    workers: int = setting(4, "parallel downloads", min=1, max=64)
    revision: str | None = setting(None, "Hugging Face sets: a commit, tag or branch (default: the source's)")


@dataclass
class BuildOptions:
    """Build a corpus of train/val parquet shards."""

    name: str = setting("default", "corpus name")
    sources: tuple[str, ...] = setting(
        (), "source names (default: the offline English mix)", parse=comma_list
    )
    input: tuple[Path, ...] = setting((), "your own files or folders")
    seed: int = setting(1337, "seed of the train/val split and shuffle", min=0)
    val_fraction: float = setting(0.02, "share of each source held out", above=0, max=1)
    fetch: bool = setting(True, "fetch missing sources (--no-fetch: fail instead)")
    force: bool = setting(False, "replace an existing corpus of that name")


@dataclass
class StatsOptions:
    """Documents, characters and tokens per source and split."""

    name: str = setting("default", "corpus name")
    tokens: bool = setting(True, "count tokens with the trained tokenizer")


@dataclass
class SyntheticOptions:
    """Write a small generated corpus (no network)."""

    name: str = setting("synthetic", "corpus name")
    docs: int = setting(2000, "number of documents", min=2, max=10_000_000)
    seed: int = setting(0, "random seed", min=0)
    force: bool = setting(False, "replace an existing corpus of that name")


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, "data", lambda args: parser.print_help() or 2, help=HELP)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    add_command(actions, "list", run_list, help="The registered sources and the corpora built so far.")
    fetch = add_command(actions, "fetch", run_fetch, FetchOptions)
    fetch.add_argument("sources", nargs="*", help="source names from 'picochat data list'")
    add_command(actions, "build", run_build, BuildOptions)
    add_command(actions, "stats", run_stats, StatsOptions)
    add_command(actions, "synthetic", run_synthetic, SyntheticOptions)


def run_list(args) -> None:
    from picochat.data.corpus import MANIFEST, source_dir
    from picochat.data.sources import SOURCES, Package

    built_in = paths.data_dir()
    print(f"{'source':20} {'default':7} {'fetched':7} {'size':15} origin")
    for s in SOURCES.values():
        o = s.origin
        where = f"{o.registry} {o.spec}" if isinstance(o, Package) else f"huggingface {o.repo}"
        fetched = (source_dir(s.name) / "fetched.json").exists() or (built_in / s.name / MANIFEST).exists()
        print(f"{s.name:20} {'yes' * s.default:7} {'yes' * fetched:7} {s.size:15} {where}")
        print(f"{'':20} {s.title}\n{'':20} licence: {s.licence}")
    built = sorted(p.parent.name for p in built_in.glob(f"*/{MANIFEST}") if not p.parent.name.startswith("."))
    print(f"\ncorpora built in {built_in}: {', '.join(built) or 'none yet'}")


def refuse_to_replace(name: str, force: bool, inputs=()) -> None:
    """A corpus is replaced only with --force, and only a corpus: never downloaded sources or the inputs."""
    from picochat.data.corpus import MANIFEST, corpus_dir

    directory = corpus_dir(name)
    inside = [p for p in inputs if Path(p).resolve().is_relative_to(directory.resolve())]
    is_corpus = (directory / MANIFEST).is_file() or (directory.is_dir() and not any(directory.iterdir()))
    sources = directory == paths.data_dir() / "sources"
    if sources or inside or (force and directory.exists() and not is_corpus):
        what = (
            f"holds your --input {inside[0]}" if inside else f"is not a corpus picochat built (no {MANIFEST})"
        )
        what = "holds the downloaded sources" if sources else what
        raise UserError(f"{directory} {what}; --force replaces only a built corpus: choose another --name")
    if directory.exists() and not force:
        state = "a built corpus" if (directory / MANIFEST).exists() else "a folder"
        raise UserError(
            f"{directory} is already {state}; pass --force to replace it (it stays intact until the new one "
            "is complete), or choose another --name"
        )


def run_fetch(options: FetchOptions, args) -> None:
    from picochat.data.corpus import fetch_shard_set, fetch_source
    from picochat.data.sources import DEFAULT_SOURCES, ShardSet, get_source

    for source in map(get_source, args.sources or DEFAULT_SOURCES):
        print(f"{source.name}: licence {source.licence}")
        if isinstance(source.origin, ShardSet):
            hub = dict(name=options.name, workers=options.workers, revision=options.revision)
            directory = fetch_shard_set(source, options.shards, **hub)
        else:
            directory = fetch_source(source)
        print(f"{source.name}: ready in {directory}")


def run_build(options: BuildOptions, args) -> None:
    from picochat.data.corpus import build_corpus

    refuse_to_replace(options.name, options.force, options.input)
    o = options
    build_corpus(o.name, list(o.sources) or None, list(o.input), o.seed, o.val_fraction, fetch=o.fetch)


def run_stats(options: StatsOptions, args) -> None:
    from picochat.data.corpus import corpus_dir, corpus_stats, load_manifest

    manifest = load_manifest(directory := corpus_dir(options.name))
    tokenizer = trained_tokenizer() if options.tokens else None
    print(f"corpus {directory} (built {manifest.get('created', '?')}, seed {manifest.get('seed', '-')})")
    rows = corpus_stats(directory, tokenizer)
    for split in dict.fromkeys(row["split"] for row in rows):  # a total row after the rows of each split
        of_split = [row for row in rows if row["split"] == split]
        sums = {key: sum(row[key] or 0 for row in of_split) for key in ("documents", "characters", "tokens")}
        rows.append(
            {"source": "total", "split": split, **sums, "tokens": sums["tokens"] if tokenizer else None}
        )
    print(f"{'source':20} {'split':5} {'documents':>10} {'characters':>14} {'tokens':>12}")
    for r in rows:
        tokens = "-" if r["tokens"] is None else f"{r['tokens']:,}"
        print(f"{r['source']:20} {r['split']:5} {r['documents']:>10,} {r['characters']:>14,} {tokens:>12}")
    for name, source in manifest.get("sources", {}).items():
        if source.get("skipped"):
            print(f"{name}: skipped while building: {source['skipped']}")


def trained_tokenizer():
    from picochat.tokenizer import Tokenizer

    try:
        return Tokenizer.load(paths.tokenizer_dir())
    except (UserError, OSError, ValueError) as exc:
        print(f"note: no tokens column: no trained tokenizer in {paths.tokenizer_dir()} ({exc})")


def run_synthetic(options: SyntheticOptions, args) -> None:
    from picochat.data.corpus import corpus_dir, write_synthetic_corpus

    refuse_to_replace(options.name, options.force)
    directory = write_synthetic_corpus(corpus_dir(options.name), n_docs=options.docs, seed=options.seed)
    print(f"wrote a synthetic corpus of {options.docs} documents to {directory}")
