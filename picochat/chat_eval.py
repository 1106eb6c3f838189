"""Chat probes: a handful of questions with checkable answers, asked of a chat model greedily.

They are smoke tests of what SFT taught (the model's identity, arithmetic through the calculator tool,
spelling), not benchmarks: each probe passes when the reply contains the expected text.
"""

from __future__ import annotations

from dataclasses import dataclass

PROBES = [
    ("identity", "Who are you?", "picochat"),
    ("identity", "What is your name?", "picochat"),
    ("arithmetic", "What is 123 + 456?", "579"),
    ("arithmetic", "Calculate 37 * 48.", "1776"),
    ("arithmetic", "What is 1000 - 1?", "999"),
    ("spelling", "Spell the word garden.", "g-a-r-d-e-n"),
    ("spelling", "How do you spell window?", "w-i-n-d-o-w"),
]


@dataclass
class ProbeResult:
    kind: str
    question: str
    expected: str
    reply: str

    @property
    def passed(self) -> bool:
        return self.expected.lower() in self.reply.lower()


def run_chat_probes(engine, max_tokens: int = 64) -> list[ProbeResult]:
    """Ask every probe (batched, greedy) and return the replies with pass/fail."""
    from picochat.engine import SamplingParams

    prompts = [engine.tokenizer.render_for_completion([{"role": "user", "content": q}]) for _, q, _ in PROBES]
    results = engine.generate(prompts, SamplingParams(max_tokens=max_tokens, temperature=0.0))
    return [ProbeResult(kind, q, expected, r.text) for (kind, q, expected), r in zip(PROBES, results)]


def summarize(results: list[ProbeResult]) -> dict:
    by_kind: dict[str, list[bool]] = {}
    for r in results:
        by_kind.setdefault(r.kind, []).append(r.passed)
    return {kind: f"{sum(v)}/{len(v)}" for kind, v in by_kind.items()}
