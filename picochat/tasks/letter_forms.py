"""How spelling replies are written and read, shared by the SFT task, RL's checker, the probes and the chat
suite: letters separated by spaces, and a letter count stated as "appears N times"."""

import re

APPEARS = re.compile(r"appears\s+(\d+)\s+time")  # the count in the SFT task's wording


def stated_count(text: str) -> int | None:
    """The count stated as "appears 3 times (at position 3, 8, 9)": 3, not a position; else None."""
    stated = APPEARS.findall(text)
    return int(stated[-1]) if stated else None


def spell_out(word: str) -> str:
    """ "table" -> "t a b l e": each letter with its space is one token (" t") wherever it stands; hyphens
    would not be ("t-a-b-l-e" tokenizes as "t", "-", "a", "-b", "-l", "-", "e")."""
    return " ".join(word)


def spelled_in(word: str, text: str) -> bool:
    """Whether `text` spells `word` letter by letter, the letters separated by spaces or by hyphens, in any
    case, and not as part of a longer spelling ("t a b l e s" does not spell "table")."""
    letters = [re.escape(ch) for ch in word.lower()]
    single_before = r"(?<!(?<![a-z])[a-z] )"  # not after a lone letter and a space
    spaced = single_before + r"(?<![a-z])" + " ".join(letters) + r"(?![a-z])(?! [a-z](?![a-z]))"
    hyphened = r"(?<![a-z]-)(?<![a-z])" + "-".join(letters) + r"(?![a-z])(?!-[a-z])"
    return any(re.search(pattern, text.lower()) for pattern in (spaced, hyphened))
