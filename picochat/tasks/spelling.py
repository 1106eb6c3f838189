"""Spelling and letter counting: tokens hide letters from the model, so it practises spelling them out.

A token such as " house" says nothing of its letters; the model learns them only by seeing words spelled
out, and it learns best the words it sees often. So two thirds of the draws come from the common words
(`WORDS` below and the 1,000 commonest words of conversation, picochat/tasks/common_words.py), and a
third from those and reasoning-gym's English words of 3-8 letters (about 75,000 in all; the package
is already a dependency), which spreads practice over the rest of the vocabulary. Words that evaluation
must find unseen are removed from both: the probe set's `UNSEEN_WORDS` (picochat/probe_set.py) and the
chat suite's spelling words (picochat/evaluation/chat.py).
"""

from __future__ import annotations

import random
from functools import cache

from picochat.tasks.common import Task
from picochat.tasks.common_words import COMMON_WORDS, dictionary_words
from picochat.tasks.letter_forms import spell_out

WORDS = """apple banana cherry strawberry raspberry mississippi bookkeeper committee balloon letter
address coffee necessary occasion tomorrow accommodate embarrass parallel possession millennium
programming language computer keyboard elephant giraffe kangaroo butterfly penguin dolphin
chocolate vanilla pepper tomato potato cucumber mushroom garden window picture mountain river
ocean island forest desert summer winter autumn spring yellow purple orange silver golden happiness
beautiful wonderful terrible horrible assessment successful difference excellent grammar separate
definitely restaurant calendar library february wednesday rhythm queue jewelry pronunciation
hello world python picochat model token banana cat dog sheep bottle hippopotamus antelope""".split()


def held_out_words() -> set[str]:
    """Words no training task may spell: the probe set's unseen words and the chat suite's."""
    from picochat.evaluation.chat import SPELLING_WORDS
    from picochat.probe_set import UNSEEN_WORDS

    return set(UNSEEN_WORDS) | set(SPELLING_WORDS)


@cache
def spelling_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(common words, the long list), held-out words removed, sorted."""
    held_out = held_out_words()
    common = set(WORDS) | set(COMMON_WORDS)
    listed = common | {w for w in dictionary_words() if len(w) <= 8}
    return tuple(sorted(common - held_out)), tuple(sorted(listed - held_out))


def draw_word(rng: random.Random) -> str:
    """Two thirds of the time a common word, else any word of the long list."""
    common, listed = spelling_words()
    return rng.choice(common if rng.random() < 2 / 3 else listed)


COUNT_TEMPLATES = [
    'How many times does the letter "{letter}" appear in "{word}"?', "How many {letter}'s are in {word}?",
    "Count the letter {letter} in the word {word}.", 'how many "{letter}" in {word}',
]  # fmt: skip
SPELL_TEMPLATES = ["Spell the word {word}.", "How do you spell {word}?", "spell {word} letter by letter",
                   "Can you spell '{word}' for me?", "What are the letters in {word}?", "Could you spell {word}?",
                   "Write {word} letter by letter.", "How do I spell {word}", "Which letters make up '{word}'?",
                   "{word}: spell it, please.", "Give me the letters of {word}."]  # fmt: skip
LIST_TEMPLATES = ["Spell these words: {words}.", "How do you spell {words}?", "spell each of {words}",
                  "Spell {words} letter by letter."]  # fmt: skip


class SpellingTask(Task):
    name = "spelling"

    def conversation(self, index: int) -> list[dict]:
        rng = random.Random(f"spelling-{index}")
        word = draw_word(rng)
        kind = rng.random()
        if kind < 0.25:  # a list: many words per conversation, so each word is practised more often
            words = [word] + [draw_word(rng) for _ in range(rng.randint(5, 11))]
            question = rng.choice(LIST_TEMPLATES).format(words=", ".join(words))
            answer = "\n".join(f"{w}: {spell_out(w)}" for w in words)
        elif kind < 0.6:
            question = rng.choice(SPELL_TEMPLATES).format(word=word)
            answer = f"{word} is spelled {spell_out(word)}."
        else:
            letter = rng.choice(word) if rng.random() < 0.8 else rng.choice("abcdefghijklmnopqrstuvwxyz")
            positions = [str(i + 1) for i, ch in enumerate(word) if ch == letter]
            count = len(positions)
            question = rng.choice(COUNT_TEMPLATES).format(letter=letter, word=word)
            where = f" (at position {', '.join(positions)})" if positions else ""
            times = "time" if count == 1 else "times"
            answer = f"Spelling it out: {spell_out(word)}. The letter {letter} appears {count} {times}{where}."
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
