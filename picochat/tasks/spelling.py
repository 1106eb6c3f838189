"""Spelling and letter counting: a token such as " house" says nothing of its letters, so the model
practises spelling words out, best the words it sees often: 85 % of the draws are common words, the rest
any word of 3-8 letters (about 75,000). Words evaluation must find unseen are never drawn. RL's
`LetterTask` asks the same questions and keeps a fixed fifth of the words for held-out problems.
"""

import importlib.util
import itertools
import random
import string
import zlib
from functools import cache
from pathlib import Path

from picochat import wordlists
from picochat.tasks.checkable import (
    HELD_OUT_START,
    CheckableTask,
    Problem,
    final_answer,
    last_number,
    written_text,
)
from picochat.tasks.common import Task, phrasings
from picochat.tasks.letter_forms import spell_out, spelled_in, stated_count

PHRASINGS = phrasings("spelling")
COUNT_TEMPLATES = PHRASINGS["count"]  # 'How many {letter}'s are in {word}?'
LIST_TEMPLATES = PHRASINGS["lists"]  # "Spell these words: {words}."
COMMON_SHARE = 0.85  # of the draws from the common words


@cache
def dictionary_words() -> tuple[str, ...]:
    """reasoning-gym's English word list (3-10 letters), lowercase a-z only; empty if it is missing."""
    spec = importlib.util.find_spec("reasoning_gym")  # located, not imported: its import is slow
    listed = Path(spec.submodule_search_locations[0]) / "data" / "words3to10.txt" if spec else None
    if not (listed and listed.exists()):
        return ()
    words = listed.read_text(encoding="utf-8").split()
    return tuple(w for w in words if w.isascii() and w.isalpha() and w.islower())


@cache
def spelling_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(common words, the long list), held-out words removed, sorted."""
    held_out = wordlists.held_out_words()
    common = set(wordlists.PRACTISED_WORDS) | set(wordlists.COMMON_WORDS)
    listed = common | {w for w in dictionary_words() if len(w) <= 8}
    return tuple(sorted(common - held_out)), tuple(sorted(listed - held_out))


def draw_word(rng: random.Random) -> str:
    """85 % of the time a common word, else any word of the long list (bench/results/levers.md has why)."""
    common, listed = spelling_words()
    return rng.choice(common if rng.random() < COMMON_SHARE else listed)


# A spelling question is one of a few hundred phrasings composed from tasks/data/spelling.json, so that the
# model learns to find the word in whatever sentence holds it. Dressings (politeness, openers) longest first.
DRESSINGS = sorted(
    {d.lower() for d in (*PHRASINGS["polite"], *PHRASINGS["openers"]) if d}, key=len, reverse=True
)


def phrasing_core(text: str) -> str:
    """What a phrasing asks: lower case, without closing punctuation, politeness, opener, "the word" or
    quotes, "what's" read as "what is"."""
    core = text.lower().replace("what's", "what is").replace("the word ", "").replace("'", "")
    core = core.replace('"', "").rstrip(".?!, ")
    dressing = next((d for d in DRESSINGS if core.startswith(d)), "")
    return core[len(dressing) :]


@cache
def spell_templates() -> tuple[str, ...]:
    """Every composed phrasing (a "{word}" slot each) but those whose core is a probe's."""
    cores = {phrasing_core(p) for p in wordlists.PROBE_SPELLING_TEMPLATES}
    targets, composed = PHRASINGS["targets"], []
    for request in PHRASINGS["requests"]:
        for polite in PHRASINGS["polite"]:
            end = "?" if polite.strip() in ("can you", "could you", "would you") else "."
            composed += [polite + request.format(t=t) + end for t in targets]
    for question in PHRASINGS["questions"]:
        for opener in PHRASINGS["openers"]:
            composed += [opener + question.format(t=t, word="{word}") for t in targets]
    return tuple(dict.fromkeys(p[0].upper() + p[1:] for p in composed if phrasing_core(p) not in cores))


@cache
def plain_and_dressed() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(plain phrasings: "Spell {word} aloud.", dressed ones: "Could you spell {word} aloud?")"""
    dressed = tuple(p for p in spell_templates() if p.lower().startswith(tuple(DRESSINGS)))
    return tuple(p for p in spell_templates() if p not in dressed), dressed


def draw_phrasing(rng: random.Random) -> str:
    """Half the time a plain phrasing, else a dressed one (drawn evenly, five in six would be dressed, and the
    model answered "Spell table." as if asked who it is: bench/results/levers.md)."""
    plain, dressed = plain_and_dressed()
    return rng.choice(plain if rng.random() < 0.5 else dressed)


def draw_letter(rng: random.Random, word: str) -> str:
    """Mostly a letter of the word, sometimes any letter (whose count may be 0)."""
    return rng.choice(word) if rng.random() < 0.8 else rng.choice(string.ascii_lowercase)


def walked_count(word: str, letter: str) -> str:
    """ "b 0, a 1, n 1, a 2, n 2, a 3" (a in banana): each letter with the count so far, so the answer is the
    last count, to copy, and each step compares one letter (`spelling:walk`)."""
    counts = itertools.accumulate(int(ch == letter) for ch in word)
    return ", ".join(f"{ch} {n}" for ch, n in zip(word, counts))


class SpellingTask(Task):
    name = "spelling"
    variants = ("walk",)

    def __init__(self, variant: str = ""):
        self.walk = variant == "walk"
        self.name = f"spelling:{variant}" if variant else "spelling"

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
            # The letters straight away: a small model that first copies the word's token into its reply
            # mostly writes another word and spells that one (bench/results/levers.md)
            answer = f"Letter by letter: {spell_out(word)}."
        else:
            letter = draw_letter(rng, word)
            positions = [str(i + 1) for i, ch in enumerate(word) if ch == letter]
            question = rng.choice(COUNT_TEMPLATES).format(letter=letter, word=word)
            where = f" (at position {', '.join(positions)})" if positions else ""
            times = f"{len(positions)} time{'' if len(positions) == 1 else 's'}"
            answer = f"Spelling it out: {spell_out(word)}. The letter {letter} appears {times}{where}."
            if self.walk:
                answer = (
                    f"Counting {letter}: {walked_count(word, letter)}. The letter {letter} appears {times}."
                )
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


@cache
def word_split(held: bool) -> tuple[str, ...]:
    """RL's words: the common ones twice over and ~2,000 of the long list; a fifth, by hash, held out."""
    common, listed = spelling_words()
    pool = (*common, *common, *listed[:: max(1, len(listed) // 2000)])
    return tuple(w for w in pool if (zlib.crc32(w.encode()) % 5 == 0) == held)


class LetterTask(CheckableTask):
    name = "spelling"

    def problem(self, index: int) -> Problem:
        rng = random.Random(f"letters-{index}")
        word = rng.choice(word_split(index >= HELD_OUT_START))
        if rng.random() < 0.3:
            question = rng.choice(spell_templates()).format(word=word)
            return Problem.ask(question, spell_out(word), kind="spell", word=word)
        letter = draw_letter(rng, word)
        question = rng.choice(COUNT_TEMPLATES).format(letter=letter, word=word)
        return Problem.ask(question, word.count(letter), kind="count", word=word, letter=letter)

    def reward(self, problem: Problem, reply: str) -> float:
        """1 for the right count ("appears N times", else the last number) or the word spelled out."""
        text = written_text(reply)
        if problem.data["kind"] == "spell":
            return float(spelled_in(problem.data["word"], text))
        count = stated_count(text)
        count = last_number(final_answer(reply)) if count is None else count
        return float(count == float(problem.answer))
