"""Atomic writes: a reader sees the old content or the new, never a mix; failures leave nothing behind."""

import json
from pathlib import Path

import pytest

from picochat.atomic import TEMP_PREFIX, atomic_directory, atomic_write_json, atomic_write_text


def stale_temporaries(directory: Path) -> list[Path]:
    """Temporary siblings left in `directory` by writers that died before renaming them into place."""
    return sorted(p for p in directory.iterdir() if p.name.startswith((TEMP_PREFIX, ".old-")))


def test_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "f.json"
    atomic_write_json(path, {"x": 1})
    atomic_write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert stale_temporaries(path.parent) == []


def test_directory_kept_intact_when_writer_fails(tmp_path):
    final = tmp_path / "corpus"
    with atomic_directory(final) as tmp:
        atomic_write_text(tmp / "shard.txt", "old")
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "shard.txt").write_text("half")
        raise RuntimeError("crash while writing")
    assert (final / "shard.txt").read_text() == "old"
    assert stale_temporaries(tmp_path) == []
    with atomic_directory(final) as tmp:
        (tmp / "other.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["other.txt"]
    assert stale_temporaries(tmp_path) == []
