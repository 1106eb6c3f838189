"""Spelling and letter counting: tokens hide letters from the model, so it practises spelling them out.

A token such as " house" says nothing of its letters; the model learns them only by seeing words spelled
out, and it learns best the words it sees often. So 85 % of the draws come from the common words
(`WORDS` below and the 1,000 commonest words of conversation, picochat/tasks/common_words.py), and the
rest from those and reasoning-gym's English words of 3-8 letters (about 75,000 in all; the package
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


COMMON_SHARE = 0.85  # of the draws from the common words


def draw_word(rng: random.Random) -> str:
    """85 % of the time a common word, else any word of the long list (the share was two thirds;
    bench/results/levers.md has what the change did)."""
    common, listed = spelling_words()
    return rng.choice(common if rng.random() < COMMON_SHARE else listed)


COUNT_TEMPLATES = [
    'How many times does the letter "{letter}" appear in "{word}"?', "How many {letter}'s are in {word}?",
    "Count the letter {letter} in the word {word}.", 'how many "{letter}" in {word}',
]  # fmt: skip
# How a spelling question is asked: a few hundred phrasings composed from the parts below, so that the model
# learns to find the word in whatever sentence holds it rather than a handful of fixed sentences. A phrasing
# whose core is one of the probe set's (`phrasing_core`: case, closing punctuation, politeness, "the word",
# quotes and contractions set aside) is left out, so the probes stay phrasings the task never uses.
TARGETS = ["{word}", "the word {word}", "'{word}'"]  # quoted, a word is other tokens: kept to a third
REQUESTS = ["spell {t}", "spell out {t}", "spell {t} for me", "spell {t} letter by letter",
            "spell {t} one letter at a time", "write out {t} letter by letter", "give me the spelling of {t}",
            "tell me how to spell {t}", "list the letters of {t}", "write the letters of {t}",
            "break {t} into letters", "give me the letters of {t}", "now spell {t}", "spell {t} aloud",
            "try to spell {t}", "spell {t} quickly", "spell {t} next", "spell me {t}"]  # fmt: skip
POLITE = ["", "please ", "can you ", "could you ", "would you ", "I need you to ", "quick one: "]
QUESTIONS = ["how do you spell {t}?", "how do I spell {t}?", "how is {t} spelled?", "how would you spell {t}?",
             "what is the spelling of {t}?", "what letters make up {t}?", "which letters spell {t}?",
             "what are the letters in {t}?", "how does one spell {t}?", "how is {t} written letter by letter?",
             "what is the correct spelling of {t}?", "how many letters, and which, are in {t}?",
             "{t}: how is it spelled?", "{t}: spell it, please.", "I can never spell {t}. How does it go?",
             "the word is {word}. How is it spelled?"]  # fmt: skip
OPENERS = ["", "quick question: ", "hey, ", "sorry, ", "I forgot: "]


def phrasing_core(text: str) -> str:
    """What a phrasing asks, with its dressing removed: lower case, no closing punctuation, no politeness or
    opener, "the word" and quotes around the word dropped, "what's" read as "what is"."""
    core = (
        text.lower().replace("what's", "what is").replace("the word ", "").replace("'", "").replace('"', "")
    )
    core = core.rstrip(".?!, ")
    for dressing in sorted({d.lower() for d in (*POLITE, *OPENERS)}, key=len, reverse=True):
        if dressing and core.startswith(dressing):
            core = core[len(dressing) :]
            break
    return core


def spell_phrasings(held_out: list[str]) -> tuple[str, ...]:
    """Every composed phrasing (a "{word}" slot each) whose core is none of `held_out`'s cores."""
    cores = {phrasing_core(p) for p in held_out}
    composed = []
    for request in REQUESTS:
        for polite in POLITE:
            end = "?" if polite.strip() in ("can you", "could you", "would you") else "."
            composed += [polite + request.format(t=t) + end for t in TARGETS]
    for question in QUESTIONS:
        for opener in OPENERS:
            composed += [opener + question.format(t=t, word="{word}") for t in TARGETS]
    unique = dict.fromkeys(p[0].upper() + p[1:] for p in composed if phrasing_core(p) not in cores)
    return tuple(unique)


@cache
def spell_templates() -> tuple[str, ...]:
    """The task's phrasings: every composed one but the probe set's (imported here, not at the top: the
    probe set imports the tasks package)."""
    from picochat.probe_set import SPELLING_TEMPLATES

    return spell_phrasings(SPELLING_TEMPLATES)


@cache
def plain_and_dressed() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The phrasings split in two: the plain ones (no politeness, no opener: "Spell {word} aloud.") and the
    dressed ones ("Could you spell {word} aloud?")."""
    dressings = tuple(d.lower() for d in (*POLITE, *OPENERS) if d)
    plain, dressed = [], []
    for phrasing in spell_templates():
        (dressed if phrasing.lower().startswith(dressings) else plain).append(phrasing)
    return tuple(plain), tuple(dressed)


def draw_phrasing(rng: random.Random) -> str:
    """Half the time a plain phrasing, else a dressed one. Drawn evenly from all of them, five in six would
    be dressed, since every request comes with six politenesses; a model that rarely saw a request start
    with its verb answered "Spell table." as if asked who it is (bench/results/levers.md)."""
    plain, dressed = plain_and_dressed()
    return rng.choice(plain if rng.random() < 0.5 else dressed)


LIST_TEMPLATES = ["Spell these words: {words}.", "How do you spell {words}?", "spell each of {words}",
                  "Spell {words} letter by letter."]  # fmt: skip


class SpellingTask(Task):
    name = "spelling"

    def conversation(self, index: int) -> list[dict]:
        rng = random.Random(f"spelling-{index}")
        word = draw_word(rng)
        kind = rng.random()
        if kind < 0.35:  # a list: many words per conversation, so each word is practised more often
            words = [word] + [draw_word(rng) for _ in range(rng.randint(5, 11))]
            question = rng.choice(LIST_TEMPLATES).format(words=", ".join(words))
            answer = "\n".join(f"- {w}: {spell_out(w)}" for w in words)  # "- table": the token " table" again
        elif kind < 0.7:
            question = draw_phrasing(rng).format(word=word)
            # The letters straight away, without writing the word again first: a small model that has
            # to copy the word's token from the question into its reply (through its untied output
            # layer) mostly writes another word and spells that one (bench/results/levers.md)
            answer = f"Letter by letter: {spell_out(word)}."
        else:
            letter = rng.choice(word) if rng.random() < 0.8 else rng.choice("abcdefghijklmnopqrstuvwxyz")
            positions = [str(i + 1) for i, ch in enumerate(word) if ch == letter]
            count = len(positions)
            question = rng.choice(COUNT_TEMPLATES).format(letter=letter, word=word)
            where = f" (at position {', '.join(positions)})" if positions else ""
            times = "time" if count == 1 else "times"
            answer = (
                f"Spelling it out: {spell_out(word)}. The letter {letter} appears {count} {times}{where}."
            )
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
