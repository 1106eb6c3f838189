"""Word lists as data: the words the tasks practise and the words evaluation holds out.

Both `picochat.tasks` and `picochat.evaluation` import this module and it imports neither, so the lists
that must stay apart (a probe's word is never a training word) are defined below both.

    common.txt          the 1,000 commonest words of 3-8 letters in the chitchat dataset's conversations,
                        commonest first (bench/common_words.py regenerates it); the spelling task's core
    practised.txt       hand-picked words the spelling task practises too (double letters, hard spellings)
    probe_spelling.txt  the probe set's 50 practised words (every 16th 4-7 letter common word)
    probe_unseen.txt    the probe set's 50 words no task ever spells
    suite_spelling.txt  the chat suite's spelling words, never practised either
    contractions.txt    apostrophe-less contractions ("dont"), kept out of the common words
"""

from __future__ import annotations

from importlib.resources import files


def read(name: str) -> tuple[str, ...]:
    """The words of `name`.txt beside this module, in file order."""
    return tuple(files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8").split())


COMMON_WORDS = read("common")
PRACTISED_WORDS = read("practised")
PROBE_SPELLING_WORDS = read("probe_spelling")
PROBE_UNSEEN_WORDS = read("probe_unseen")
SUITE_SPELLING_WORDS = read("suite_spelling")
CONTRACTIONS = frozenset(read("contractions"))
# the probe set's spelling questions: the spelling task composes its phrasings from other parts
PROBE_SPELLING_TEMPLATES = (
    "Spell {word}.",
    "Please spell {word}.",
    "How is {word} spelled?",
    "Spell out the word {word}.",
    "What is the spelling of {word}?",
)


def held_out_words() -> frozenset[str]:
    """Words no training task may spell: the probe set's unseen words and the chat suite's."""
    return frozenset(PROBE_UNSEEN_WORDS) | frozenset(SUITE_SPELLING_WORDS)
