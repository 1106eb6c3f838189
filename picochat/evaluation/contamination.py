"""Contamination check: do the SFT conversations contain text from the benchmarks?

    picochat eval contamination                          # the default SFT mixture, 5,000 conversations
    picochat eval contamination --mixture identity:1,jsonl:my.jsonl:2 --conversations 20000

Text is lower-cased and split into words ([a-z0-9]+). A benchmark problem counts as contaminated when one
of its 13-word n-grams (question, choices, solution, code: every text field) also occurs in a sampled SFT
conversation: the test used by the GPT-3 paper. Problems shorter than 13 words cannot be flagged this way.
The check fails (non-zero exit) when any task's contaminated fraction is above `threshold` (default 1%).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from picochat.errors import UserError

N = 13
_WORD = re.compile(r"[a-z0-9]+")


def ngrams(text: str, n: int = N) -> Iterator[tuple[str, ...]]:
    """The word n-grams of a text (lower-cased)."""
    words = _WORD.findall(text.lower())
    for i in range(len(words) - n + 1):
        yield tuple(words[i : i + n])


def texts_of(value) -> Iterator[str]:
    """Every string inside a record (dicts, lists, message parts)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from texts_of(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from texts_of(v)


def ngram_index(documents: Iterable[str | tuple[str, str]], n: int = N) -> dict[int, str]:
    """The hash of every n-gram of the documents -> the name of the first source it came from.

    A document is a text, or (source name, text). Hashes keep the index small; collisions are negligible.
    """
    index: dict[int, str] = {}
    for doc in documents:
        source, text = doc if isinstance(doc, tuple) else ("sft", doc)
        for g in ngrams(text, n):
            index.setdefault(hash(g), source)
    return index


@dataclass
class Overlap:
    task: str
    problems: int
    contaminated: int
    examples: list[str]  # shared n-grams, with the SFT source they came from
    sources: dict[str, int] = field(default_factory=dict)  # SFT source -> problems it overlaps

    @property
    def fraction(self) -> float:
        return self.contaminated / self.problems if self.problems else 0.0


def overlap(task: str, problems: list[dict], reference: dict[int, str], n: int = N) -> Overlap:
    """How many problems share an n-gram with the reference index."""
    hit, examples, sources = 0, [], {}
    for problem in problems:
        grams = (g for text in texts_of(problem) for g in ngrams(text, n))
        shared = next((g for g in grams if hash(g) in reference), None)
        if shared is not None:
            hit += 1
            source = reference[hash(shared)]
            sources[source] = sources.get(source, 0) + 1
            if len(examples) < 3:
                examples.append(f"{' '.join(shared)} [{source}]")
    return Overlap(task, len(problems), hit, examples, sources)


def mixture_documents(mixture_spec: str, conversations: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """(task name, text) of the first `conversations` conversations of an SFT mixture."""
    from picochat.tasks import parse_mixture

    mixture = parse_mixture(mixture_spec, seed=seed)
    for i in range(conversations):
        name, messages = mixture.conversation(i)
        yield name, "\n".join(texts_of(messages))


def check_contamination(
    documents: Iterable[str | tuple[str, str]],
    tasks: dict[str, list[dict]],
    threshold: float = 0.01,
    n: int = N,
) -> list[Overlap]:
    """Overlap per task; raises UserError naming the tasks above `threshold`."""
    reference = ngram_index(documents, n)
    found = [overlap(name, problems, reference, n) for name, problems in tasks.items()]
    bad = [o for o in found if o.fraction > threshold]
    if bad:
        details = "; ".join(
            f"{o.task}: {o.contaminated}/{o.problems} from {', '.join(o.sources)} (e.g. '{o.examples[0]}')"
            for o in bad
        )
        raise ContaminationError(found, f"SFT data overlaps the benchmarks above {threshold:.1%} ({n}-grams): "
                                 f"{details}. Remove those conversations from the SFT mixture")  # fmt: skip
    return found


class ContaminationError(UserError):
    """Raised when benchmark text appears in the training data above the threshold."""

    def __init__(self, overlaps: list[Overlap], message: str):
        super().__init__(message)
        self.overlaps = overlaps
