"""Benchmark the optimizer step of a GPT: Newton–Schulz plain against on the Gram matrix (fp32).

    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_muon.py
    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_muon.py --depths 4 6 --threads 2

One `build_optimizer(model).step()` (Muon on the block matrices, AdamW on the embedding and head; eager,
as CPU training runs it) of `GPT.from_depth(depth)` with vocabulary 8192, on random gradients. Two ways,
alternated in one process: `gram`, picochat's own (`optim.orthogonalize` sends matrices at least twice as
wide as tall, in fp32, through `optim.gram_newton_schulz`), and `plain`, the same step with the Gram
iteration swapped for the plain one (X ← a X + (b A + c A²) X, A = X Xᵀ, five times). Reported: the median
step time of `--rounds` rounds after 2 warm-up rounds. Only meaningful where Newton–Schulz runs in fp32
(`optim.newton_schulz_dtype`: CPUs without fast bf16 matmuls); elsewhere both ways are the plain one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import picochat.optim as optim
from picochat.model import GPT, GPTConfig


def plain_newton_schulz(X: torch.Tensor, steps: int) -> torch.Tensor:
    """The iteration `gram_newton_schulz` replaces, for comparison."""
    a, b, c = optim.NEWTON_SCHULZ_COEFFS
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * (A @ A)) @ X
    return X


def time_steps(depth: int, rounds: int) -> dict[str, float]:
    """Median seconds of an optimizer step, each way."""
    model = GPT(GPTConfig.from_depth(depth, vocab_size=8192, seq_len=512))
    optimizer = optim.build_optimizer(model)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    ways = {"plain": plain_newton_schulz, "gram": optim.gram_newton_schulz}
    times: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for r in range(2 + rounds):
            for name, fn in ways.items():
                optim.gram_newton_schulz = fn  # orthogonalize looks the name up at each call
                start = time.perf_counter()
                optimizer.step()
                if r >= 2:
                    times[name].append(time.perf_counter() - start)
    finally:
        optim.gram_newton_schulz = ways["gram"]
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 6])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = optim.newton_schulz_dtype(torch.device("cpu"))
    print(f"torch {torch.__version__}, {args.threads} thread(s), Newton–Schulz in {dtype}")
    for depth in args.depths:
        t = time_steps(depth, args.rounds)
        print(f"depth {depth}: optimizer step plain {t['plain'] * 1e3:.0f} ms, Gram {t['gram'] * 1e3:.0f} ms, "
              f"{t['plain'] / t['gram']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
