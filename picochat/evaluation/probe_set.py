"""The chat probe set: 50 held-out prompts for each skill SFT teaches, written once and never trained on.

    identity     the reply names the model ("picochat"); no question here is one the identity task asks
                 (probe_identity.txt, one question a line)
    arithmetic   the reply calls the calculator with an expression worth the answer (the right operands);
                 none of the arithmetic task's phrasings, and a third of them use words for the operator
                 ("plus", "divided by") (probe_arithmetic.tsv: question, tab, answer)
    spelling     the reply spells the word letter by letter ("m-u-s-i-c"): 50 common words the spelling task
                 practises (a model cannot know the letters of a token it never saw spelled), asked in
                 phrasings it never uses (`wordlists.PROBE_SPELLING_WORDS`)
    spelling_unseen  the same, for 50 words no task spells (`wordlists.PROBE_UNSEEN_WORDS`): whether
                 spelling carries over to words never practised

The set is fixed: changing it would break every comparison recorded against it (docs/probes.md).
tests/test_probe_set.py checks that no probe can come out of a training task.
"""

from __future__ import annotations

from importlib.resources import files

from picochat.tasks.letter_forms import spell_out
from picochat.wordlists import PROBE_SPELLING_TEMPLATES, PROBE_SPELLING_WORDS, PROBE_UNSEEN_WORDS


def read_lines(name: str) -> list[str]:
    return files(__package__).joinpath(name).read_text(encoding="utf-8").splitlines()


IDENTITY = read_lines("probe_identity.txt")
ARITHMETIC = [tuple(line.split("\t")) for line in read_lines("probe_arithmetic.tsv")]  # (question, answer)


def spelling_probes(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """(question, the letters spelled out), the five phrasings in turn."""
    templates = PROBE_SPELLING_TEMPLATES
    return [(templates[i % len(templates)].format(word=w), spell_out(w)) for i, w in enumerate(words)]


SPELLING = spelling_probes(PROBE_SPELLING_WORDS)
SPELLING_UNSEEN = spelling_probes(PROBE_UNSEEN_WORDS)


def probe_set() -> list[tuple[str, str, str]]:
    """Every probe as (skill, question, expected): identity expects "picochat", arithmetic the answer the
    calculator must produce, spelling the letters spelled out ("t a b l e")."""
    return (
        [("identity", q, "picochat") for q in IDENTITY]
        + [("arithmetic", q, a) for q, a in ARITHMETIC]
        + [("spelling", q, s) for q, s in SPELLING]
        + [("spelling_unseen", q, s) for q, s in SPELLING_UNSEEN]
    )
