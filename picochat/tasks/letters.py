"""Spelling and letter counting for RL: count a letter in a word, or spell a word letter by letter.

Held-out problems use words that training problems never use (a fixed fifth of the word list, chosen by a
hash of the word), so the held-out score measures counting and spelling, not memory of a problem seen.
Counting earns 1 when the last number of the reply is the count; spelling earns 1 when the reply spells
the word with hyphens ("c-a-t"), in any case.
"""

from __future__ import annotations

import random
import zlib

from picochat.tasks.checkable import HELD_OUT_START, CheckableTask, Problem, last_number, written_text
from picochat.tasks.spelling import COUNT_TEMPLATES, SPELL_TEMPLATES, WORDS

HELD_OUT_WORDS = sorted(w for w in set(WORDS) if zlib.crc32(w.encode()) % 5 == 0)
TRAINING_WORDS = sorted(w for w in set(WORDS) if zlib.crc32(w.encode()) % 5 != 0)


class LetterTask(CheckableTask):
    name = "spelling"

    def problem(self, index: int) -> Problem:
        rng = random.Random(f"letters-{index}")
        word = rng.choice(HELD_OUT_WORDS if index >= HELD_OUT_START else TRAINING_WORDS)
        if rng.random() < 0.3:
            question = rng.choice(SPELL_TEMPLATES).format(word=word)
            return Problem([{"role": "user", "content": question}], "-".join(word), {"kind": "spell"})
        letter = rng.choice(word) if rng.random() < 0.8 else rng.choice("abcdefghijklmnopqrstuvwxyz")
        question = rng.choice(COUNT_TEMPLATES).format(letter=letter, word=word)
        return Problem([{"role": "user", "content": question}], str(word.count(letter)), {"kind": "count"})

    def reward(self, problem: Problem, reply: str) -> float:
        text = written_text(reply)
        if problem.data["kind"] == "spell":
            return float(problem.answer in text.lower())
        return float(last_number(text) == float(problem.answer))
