"""The base of every SFT task: a named, deterministic source of conversations (see tasks/__init__.py),
and the reader of weighted task lists ('identity:2,arithmetic:3') that SFT mixtures and RL task mixes share."""

from __future__ import annotations

import math

from picochat.errors import UserError


def parse_weighted(text: str) -> list[tuple[str, float]]:
    """'a:2,b,c:x:0.5' -> [('a', 2.0), ('b', 1.0), ('c:x', 0.5)]: a trailing number is a weight (else 1).
    A weight must be a finite number above 0."""
    items = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        spec, _, weight = item.rpartition(":")
        if not spec or not _is_number(weight):
            spec, weight = item, "1"
        if not (math.isfinite(float(weight)) and float(weight) > 0):
            raise UserError(f"task weight must be a finite number above 0 in {item!r}")
        items.append((spec, float(weight)))
    return items


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Task:
    """Base class: a named, deterministic source of conversations."""

    name = "task"
    size: int | None = None  # None: procedural, every index is a new conversation

    def conversation(self, index: int) -> list[dict]:
        raise NotImplementedError
