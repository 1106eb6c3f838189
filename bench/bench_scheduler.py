"""Benchmark the server's scheduler in process: the compiled decode step against the same with frozen weights.

    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_scheduler.py --slots 8
    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_scheduler.py --slots 32 --rounds 5

The random-weight cpu-demo-sized GPT of bench_serve.py (depth 4, vocab 4096, special tokens never picked) is
decoded by two `Scheduler`s, no HTTP in between: one whose slots compile the decode step
(`Engine(compile=True)`) and one that also freezes the weights into it (`freeze=True`, what `picochat
serve` does on a CPU). Both are warmed up (the compile time is printed), then take turns: in every round
each gets as many requests as it has slots, all at once, a 21-token prompt and `--max-tokens` greedy
tokens each. Reported: the median over rounds of generated tokens per second of wall time and per second
of this process's CPU time, and frozen ÷ compiled.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_serve import random_gpt, train_tokenizer  # noqa: E402

from picochat.engine import Engine, SamplingParams  # noqa: E402
from picochat.model import GPTConfig  # noqa: E402
from picochat.serve.scheduler import Finished, Scheduler  # noqa: E402
from picochat.tokenizer.vocab import SPECIAL_TOKENS  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve_round(scheduler: Scheduler, prompts: list[list[int]], max_tokens: int) -> tuple[int, float, float]:
    """Submit every prompt at once and wait for all; return (completion tokens, wall s, CPU s)."""
    finished = threading.Semaphore(0)
    tokens = [0]

    def sink(event) -> None:  # called on the scheduler's thread
        if isinstance(event, Finished):
            tokens[0] += event.completion_tokens
            finished.release()

    wall, cpu = time.perf_counter(), cpu_seconds()
    for prompt in prompts:
        scheduler.submit(prompt, SamplingParams(max_tokens=max_tokens, temperature=0), 1, sink)
    for _ in prompts:
        finished.acquire()
    return tokens[0], time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=8, help="slots of each scheduler, and requests a round")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tok = train_tokenizer(4096)
    config = GPTConfig.from_depth(4, vocab_size=4096, seq_len=256)
    model = random_gpt(config, [tok.special_id(name) for name in SPECIAL_TOKENS])
    g = torch.Generator().manual_seed(0)
    prompts = [
        [tok.bos_id, *torch.randint(300, 4000, (20,), generator=g).tolist()] for _ in range(args.slots)
    ]
    schedulers = {}
    for name, freeze in (("compiled", False), ("frozen", True)):
        engine = Engine(model, tok, tool=None, dtype="fp32", compile=True, freeze=freeze)
        schedulers[name] = Scheduler(engine, num_slots=args.slots, context=256).start()
        began = time.perf_counter()
        serve_round(schedulers[name], prompts[:2], 8)  # compiles the step
        print(f"{name}: warm-up (compiling) {time.perf_counter() - began:.1f} s", flush=True)
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in schedulers}
    try:
        for _ in range(args.rounds):
            for name, scheduler in schedulers.items():
                tokens, wall, cpu = serve_round(scheduler, prompts, args.max_tokens)
                rates[name].append((tokens / wall, tokens / max(cpu, 1e-9)))
    finally:
        for scheduler in schedulers.values():
            scheduler.stop()

    print(
        f"depth 4, vocab 4096, random weights, fp32, {args.threads} torch threads, torch {torch.__version__}; "
        f"{args.slots} slots and requests a round, {args.max_tokens} greedy tokens each; "
        f"median of {args.rounds} rounds"
    )
    print("| decode step | tokens/s | tokens per CPU s |")
    print("|---|---|---|")
    medians = {}
    for name, values in rates.items():
        medians[name] = statistics.median(r for r, _ in values), statistics.median(c for _, c in values)
        print(f"| {name} | {medians[name][0]:.0f} | {medians[name][1]:.0f} |")
    ratio = medians["frozen"][0] / medians["compiled"][0]
    print(f"frozen ÷ compiled: {ratio:.2f}× tokens/s")


if __name__ == "__main__":
    main()
