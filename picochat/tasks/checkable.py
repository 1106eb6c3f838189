"""Checkable tasks for reinforcement learning: problems whose replies a program scores, from 0 to 1.
Training draws only indices below `HELD_OUT_START`, evaluation only above. `ContainsTask` is the smallest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HELD_OUT_START = 1 << 40  # problem indices from here on are for evaluation only
TOOL_SPAN = re.compile(
    r"<\|python_start\|>.*?(<\|python_end\|>|$)|<\|output_start\|>.*?(<\|output_end\|>|$)", re.DOTALL
)
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class Problem:
    """One problem: the conversation to complete (ending with a user message) and its reference answer."""

    messages: list[dict]
    answer: str
    data: dict = field(default_factory=dict)  # anything else the checker needs

    @classmethod
    def ask(cls, question: str, answer: object, **data) -> Problem:
        return cls([{"role": "user", "content": question}], str(answer), data)


class CheckableTask:
    """A named, deterministic source of problems and a checker for replies."""

    name = "checkable"

    def problem(self, index: int) -> Problem:
        raise NotImplementedError

    def reward(self, problem: Problem, reply: str) -> float:
        """The reply's score in [0, 1]; `reply` holds tool calls with their markers (see `written_text`)."""
        raise NotImplementedError


class ContainsTask(CheckableTask):
    """A toy: the reply must contain a text. Even a random model sometimes writes it: a smoke test of RL."""

    def __init__(self, text: str = "e"):
        self.text, self.name = text, f"contains:{text}"

    def problem(self, index: int) -> Problem:
        return Problem.ask(f"Say something with {self.text!r} in it.", self.text)

    def reward(self, problem: Problem, reply: str) -> float:
        return float(problem.answer in written_text(reply))


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
    return float(found[-1].replace(",", "")) if found else None
