"""The chat probe set: 50 held-out prompts for each skill SFT teaches, fixed so that runs compare
(docs/probes.md; tests/test_probe_set.py checks no training task can produce one).
"""

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
    """Every probe as (skill, question, expected): "picochat", the calculator's answer, or "t a b l e"."""
    return (
        [("identity", q, "picochat") for q in IDENTITY]
        + [("arithmetic", q, a) for q, a in ARITHMETIC]
        + [("spelling", q, s) for q, s in SPELLING]
        + [("spelling_unseen", q, s) for q, s in SPELLING_UNSEEN]
    )
