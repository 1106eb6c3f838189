"""Procedural problems from reasoning-gym (Apache-2.0): arithmetic chains, letter counting, spelling
backwards, GSM8K-style word problems — each with its verified answer.

The generators are the library's own (`pip install reasoning-gym`); without it this task explains how to
get it. `gsm_symbolic` resembles GSM8K: its problems are generated from templates, not taken from GSM8K's
test set, so training on them does not leak the benchmark.
"""

from __future__ import annotations

import random

from picochat.errors import UserError
from picochat.tasks.common import Task

GENERATORS = ("basic_arithmetic", "chain_sum", "letter_counting", "spell_backward", "gsm_symbolic")
TOOL_GENERATORS = ("basic_arithmetic", "chain_sum")  # answered with the calculator tool
BLOCK = 1000  # problems generated per (generator, block) call


class GymTask(Task):
    name = "gym"

    def __init__(self, generators: tuple[str, ...] = GENERATORS):
        try:
            import reasoning_gym
        except ImportError as error:
            raise UserError(
                "the gym task needs reasoning-gym: pip install reasoning-gym==0.1.25 (or drop 'gym' from --mix)"
            ) from error
        self.rg = reasoning_gym
        self.generators = generators
        self._blocks: dict[tuple[str, int], object] = {}

    def problem(self, generator: str, index: int) -> dict:
        block, offset = divmod(index, BLOCK)
        key = (generator, block)
        if key not in self._blocks:
            if len(self._blocks) > 16:
                self._blocks.clear()
            self._blocks[key] = self.rg.create_dataset(generator, size=BLOCK, seed=block)
        return self._blocks[key][offset]

    def conversation(self, index: int) -> list[dict]:
        rng = random.Random(f"gym-{index}")
        generator = rng.choice(self.generators)
        item = self.problem(generator, rng.randrange(1 << 20))
        question, answer = item["question"], str(item["answer"])
        if generator in TOOL_GENERATORS:
            expr = item.get("metadata", {}).get("expression") or question.split(":")[-1].strip(" =.?")
            expr = expr.removeprefix("Calculate ").strip(" =.?")
            reply = [{"type": "python", "text": expr}, {"type": "python_output", "text": answer},
                     {"type": "text", "text": f"The answer is {answer}."}]  # fmt: skip
        else:
            reply = f"The answer is {answer}."
        return [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
