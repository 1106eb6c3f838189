"""Where picochat keeps its artifacts: everything lives under $PICOCHAT_HOME (default ~/.cache/picochat)."""

from __future__ import annotations

import os
from pathlib import Path

from picochat.errors import UserError


def picochat_home() -> Path:
    home = os.environ.get("PICOCHAT_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "picochat"


def check_writable(path: Path, label: str) -> None:
    """Refuse, before any work, a folder to write that a file is in the way of, or that this user may not
    create or write into."""
    path = Path(path)
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir():
        raise UserError(f"{label} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{label} {path}: permission denied: this user may not write into {existing}")


def tokenizer_dir() -> Path:
    return picochat_home() / "tokenizer"


def data_dir() -> Path:
    return picochat_home() / "data"


def chitchat_dir() -> Path:  # where `data.fetch.fetch_task_data` fetches the chitchat conversations
    return data_dir() / "sources" / "chitchat"


def checkpoints_dir() -> Path:
    return picochat_home() / "checkpoints"


def reports_dir() -> Path:
    return picochat_home() / "reports"
