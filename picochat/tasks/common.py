"""The base of every SFT task: a named, deterministic source of conversations (see tasks/__init__.py)."""

from __future__ import annotations


class Task:
    """Base class: a named, deterministic source of conversations."""

    name = "task"
    size: int | None = None  # None: procedural, every index is a new conversation

    def conversation(self, index: int) -> list[dict]:
        raise NotImplementedError
