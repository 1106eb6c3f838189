"""The base of every SFT task, and the phrasings the generated tasks draw from (tasks/data/*.json)."""

from __future__ import annotations

import json
from importlib.resources import files


class Task:
    """A named, deterministic source of conversations: `conversation(i)` is the same every time."""

    name = "task"
    size: int | None = None  # None: procedural, every index is a new conversation

    def conversation(self, index: int) -> list[dict]:
        raise NotImplementedError


def phrasings(name: str) -> dict:
    """The questions, answers and templates of tasks/data/`name`.json: data, so the code stays short."""
    return json.loads(files(__package__).joinpath("data", f"{name}.json").read_text(encoding="utf-8"))
