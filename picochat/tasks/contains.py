"""A toy task: the reply must contain a given text. The smallest complete example of a checkable task.

    picochat rl --tasks contains:e     # every reply that contains an "e" earns 1

Useful for a smoke test of the RL loop on a model that knows nothing: even a random model sometimes
writes the text, so the reward has signal from the first step.
"""

from __future__ import annotations

from picochat.tasks.checkable import CheckableTask, Problem, written_text


class ContainsTask(CheckableTask):
    def __init__(self, text: str = "e"):
        self.text = text
        self.name = f"contains:{text}"

    def problem(self, index: int) -> Problem:
        return Problem([{"role": "user", "content": f"Say something with {self.text!r} in it."}], self.text)

    def reward(self, problem: Problem, reply: str) -> float:
        return float(problem.answer in written_text(reply))
