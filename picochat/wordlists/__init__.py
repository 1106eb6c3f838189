"""Word lists as data (the .txt files beside this module): what the tasks practise, what evaluation holds out.
`picochat.tasks` and `picochat.evaluation` both import this module: the lists that must stay apart live here.
"""

from importlib.resources import files


def read(name: str, lines: bool = False) -> tuple[str, ...]:
    text = files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines() if lines else text.split())


# the 1,000 commonest 3-8 letter words in chitchat's conversations, commonest first (bench/common_words.py)
COMMON_WORDS = read("common")
PRACTISED_WORDS = read("practised")  # hand-picked words the spelling task practises too (hard spellings)
PROBE_SPELLING_WORDS = read("probe_spelling")  # the probe set's 50 practised words (every 16th 4-7 letters)
PROBE_UNSEEN_WORDS = read("probe_unseen")  # the probe set's 50 words no task ever spells
SUITE_SPELLING_WORDS = read("suite_spelling")  # the chat suite's spelling words, never practised either
CONTRACTIONS = frozenset(read("contractions"))  # "dont", "isnt": kept out of the common words
PROBE_SPELLING_TEMPLATES = read("probe_spelling_templates", lines=True)  # no task asks these phrasings


def held_out_words() -> frozenset[str]:
    """Words no training task may spell: the probe set's unseen words and the chat suite's."""
    return frozenset(PROBE_UNSEEN_WORDS) | frozenset(SUITE_SPELLING_WORDS)
