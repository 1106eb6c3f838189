"""Checkable tasks for reinforcement learning: problems whose replies a program scores.

    arithmetic          word problems whose numbers are too big to do in one's head: the calculator must
                        be called, and the last number the model writes must be the answer
    arithmetic:plain    the same operations asked plainly ("What is 347 * 28?"), as SFT asks them
    arithmetic:worded   the same with the operator in words ("347 times 28?"), as SFT also asks them
    spelling            count a letter in a word, or spell a word letter by letter
    gym[:GENERATOR]     reasoning-gym's procedural problems, scored by reasoning-gym's own scorer
    contains:TEXT       a toy: the reply must contain TEXT (the smallest example of a task)

A task turns an index into a `Problem` (a prompt and what the checker needs) and scores a reply with
`reward(problem, reply) -> float in [0, 1]`, 1 meaning correct. Indices from `HELD_OUT_START` on are held
out: training draws only indices below it, evaluation only above, so a model is never scored on a problem
it practised. To add a task, write one file with a `CheckableTask` subclass and add one line to `REGISTRY`.
"""

from __future__ import annotations

import importlib
import random
import re
from dataclasses import dataclass, field

from picochat.errors import UserError
from picochat.tasks.common import parse_weighted

HELD_OUT_START = 1 << 40  # problem indices from here on are for evaluation only

# name -> "module:Class"; a spec "name:ARG" passes ARG to the class
REGISTRY = {
    "arithmetic": "picochat.tasks.word_problems:WordProblemTask",
    "spelling": "picochat.tasks.letters:LetterTask",
    "gym": "picochat.tasks.gym_checkable:GymCheckableTask",
    "contains": "picochat.tasks.contains:ContainsTask",
}


@dataclass(frozen=True)
class Problem:
    """One problem: the conversation to complete (ending with a user message) and its reference answer."""

    messages: list[dict]
    answer: str
    data: dict = field(default_factory=dict)  # anything else the checker needs


class CheckableTask:
    """Base class: a named, deterministic source of problems and a checker for replies."""

    name = "checkable"

    def problem(self, index: int) -> Problem:
        raise NotImplementedError

    def reward(self, problem: Problem, reply: str) -> float:
        """The reply's score in [0, 1]; 1 is a correct answer. `reply` is GenerationResult.text: tool calls
        appear in it with their markers (see `written_text` for what the model itself wrote)."""
        raise NotImplementedError


TOOL_SPAN = re.compile(r"<\|python_start\|>.*?(<\|python_end\|>|$)|<\|output_start\|>.*?(<\|output_end\|>|$)",
                       re.DOTALL)  # fmt: skip
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def written_text(reply: str) -> str:
    """The reply without its tool calls and their outputs: what the model wrote in its own words."""
    return TOOL_SPAN.sub(" ", reply)


def called_tool(reply: str) -> bool:
    return "<|python_start|>" in reply and "<|output_start|>" in reply


def final_answer(reply: str) -> str:
    """The answer a reply gives: what follows its last "answer is", else its last non-empty line."""
    text = written_text(reply).strip()
    marker = text.lower().rfind("answer is")
    if marker >= 0:
        text = text[marker + len("answer is") :]
    else:
        text = next((line for line in reversed(text.splitlines()) if line.strip()), "")
    return text.strip().strip(":").strip().removesuffix(".").strip()


def last_number(text: str) -> float | None:
    """The last number written in `text` (thousands separators allowed), or None."""
    found = NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def make_checkable_task(spec: str) -> CheckableTask:
    """A task from its spec: a registered name, optionally followed by ':ARG'."""
    name, _, arg = spec.partition(":")
    if name not in REGISTRY:
        raise UserError(f"unknown RL task {name!r}; choose from {', '.join(REGISTRY)}")
    module, _, cls = REGISTRY[name].partition(":")
    task_class = getattr(importlib.import_module(module), cls)
    return task_class(arg) if arg else task_class()


@dataclass
class TaskMix:
    """Tasks with weights. Training problem n comes from a task drawn by weight with a generator seeded by
    (seed, n), at that task's index n; held-out problem i of a task is its index HELD_OUT_START + i."""

    tasks: list[CheckableTask]
    weights: list[float]
    seed: int = 0

    def training_problem(self, n: int) -> tuple[CheckableTask, Problem]:
        if not 0 <= n < HELD_OUT_START:
            raise ValueError(f"training problem {n} is outside [0, {HELD_OUT_START})")
        task = random.Random(f"{self.seed}-{n}").choices(self.tasks, weights=self.weights)[0]
        return task, task.problem(n)

    @staticmethod
    def held_out_problem(task: CheckableTask, i: int) -> Problem:
        return task.problem(HELD_OUT_START + i)


def parse_task_mix(text: str, seed: int = 0) -> TaskMix:
    """'arithmetic:2,spelling:1,gym:letter_counting:1' -> TaskMix. A trailing number is a weight (else 1)."""
    items = parse_weighted(text)
    tasks, weights = [make_checkable_task(spec) for spec, _ in items], [weight for _, weight in items]
    if not tasks:
        raise UserError(f"the task list {text!r} names no task; e.g. gym:basic_arithmetic:2,spelling:1")
    names = [t.name for t in tasks]
    if len(set(names)) < len(names):
        raise UserError(f"a task appears twice in {text!r}; give each task once, with a weight")
    return TaskMix(tasks, weights, seed)
