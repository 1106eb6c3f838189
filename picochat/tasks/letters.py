"""Spelling and letter counting for RL: count a letter in a word, or spell a word letter by letter.

Held-out problems use words that training problems never use (a fixed fifth of the SFT task's word
lists, chosen by a hash of the word; evaluation's own words are in neither), so the held-out score
measures counting and spelling, not memory of a problem seen.
Counting earns 1 when the count the reply states is right: the number in "appears N times" (the SFT
task's wording, which goes on to list positions), else the last number of the reply's answer. Spelling
earns 1 when the reply spells the word letter by letter, separated by spaces ("c a t", the SFT task's
form) or hyphens ("c-a-t"), in any case.
"""

from __future__ import annotations

import random
import zlib
from functools import cache

from picochat.tasks.checkable import (
    HELD_OUT_START,
    CheckableTask,
    Problem,
    final_answer,
    last_number,
    written_text,
)
from picochat.tasks.letter_forms import spell_out, spelled_in, stated_count
from picochat.tasks.spelling import COUNT_TEMPLATES, spell_templates, spelling_words


def held_out(word: str) -> bool:
    """A fixed fifth of the words, by hash: RL's held-out problems use only these, training never."""
    return zlib.crc32(word.encode()) % 5 == 0


@cache
def word_split(held: bool) -> tuple[str, ...]:
    """RL's words: the common ones twice over and every n-th of the long list (about 2,000), held-out or
    training ones."""
    common, listed = spelling_words()
    pool = (*common, *common, *listed[:: max(1, len(listed) // 2000)])
    return tuple(w for w in pool if held_out(w) == held)


class LetterTask(CheckableTask):
    name = "spelling"

    def problem(self, index: int) -> Problem:
        rng = random.Random(f"letters-{index}")
        word = rng.choice(word_split(index >= HELD_OUT_START))
        if rng.random() < 0.3:
            question = rng.choice(spell_templates()).format(word=word)
            return Problem(
                [{"role": "user", "content": question}], spell_out(word), {"kind": "spell", "word": word}
            )
        letter = rng.choice(word) if rng.random() < 0.8 else rng.choice("abcdefghijklmnopqrstuvwxyz")
        question = rng.choice(COUNT_TEMPLATES).format(letter=letter, word=word)
        return Problem([{"role": "user", "content": question}], str(word.count(letter)),
                       {"kind": "count", "word": word, "letter": letter})  # fmt: skip

    def reward(self, problem: Problem, reply: str) -> float:
        text = written_text(reply)
        if problem.data["kind"] == "spell":
            return float(spelled_in(problem.data["word"], text))
        count = stated_count(text)
        count = last_number(final_answer(reply)) if count is None else count
        return float(count == float(problem.answer))
