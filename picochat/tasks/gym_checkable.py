"""reasoning-gym's procedural problems for RL, each scored by the generator's own `score_answer`.

    gym                     the generators of the SFT gym task, drawn in turn by index
    gym:letter_counting     one generator (any name reasoning-gym knows)

The reply's answer is what follows its last "answer is" (the form the SFT gym task teaches), else its
last line (`checkable.final_answer`). reasoning-gym's scorers give partial credit for near misses on
some generators, so rewards lie in [0, 1]; pass@1 counts only full marks.
"""

from __future__ import annotations

from picochat.tasks.checkable import CheckableTask, Problem, final_answer
from picochat.tasks.gym import GENERATORS, GymTask


class GymCheckableTask(CheckableTask):
    def __init__(self, generator: str | None = None):
        self.generators = (generator,) if generator else GENERATORS
        self.name = f"gym:{generator}" if generator else "gym"
        self.gym = GymTask(self.generators)  # explains how to install reasoning-gym when it is missing
        self._scorers: dict[str, object] = {}

    def problem(self, index: int) -> Problem:
        generator = self.generators[index % len(self.generators)]
        entry = self.gym.problem(generator, index // len(self.generators))
        question = entry["question"]
        return Problem([{"role": "user", "content": question}], str(entry["answer"]),
                       {"generator": generator, "entry": entry})  # fmt: skip

    def reward(self, problem: Problem, reply: str) -> float:
        generator = problem.data["generator"]
        if generator not in self._scorers:
            self._scorers[generator] = self.gym.rg.create_dataset(generator, size=1, seed=0)
        answer = final_answer(reply)
        score = self._scorers[generator].score_answer(answer or None, problem.data["entry"])
        return float(min(max(score, 0.0), 1.0))
