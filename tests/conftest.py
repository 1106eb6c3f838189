"""Shared pytest setup: every test runs with its own PICOCHAT_HOME, and no test can write under the real home.

The real home is replaced for the whole session (HOME points into a temporary folder, so `~` and every
library's `~/.cache` land there), and an audit hook turns any write under the real home into an error in
the test that made it, even one that dropped PICOCHAT_HOME or restored the environment.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

REAL_HOME = Path.home().resolve()
REPOSITORY = Path(__file__).resolve().parent.parent
# where a test run writes by design (caches, compiled bytecode, the venv), even when inside the real home
ALLOWED = [REPOSITORY, Path(sys.prefix).resolve(), Path(tempfile.gettempdir()).resolve()]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
WRITING_EVENTS = {
    "os.mkdir",
    "os.rename",
    "os.remove",
    "os.rmdir",
    "os.symlink",
    "os.truncate",
    "shutil.rmtree",
}


def under_real_home(path) -> bool:
    if not isinstance(path, str | bytes | os.PathLike):
        return False  # a file descriptor
    try:
        resolved = Path(os.fsdecode(path)).expanduser().resolve()
    except (OSError, ValueError):
        return False
    inside = resolved == REAL_HOME or REAL_HOME in resolved.parents
    return inside and not any(resolved == a or a in resolved.parents for a in ALLOWED)


def refuse_writes_under_the_real_home(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS)
        targets = [path] if writes else []
    elif event in WRITING_EVENTS:
        targets = list(args[:2]) if event == "os.rename" else [args[0]]
    else:
        return
    for target in targets:
        if under_real_home(target):
            raise PermissionError(f"a test tried to write under the real home: {os.fsdecode(target)}")


def pytest_configure(config):
    fake_home = Path(tempfile.mkdtemp(prefix="picochat-test-home-"))
    os.environ["HOME"] = str(fake_home)
    os.environ["PICOCHAT_HOME"] = str(fake_home / ".cache" / "picochat")
    sys.addaudithook(refuse_writes_under_the_real_home)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Each test gets its own $PICOCHAT_HOME."""
    monkeypatch.setenv("PICOCHAT_HOME", str(tmp_path / "picochat_home"))
    return tmp_path / "picochat_home"
