"""Small talk answered in kind: greetings, how-are-you, thanks and goodbyes (tasks/data/smalltalk.json), one
or two to a conversation, in that order. A model that saw greetings only in identity conversations answers
"Hi!" with its introduction; and since identity questions often open with a greeting, a how-are-you does
too here ("Hello! How are you?"), so that the greeting alone does not call up the introduction.
"""

import random

from picochat.tasks.common import Task, phrasings

PHRASES = phrasings("smalltalk")
OPENERS = PHRASES["openers"]  # "Hello! ", put before some how-are-you questions
TOPICS = {topic: v for topic, v in PHRASES.items() if topic != "openers"}  # topic -> {"asks", "replies"}
OPENED_SHARE = 0.4  # of how-are-you questions


def ask(rng: random.Random, topic: str) -> str:
    question = rng.choice(TOPICS[topic]["asks"])
    if topic == "how_are_you" and rng.random() < OPENED_SHARE:
        opener = rng.choice(OPENERS)
        return opener + (question[0].lower() + question[1:] if opener.endswith(", ") else question)
    return question


class SmallTalkTask(Task):
    name = "smalltalk"

    def conversation(self, index: int) -> list[dict]:
        rng = random.Random(f"smalltalk-{index}")
        topics = sorted(rng.sample(range(len(TOPICS)), rng.randint(1, 2)))
        messages = []
        for topic in (list(TOPICS)[i] for i in topics):
            messages += [
                {"role": "user", "content": ask(rng, topic)},
                {"role": "assistant", "content": rng.choice(TOPICS[topic]["replies"])},
            ]
        return messages
