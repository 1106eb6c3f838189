"""Where picochat keeps its artifacts: everything lives under $PICOCHAT_HOME (default ~/.cache/picochat)."""

from __future__ import annotations

import os
from pathlib import Path


def picochat_home() -> Path:
    home = os.environ.get("PICOCHAT_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "picochat"


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
