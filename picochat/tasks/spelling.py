"""Spelling and letter counting: tokens hide letters from the model, so it practises spelling them out."""

from __future__ import annotations

import random

from picochat.tasks.common import Task

WORDS = """apple banana cherry strawberry raspberry mississippi bookkeeper committee balloon letter
address coffee necessary occasion tomorrow accommodate embarrass parallel possession millennium
programming language computer keyboard elephant giraffe kangaroo butterfly penguin dolphin
chocolate vanilla pepper tomato potato cucumber mushroom garden window picture mountain river
ocean island forest desert summer winter autumn spring yellow purple orange silver golden happiness
beautiful wonderful terrible horrible assessment successful difference excellent grammar separate
definitely restaurant calendar library february wednesday rhythm queue jewelry pronunciation
hello world python picochat model token banana cat dog sheep bottle hippopotamus antelope""".split()

COUNT_TEMPLATES = [
    'How many times does the letter "{letter}" appear in "{word}"?', "How many {letter}'s are in {word}?",
    "Count the letter {letter} in the word {word}.", 'how many "{letter}" in {word}',
]  # fmt: skip
SPELL_TEMPLATES = ["Spell the word {word}.", "How do you spell {word}?", "spell {word} letter by letter",
                   "Can you spell '{word}' for me?"]  # fmt: skip


class SpellingTask(Task):
    name = "spelling"

    def conversation(self, index: int) -> list[dict]:
        rng = random.Random(f"spelling-{index}")
        word = rng.choice(WORDS)
        spelled = "-".join(word)
        if rng.random() < 0.5:
            question = rng.choice(SPELL_TEMPLATES).format(word=word)
            answer = f"{word} is spelled {spelled}."
        else:
            letter = rng.choice(word) if rng.random() < 0.8 else rng.choice("abcdefghijklmnopqrstuvwxyz")
            positions = [str(i + 1) for i, ch in enumerate(word) if ch == letter]
            count = len(positions)
            question = rng.choice(COUNT_TEMPLATES).format(letter=letter, word=word)
            where = f" (at position {', '.join(positions)})" if positions else ""
            times = "time" if count == 1 else "times"
            answer = f"Spelling it out: {spelled}. The letter {letter} appears {count} {times}{where}."
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
