"""Second turns: one exchange of a skill, then a question of another, in one conversation. Trained on single
exchanges only, a model reads a second question through the first and answers neither.
"""

import random

from picochat.tasks.arithmetic import ArithmeticTask
from picochat.tasks.common import Task
from picochat.tasks.identity import IdentityTask
from picochat.tasks.smalltalk import SmallTalkTask
from picochat.tasks.spelling import SpellingTask


class MultiTurnTask(Task):
    name = "multiturn"

    def __init__(self, owner: str = "its user"):
        skills = [IdentityTask(owner, "varied"), ArithmeticTask("stories"), SpellingTask()]
        self.skills = [*skills, SmallTalkTask()]

    def conversation(self, index: int) -> list[dict]:
        rng = random.Random(f"multiturn-{index}")
        first, second = rng.sample(self.skills, 2)  # two different skills
        return (
            first.conversation(rng.randrange(1 << 62))[:2] + second.conversation(rng.randrange(1 << 62))[:2]
        )
