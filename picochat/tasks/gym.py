"""Procedural problems from reasoning-gym (Apache-2.0), each with its verified answer: for SFT (`GymTask`)
and for RL (`GymCheckableTask`, scored by the generator's own `score_answer`, partial credit included).
`gsm_symbolic` is left out: its templates are made from GSM8K test questions (docs/evaluation.md).
"""

import random

from picochat.errors import UserError
from picochat.tasks.checkable import CheckableTask, Problem, final_answer
from picochat.tasks.common import Task

GENERATORS = ("basic_arithmetic", "chain_sum", "letter_counting", "spell_backward")
TOOL_GENERATORS = ("basic_arithmetic", "chain_sum")  # answered with the calculator tool
BLOCK = 1000  # problems generated per (generator, block) call


class GymTask(Task):
    name = "gym"

    def __init__(self, generators: tuple[str, ...] = GENERATORS):
        try:
            import reasoning_gym  # optional: imported only when a gym task is made
        except ImportError as error:
            raise UserError(
                "the gym task needs reasoning-gym: pip install reasoning-gym==0.1.25 (or drop gym from --mix)"
            ) from error
        self.rg, self.generators = reasoning_gym, generators
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
        reply = f"The answer is {answer}."
        if generator in TOOL_GENERATORS:
            expr = item.get("metadata", {}).get("expression") or question.split(":")[-1].strip(" =.?")
            expr = expr.removeprefix("Calculate ").strip(" =.?")
            call = [{"type": "python", "text": expr}, {"type": "python_output", "text": answer}]
            reply = [*call, {"type": "text", "text": reply}]
        return [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]


class GymCheckableTask(CheckableTask):
    """`gym`: the SFT task's generators, drawn in turn by index; `gym:letter_counting`: one generator."""

    def __init__(self, generator: str | None = None):
        self.generators = (generator,) if generator else GENERATORS
        self.name = f"gym:{generator}" if generator else "gym"
        self.gym = GymTask(self.generators)
        self._scorers: dict[str, object] = {}

    def problem(self, index: int) -> Problem:
        generator = self.generators[index % len(self.generators)]
        entry = self.gym.problem(generator, index // len(self.generators))
        return Problem.ask(entry["question"], entry["answer"], generator=generator, entry=entry)

    def reward(self, problem: Problem, reply: str) -> float:
        generator = problem.data["generator"]
        if generator not in self._scorers:
            self._scorers[generator] = self.gym.rg.create_dataset(generator, size=1, seed=0)
        answer = final_answer(reply)
        score = self._scorers[generator].score_answer(answer or None, problem.data["entry"])
        return float(min(max(score, 0.0), 1.0))
