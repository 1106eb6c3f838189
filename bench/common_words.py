"""Regenerate picochat/wordlists/common.txt: the 1,000 commonest words people type in conversation.

They are the most frequent lowercase words of 3 to 8 letters in the chitchat dataset's 7,168 human
conversations (PyPI chitchat-dataset 0.9.0, MIT), kept when reasoning-gym's English word list has them
(so typos and slang drop out) and not an apostrophe-less contraction ("dont"); ties go alphabetically.
The list is stored as data so that training never depends on a download:

    python bench/common_words.py $PICOCHAT_HOME/data/sources/chitchat/root/chitchat_dataset/dataset.json \
        > picochat/wordlists/common.txt
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections import Counter
from pathlib import Path

from picochat.tasks.spelling import dictionary_words
from picochat.wordlists import CONTRACTIONS


def count_common_words(dataset: Path, dictionary: set[str], count: int = 1000) -> list[str]:
    """The `count` most frequent dictionary words of 3-8 letters in chitchat's dataset.json, commonest first."""
    raw = json.loads(Path(dataset).read_text(encoding="utf-8"))
    counts: Counter[str] = Counter()
    for key in sorted(raw):
        for turn in raw[key].get("messages", []):
            for message in turn:
                counts.update(w.lower() for w in re.findall(r"[A-Za-z]+", message.get("text", "")))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [w for w, _ in ranked if 3 <= len(w) <= 8 and w in dictionary and w not in CONTRACTIONS][:count]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print(
            "usage: python bench/common_words.py PATH/chitchat_dataset/dataset.json "
            "(fetched into $PICOCHAT_HOME/data/sources/chitchat by `picochat sft`)",
            file=sys.stderr,
        )
        return 2
    print(textwrap.fill(" ".join(count_common_words(Path(argv[0]), set(dictionary_words()))), 110))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
