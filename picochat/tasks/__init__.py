"""The tasks by name: conversations for supervised fine-tuning, checkable problems for reinforcement learning.

    identity           SFT: who the model is, who trained it and how (identity:varied: more ways to ask,
                       and questions about others answered without the introduction)
    arithmetic         SFT: arithmetic that calls the calculator tool (arithmetic:stories: word problems
                       too); RL: word problems that need it, or (arithmetic:plain, arithmetic:worded) the
                       operations asked as SFT asks them
    spelling           SFT and RL: spelling words and counting letters (spelling:walk: counting replies
                       that keep a running count)
    smalltalk          SFT: greetings, how-are-you, thanks and goodbyes answered in kind
    multiturn          SFT: an exchange of one skill, then a question of another
    chitchat           SFT: human small talk (PyPI chitchat-dataset, MIT; fetched as a file, never installed)
    gym[:GENERATOR]    SFT and RL: reasoning-gym's procedural problems (Apache-2.0), with verified answers
    jsonl:PATH         SFT: any local JSONL file of OpenAI-style {"messages": [...]}
    contains:TEXT      RL: a toy, the reply must contain TEXT

An SFT `Task` gives `conversation(i)`, the same every time; an RL `CheckableTask` gives `problem(i)` and
scores replies; a mixture draws tasks by weight. A new task is a subclass named in SFT_TASKS or RL_TASKS.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from picochat.errors import UserError
from picochat.tasks.arithmetic import ArithmeticTask, WordProblemTask
from picochat.tasks.checkable import HELD_OUT_START, CheckableTask, ContainsTask, Problem
from picochat.tasks.chitchat import ChitchatTask
from picochat.tasks.common import JsonlTask, Task
from picochat.tasks.gym import GymCheckableTask, GymTask
from picochat.tasks.identity import IdentityTask
from picochat.tasks.multiturn import MultiTurnTask
from picochat.tasks.smalltalk import SmallTalkTask
from picochat.tasks.spelling import LetterTask, SpellingTask

SFT_TASKS = dict(
    identity=IdentityTask,
    arithmetic=ArithmeticTask,
    spelling=SpellingTask,
    chitchat=ChitchatTask,
    gym=GymTask,
    smalltalk=SmallTalkTask,
    multiturn=MultiTurnTask,
)
RL_TASKS = dict(arithmetic=WordProblemTask, spelling=LetterTask, gym=GymCheckableTask, contains=ContainsTask)


def make_task(spec: str, owner: str = "its user") -> Task:
    """An SFT task from its name, `name:variant` (a class's `variants`) or `jsonl:PATH`."""
    if spec.startswith("jsonl:"):
        return JsonlTask(spec.removeprefix("jsonl:"))
    name, _, variant = spec.partition(":")
    if name not in SFT_TASKS:
        raise UserError(f"unknown task {spec!r}; choose from {', '.join(SFT_TASKS)} or jsonl:PATH")
    known = getattr(SFT_TASKS[name], "variants", ())
    if variant and variant not in known:
        raise UserError(f"{spec!r}: {name} has {'variants ' + ', '.join(known) if known else 'no variants'}")
    owned = (owner,) if name in ("identity", "multiturn") else ()
    return SFT_TASKS[name](*owned, *([variant] if variant else []))


def make_checkable_task(spec: str) -> CheckableTask:
    """An RL task from its spec: a name, optionally followed by ':ARG' for the task's class."""
    name, _, arg = spec.partition(":")
    if name not in RL_TASKS:
        raise UserError(f"unknown RL task {name!r}; choose from {', '.join(RL_TASKS)}")
    return RL_TASKS[name](arg) if arg else RL_TASKS[name]()


@dataclass
class Mixture:
    """Tasks with weights: item n comes from a task drawn by weight with a generator seeded by (seed, n). For
    SFT that is a conversation at a drawn index; for RL the task's problem n, while its held-out problem i
    is its problem HELD_OUT_START + i."""

    tasks: Sequence[Task] | Sequence[CheckableTask]
    weights: Sequence[float]
    seed: int = 0

    def draw(self, n: int) -> tuple[random.Random, Task | CheckableTask]:
        rng = random.Random(f"{self.seed}-{n}")
        return rng, rng.choices(self.tasks, weights=self.weights)[0]

    def conversation(self, n: int) -> tuple[str, list[dict]]:
        rng, task = self.draw(n)
        index = rng.randrange(1 << 62 if task.size is None else task.size)
        return task.name, task.conversation(index)

    def training_problem(self, n: int) -> tuple[CheckableTask, Problem]:
        if not 0 <= n < HELD_OUT_START:
            raise ValueError(f"training problem {n} is outside [0, {HELD_OUT_START})")
        _, task = self.draw(n)
        return task, task.problem(n)

    @staticmethod
    def held_out_problem(task: CheckableTask, i: int) -> Problem:
        return task.problem(HELD_OUT_START + i)


def parse_mixture(text: str, owner: str = "its user", seed: int = 0) -> Mixture:
    """'identity:2,arithmetic:3,jsonl:/data/my.jsonl:1' -> Mixture. A missing weight means 1."""
    return Mixture(
        *weighted(text, lambda name: make_task(name, owner), "identity:2,arithmetic:3,spelling:2"), seed
    )


def parse_task_mix(text: str, seed: int = 0) -> Mixture:
    """'arithmetic:2,spelling:1,gym:letter_counting:1' -> Mixture. A missing weight means 1."""
    tasks, weights = weighted(text, make_checkable_task, "gym:basic_arithmetic:2,spelling:1")
    names = [t.name for t in tasks]
    if len(set(names)) < len(names):
        raise UserError(f"a task appears twice in {text!r}; give each task once, with a weight")
    return Mixture(tasks, weights, seed)


def weighted(text: str, make, example: str) -> tuple[list, list[float]]:
    """The tasks `make(spec)` and the weights of 'a:2,b,c:x:0.5' (a: 2, b: 1, c:x: 0.5): a trailing number
    is a weight (finite, above 0), else the weight is 1."""
    tasks, weights = [], []
    for item in filter(None, (part.strip() for part in text.split(","))):
        spec, _, weight = item.rpartition(":")
        try:
            value = float(weight) if spec else 1.0
        except ValueError:
            spec, value = item, 1.0
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"task weight must be a finite number above 0 in {item!r}")
        tasks.append(make(spec or item))
        weights.append(value)
    if not tasks:
        raise UserError(f"the task list {text!r} names no task; e.g. {example}")
    return tasks, weights
