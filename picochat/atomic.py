"""Writing files so that a crash never leaves half of one: a file or directory is built as a temporary
sibling, flushed, and renamed into place once complete. The one way picochat writes what it keeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from safetensors.torch import save_file

TEMP_PREFIX = ".tmp-"  # temporary siblings start with this, replaced directories with .old-


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def current_umask() -> int:
    """The process's umask, read without changing it where the kernel shows it (changing it, even for an
    instant, would give files that other threads create meanwhile the wrong mode)."""
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())  # mkstemp's 0600 would hide it from the group
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def save_tensors(tensors: dict, path: Path, metadata: dict[str, str]) -> None:
    """safetensors' save_file, with the mode the umask gives (it writes its files 0600)."""
    save_file(tensors, path, metadata)
    os.chmod(path, 0o666 & ~current_umask())


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


@contextlib.contextmanager
def atomic_directory(final: Path | str) -> Iterator[Path]:
    """An empty temporary directory that replaces `final` on success and is removed on an exception."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # named for the writer's pid, so a later writer can tell a dead writer's leftovers from a live one's;
    # made with mkdir (not mkdtemp) so the directory gets the user's umask, not mode 0700
    tmp = final.parent / f"{TEMP_PREFIX}{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        fsync_dir(tmp)
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
