"""Arithmetic with the calculator tool: the model writes the expression, the tool computes it.

Questions come with the operator as a symbol ("What is 37 * 48?") or, for two numbers, in words
("How much is 37 times 48?", "Take 12 away from 50."): either way the call is the symbolic expression,
operands in the order the operation needs.
"""

from __future__ import annotations

import random

from picochat.tasks.common import Task
from picochat.tools import Calculator

TEMPLATES = [
    "What is {expr}?", "Calculate {expr}.", "{expr} = ?", "Compute {expr}", "How much is {expr}?",
    "what's {expr}", "Please work out {expr}.", "Can you tell me what {expr} equals?",
]  # fmt: skip
OPS = ["+", "-", "*", "/"]
WORDED_TEMPLATES = {
    "+": ["{a} plus {b}", "How much is {a} plus {b}?", "What do you get if you add {a} to {b}?",
          "Sum {a} and {b}.", "{a} and {b} added together?"],
    "-": ["{a} minus {b}", "How much is {a} minus {b}?", "Take {b} away from {a}.",
          "What do you get if you subtract {b} from {a}?", "{a} less {b}?"],
    "*": ["{a} times {b}", "How much is {a} times {b}?", "What do you get if you multiply {a} by {b}?",
          "{a} multiplied by {b}?", "Times {a} by {b}."],
    "/": ["{a} divided by {b}", "How much is {a} divided by {b}?", "What do you get if you divide {a} by {b}?",
          "{a} over {b}?", "Split {a} into {b} equal parts: how big is each?"],
}  # fmt: skip


def random_expression(rng: random.Random) -> str:
    digits = rng.choice([1, 2, 2, 3, 3, 4])
    a = rng.randint(0, 10**digits - 1)
    b = rng.randint(1, 10 ** rng.choice([1, 2, 3]) - 1)
    op = rng.choice(OPS)
    if rng.random() < 0.25:  # three operands, sometimes with parentheses
        c = rng.randint(1, 99)
        op2 = rng.choice(OPS[:3])
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
        if not result.ok:  # e.g. division by zero: the model learns to report it
            reply = [
                {"type": "python", "text": expr},
                {"type": "python_output", "text": result.output},
                {"type": "text", "text": "That cannot be computed: " + result.output.removeprefix("error: ")},
            ]
        else:
            reply = [{"type": "text", "text": rng.choice(["Let me calculate.", "Using the calculator:", ""])},
                     {"type": "python", "text": expr}, {"type": "python_output", "text": result.output},
                     {"type": "text", "text": f"{expr} = {result.output}"}]  # fmt: skip
        reply = [part for part in reply if part["text"]]
        if worded:
            a, op, b = parts
            question = rng.choice(WORDED_TEMPLATES[op]).format(a=a, b=b)
        else:
            question = rng.choice(TEMPLATES).format(expr=expr)
        return [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
