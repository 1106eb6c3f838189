"""Conversation tasks for supervised fine-tuning: each turns an index into one conversation.

    identity     who the model is, who trained it and how (templates)
    arithmetic   arithmetic that calls the calculator tool
    spelling     spelling words and counting letters
    chitchat     human small talk (PyPI chitchat-dataset, MIT; fetched as a file, never installed)
    gym          procedural problems from reasoning-gym (Apache-2.0), when it is installed
    jsonl:PATH   any local JSONL file of OpenAI-style {"messages": [...]}

A task is deterministic: `task.conversation(i)` is the same conversation every time, so the SFT loader can
resume exactly from an index. A mixture (`parse_mixture("identity:2,arithmetic:3,...")`) interleaves
tasks by weight. None of these is benchmark data: the evaluations never see a task's conversations.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from picochat.errors import UserError
from picochat.tasks.arithmetic import ArithmeticTask
from picochat.tasks.chitchat import ChitchatTask
from picochat.tasks.common import Task, parse_weighted
from picochat.tasks.gym import GymTask
from picochat.tasks.identity import IdentityTask
from picochat.tasks.jsonl import JsonlTask
from picochat.tasks.spelling import SpellingTask

__all__ = ["Mixture", "Task", "make_task", "parse_mixture"]


def make_task(spec: str, owner: str = "its user") -> Task:
    """A task from its name (or `jsonl:PATH`)."""
    if spec.startswith("jsonl:"):
        return JsonlTask(spec.removeprefix("jsonl:"))
    makers = {
        "identity": lambda: IdentityTask(owner),
        "arithmetic": ArithmeticTask,
        "spelling": SpellingTask,
        "chitchat": ChitchatTask,
        "gym": GymTask,
    }
    if spec not in makers:
        raise UserError(f"unknown task {spec!r}; choose from {', '.join(makers)} or jsonl:PATH")
    return makers[spec]()


@dataclass
class Mixture:
    """Tasks with weights: conversation n comes from a task drawn by weight with a generator seeded by n."""

    tasks: Sequence[Task]
    weights: Sequence[float]
    seed: int = 0

    def conversation(self, n: int) -> tuple[str, list[dict]]:
        rng = random.Random(f"{self.seed}-{n}")
        task = rng.choices(self.tasks, weights=self.weights)[0]
        index = rng.randrange(1 << 62 if task.size is None else task.size)
        return task.name, task.conversation(index)


def parse_mixture(text: str, owner: str = "its user", seed: int = 0) -> Mixture:
    """'identity:2,arithmetic:3,jsonl:/data/my.jsonl:1' -> Mixture. A missing weight means 1."""
    items = parse_weighted(text)
    tasks, weights = [make_task(name, owner) for name, _ in items], [weight for _, weight in items]
    if not tasks:
        raise UserError(f"the task mixture {text!r} names no task; e.g. identity:2,arithmetic:3,spelling:2")
    return Mixture(tasks, weights, seed)
