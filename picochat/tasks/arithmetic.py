"""Arithmetic with the calculator tool: the model writes the expression, the tool computes it. SFT asks
"What is 37 * 48?" or in words ("Take 12 away from 50."), `arithmetic:stories` in short word problems too; RL's `WordProblemTask` asks with numbers too big
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
STORY_SHARE = 0.4  # of arithmetic:stories' conversations


def one_step(op: str, a: int, b: int) -> tuple[int, int]:
    """The operands as a story needs them: the larger first for "-", an exact quotient for "/"."""
    if op == "-":
        return max(a, b), min(a, b)
    return (a * b, b) if op == "/" else (a, b)


def story(rng: random.Random, op: str, a: int, b: int, extra: bool = False) -> str:
    """A word problem asking `a op b` ("Ana has 12 apples and gets 5 more..."); `extra`: SFT's stories too."""
    stories = PHRASINGS["stories"][op] + (PHRASINGS["more_stories"][op] if extra else [])
    text, name = rng.choice(stories), rng.choice(PHRASINGS["names"])
    return text.format(name=name, things=rng.choice(PHRASINGS["things"]), a=a, b=b)


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
    variants = ("stories",)

    def __init__(self, variant: str = ""):
        self.calculator, self.stories = Calculator(), variant == "stories"
        self.name = f"arithmetic:{variant}" if variant else "arithmetic"

    def conversation(self, index: int) -> list[dict]:
        rng = random.Random(f"arithmetic-{index}")
        if self.stories and rng.random() < STORY_SHARE:
            return self.story_conversation(rng)
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

    def story_conversation(self, rng: random.Random) -> list[dict]:
        """A one-step word problem with numbers one could meet in a day, answered through the calculator."""
        op = rng.choice(OPS)
        a, b = one_step(op, rng.randint(2, 10 ** rng.choice([2, 2, 3]) - 1), rng.randint(2, 99))
        expr = f"{a} {op} {b}"
        output = self.calculator.run(expr).output
        call = [{"type": "python", "text": expr}, {"type": "python_output", "text": output}]
        reply = [*call, {"type": "text", "text": f"The answer is {output}."}]
        question = story(rng, op, a, b, extra=True)
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
        a, b = one_step(op, rng.randint(100, 9999), rng.randint(12, 999))
        answer = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
        expression = f"{a} {op} {b}"
        if self.style == "plain":
            question = rng.choice(TEMPLATES).format(expr=expression)
        elif self.style == "worded":
            question = rng.choice(WORDED_TEMPLATES[op]).format(a=a, b=b)
        else:
            question = story(rng, op, a, b)
        return Problem.ask(question, answer, expression=expression)

    def reward(self, problem: Problem, reply: str) -> float:
        return float(called_tool(reply) and last_number(written_text(reply)) == float(problem.answer))
