"""Chat probes: the probe set asked greedily, each skill with its pass rule (docs/probes.md)."""

import re
from dataclasses import dataclass

from picochat.engine import SamplingParams
from picochat.evaluation.probe_set import PASS_RULES, probe_messages, probe_set, scored_as
from picochat.tasks.letter_forms import spelled_in
from picochat.tools.calculator import Calculator

CALL = re.compile(r"<\|python_start\|>(.*?)<\|python_end\|>", re.S)


def calculator_values(reply: str) -> list[str]:
    calculator = Calculator()
    return [calculator.run(expression).output for expression in CALL.findall(reply)]


@dataclass
class ProbeResult:
    kind: str
    question: str
    expected: str
    reply: str

    @property
    def passed(self) -> bool:
        kind = scored_as(self.kind)
        if kind in PASS_RULES:
            return PASS_RULES[kind](self.expected, self.reply)
        if kind == "arithmetic":
            return self.expected in calculator_values(self.reply)
        if kind.startswith("spelling"):
            return spelled_in(self.expected.replace(" ", ""), self.reply)
        return self.expected.lower() in self.reply.lower()


def run_chat_probes(engine, max_tokens: int = 64, batch_size: int = 150) -> list[ProbeResult]:
    """Every probe, `batch_size` at a time: a small model's decode step costs little more for 150 rows."""
    probes = probe_set()
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    results = []
    for start in range(0, len(probes), batch_size):
        chunk = probes[start : start + batch_size]
        render = engine.tokenizer.render_for_completion
        replies = engine.generate([render(probe_messages(kind, q)) for kind, q, _ in chunk], params)
        results += [ProbeResult(kind, q, expected, r.text) for (kind, q, expected), r in zip(chunk, replies)]
    return results


def examples(results: list, per_kind: int = 3) -> list:
    """The first `per_kind` results of each skill: ProbeResults or their dicts as run.json records them."""
    seen: dict[str, int] = {}
    chosen = []
    for r in results:
        kind = r.kind if isinstance(r, ProbeResult) else r.get("kind", "")
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] <= per_kind:
            chosen.append(r)
    return chosen


def print_probes(results: list[ProbeResult], per_kind: int = 3) -> None:
    for p in examples(results, per_kind):
        print(f"  [{'pass' if p.passed else 'fail'}] {p.question!r} -> {p.reply[:100]!r}")
    print(f"chat probes: {summarize(results)} (50 held-out prompts each; second turns 10 a skill)")


def summarize(results: list[ProbeResult]) -> dict:
    """{skill: "passed/asked"}."""
    by_kind: dict[str, list[bool]] = {}
    for r in results:
        by_kind.setdefault(r.kind, []).append(r.passed)
    return {kind: f"{sum(v)}/{len(v)}" for kind, v in by_kind.items()}
