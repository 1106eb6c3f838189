"""Small talk answered in kind: greetings, how-are-you, thanks and goodbyes (tasks/data/smalltalk.json), one
or two to a conversation, in that order. A model that saw greetings only in identity conversations answers
"Hi!" with its introduction.
"""

import random

from picochat.tasks.common import Task, phrasings

TOPICS = phrasings("smalltalk")  # topic -> {"asks": [...], "replies": [...]}, in a conversation's order


class SmallTalkTask(Task):
    name = "smalltalk"

    def conversation(self, index: int) -> list[dict]:
        rng = random.Random(f"smalltalk-{index}")
        topics = sorted(rng.sample(range(len(TOPICS)), rng.randint(1, 2)))
        messages = []
        for topic in (list(TOPICS.values())[i] for i in topics):
            messages += [
                {"role": "user", "content": rng.choice(topic["asks"])},
                {"role": "assistant", "content": rng.choice(topic["replies"])},
            ]
        return messages
