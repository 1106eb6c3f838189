"""Arithmetic with the calculator tool: the model writes the expression, the tool computes it. SFT asks
"What is 37 * 48?" or in words ("Take 12 away from 50."); RL's `WordProblemTask` asks with numbers too big
for one's head, and a reply earns 1 when it called the calculator and its own last number is the answer.
"""

import random

from picochat.errors import UserError
from picochat.tasks.checkable import CheckableTask, Problem, called_tool, last_number, written_text
from picochat.tasks.common import Task, phrasings
from picochat.tools import Calculator

PHRASINGS = phrasings("arithmetic")
TEMPLATES = PHRASINGS["questions"]  # "What is {expr}?"
WORDED_TEMPLATES = PHRASINGS["worded"]  # operator -> "{a} times {b}", ...
OPS = ["+", "-", "*", "/"]


def random_expression(rng: random.Random) -> str:
    digits = rng.choice([1, 2, 2, 3, 3, 4])
    a = rng.randint(0, 10**digits - 1)
    b = rng.randint(1, 10 ** rng.choice([1, 2, 3]) - 1)
    op = rng.choice(OPS)
    if rng.random() < 0.25:  # three operands, sometimes with parentheses
        c, op2 = rng.randint(1, 99), rng.choice(OPS[:3])
        return f"({a} {op} {b}) {op2} {c}" if rng.random() < 0.5 else f"{a} {op} {b} {op2} {c}"
    return f"{a} {op} {b}"


class ArithmeticTask(Task):
    name = "arithmetic"

    def __init__(self):
        self.calculator = Calculator()

    def conversation(self, index: int) -> list[dict]:
        rng = random.Random(f"arithmetic-{index}")
        expr = random_expression(rng)
        parts = expr.split(" ")
        worded = len(parts) == 3 and rng.random() < 0.4
        result = self.calculator.run(expr)
        opening, closing = "", f"{expr} = {result.output}"
        if not result.ok:  # e.g. division by zero: the model learns to report it
            closing = "That cannot be computed: " + result.output.removeprefix("error: ")
        else:
            opening = rng.choice(["Let me calculate.", "Using the calculator:", ""])
        call = [{"type": "python", "text": expr}, {"type": "python_output", "text": result.output}]
        reply = [{"type": "text", "text": opening}, *call, {"type": "text", "text": closing}]
        reply = [part for part in reply if part["text"]]
        if worded:
            a, op, b = parts
            question = rng.choice(WORDED_TEMPLATES[op]).format(a=a, b=b)
        else:
            question = rng.choice(TEMPLATES).format(expr=expr)
        return [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]


class WordProblemTask(CheckableTask):
    """RL's arithmetic: one operation on numbers of two to four digits; `style` is how it is asked."""

    def __init__(self, style: str = "story"):
        if style not in ("story", "plain", "worded"):
            raise UserError(
                f"arithmetic:{style} is not a style; use arithmetic, arithmetic:plain or arithmetic:worded"
            )
        self.style, self.name = style, "arithmetic" if style == "story" else f"arithmetic:{style}"

    def problem(self, index: int) -> Problem:
        rng = random.Random(f"word-problem-{index}")
        op = rng.choice(list(PHRASINGS["stories"]))
        a, b = rng.randint(100, 9999), rng.randint(12, 999)
        if op == "-":
            a, b = max(a, b), min(a, b)
        if op == "/":
            a = a * b  # an exact quotient
        answer = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
        expression = f"{a} {op} {b}"
        if self.style == "plain":
            question = rng.choice(TEMPLATES).format(expr=expression)
        elif self.style == "worded":
            question = rng.choice(WORDED_TEMPLATES[op]).format(a=a, b=b)
        else:
            story, name = rng.choice(PHRASINGS["stories"][op]), rng.choice(PHRASINGS["names"])
            question = story.format(name=name, things=rng.choice(PHRASINGS["things"]), a=a, b=b)
        return Problem.ask(question, answer, expression=expression)

    def reward(self, problem: Problem, reply: str) -> float:
        return float(called_tool(reply) and last_number(written_text(reply)) == float(problem.answer))
