"""Contamination check: a benchmark problem is contaminated when one of its 13-word n-grams (lower-cased
[a-z0-9]+ words, from every text field) occurs in a sampled SFT conversation (the GPT-3 paper's test).
"""

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from picochat.errors import UserError
from picochat.tasks import parse_mixture

N = 13
_WORD = re.compile(r"[a-z0-9]+")


def ngrams(text: str, n: int = N) -> Iterator[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    for i in range(len(words) - n + 1):
        yield tuple(words[i : i + n])


def texts_of(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (dict, list, tuple)):
        for v in value.values() if isinstance(value, dict) else value:
            yield from texts_of(v)


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
    examples, sources = [], {}
    for problem in problems:
        grams = (g for text in texts_of(problem) for g in ngrams(text, n))
        shared = next((g for g in grams if hash(g) in reference), None)
        if shared is not None:
            source = reference[hash(shared)]
            sources[source] = sources.get(source, 0) + 1
            if len(examples) < 3:
                examples.append(f"{' '.join(shared)} [{source}]")
    return Overlap(task, len(problems), sum(sources.values()), examples, sources)


def mixture_documents(mixture_spec: str, conversations: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    mixture = parse_mixture(mixture_spec, seed=seed)
    for i in range(conversations):
        name, messages = mixture.conversation(i)
        yield name, "\n".join(texts_of(messages))


def check_contamination(
    documents: Iterable[str | tuple[str, str]], tasks: dict[str, list[dict]], threshold=0.01, n=N
) -> list[Overlap]:
    """Overlap per task with the documents (texts, or (source, text)); ContaminationError over `threshold`."""
    reference: dict[int, str] = {}  # the hash of each n-gram (small; collisions negligible) -> first source
    for document in documents:
        source, text = document if isinstance(document, tuple) else ("sft", document)
        for g in ngrams(text, n):
            reference.setdefault(hash(g), source)
    found = [overlap(name, problems, reference, n) for name, problems in tasks.items()]
    bad = [o for o in found if o.fraction > threshold]
    if bad:
        details = "; ".join(
            f"{o.task}: {o.contaminated}/{o.problems} from {', '.join(o.sources)} (e.g. '{o.examples[0]}')"
            for o in bad
        )
        message = f"SFT data overlaps the benchmarks above {threshold:.1%} ({n}-grams): {details}"
        raise ContaminationError(found, f"{message}. Remove those conversations from the SFT mixture")
    return found


class ContaminationError(UserError):
    def __init__(self, overlaps: list[Overlap], message: str):
        super().__init__(message)
        self.overlaps = overlaps
