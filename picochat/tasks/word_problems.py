"""Arithmetic word problems for RL: numbers too big to multiply in one's head, so the calculator must run.

    arithmetic          one operation on two numbers of two to four digits, told as a short story
    arithmetic:plain    the same operations asked plainly, as the SFT arithmetic task asks ("What is 347 * 28?")
    arithmetic:worded   the same operations with the operator in words, as SFT also asks ("347 times 28?",
                        "Take 28 away from 347.")

A reply earns 1 when it called the calculator and the last number it wrote itself (outside the tool's
output) is the answer; anything else earns 0. Division problems divide exactly, so every answer is a whole
number.
"""

from __future__ import annotations

import random

from picochat.errors import UserError
from picochat.tasks.arithmetic import TEMPLATES as PLAIN_TEMPLATES
from picochat.tasks.arithmetic import WORDED_TEMPLATES
from picochat.tasks.checkable import CheckableTask, Problem, called_tool, last_number, written_text

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kofi", "Lena"]
THINGS = ["apples", "stamps", "marbles", "books", "coins", "shells", "cards", "bricks", "seeds", "nails"]
TEMPLATES = {
    "+": ["{name} has {a} {things} and gets {b} more. How many {things} does {name} have now?",
          "A library had {a} {things} and received {b} more. How many {things} does it have?"],
    "-": ["{name} had {a} {things} and gave away {b}. How many {things} are left?",
          "A shop had {a} {things} and sold {b}. How many {things} remain?"],
    "*": ["A box holds {a} {things}. How many {things} are in {b} boxes?",
          "{name} collects {a} {things} every day. How many {things} after {b} days?"],
    "/": ["{a} {things} are shared equally among {b} people. How many {things} does each person get?",
          "{name} packs {a} {things} into {b} equal bags. How many {things} go in each bag?"],
}  # fmt: skip


class WordProblemTask(CheckableTask):
    def __init__(self, style: str = "story"):
        if style not in ("story", "plain", "worded"):
            raise UserError(
                f"arithmetic:{style} is not a style; use arithmetic (stories), arithmetic:plain"
                " or arithmetic:worded"
            )
        self.style = style
        self.name = "arithmetic" if style == "story" else f"arithmetic:{style}"

    def problem(self, index: int) -> Problem:
        rng = random.Random(f"word-problem-{index}")
        op = rng.choice(list(TEMPLATES))
        a, b = rng.randint(100, 9999), rng.randint(12, 999)
        if op == "-":
            a, b = max(a, b), min(a, b)
        if op == "/":
            a = a * b  # an exact quotient
        answer = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
        expression = f"{a} {op} {b}"
        if self.style == "plain":
            question = rng.choice(PLAIN_TEMPLATES).format(expr=expression)
        elif self.style == "worded":
            question = rng.choice(WORDED_TEMPLATES[op]).format(a=a, b=b)
        else:
            story = rng.choice(TEMPLATES[op])
            question = story.format(name=rng.choice(NAMES), things=rng.choice(THINGS), a=a, b=b)
        return Problem([{"role": "user", "content": question}], str(answer), {"expression": expression})

    def reward(self, problem: Problem, reply: str) -> float:
        if not called_tool(reply):
            return 0.0
        return float(last_number(written_text(reply)) == float(problem.answer))
