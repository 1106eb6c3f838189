"""Benchmark the optimizer step of a GPT: Newton–Schulz plain, on the Gram matrix, and with fewer
iterations of tuned quintics (fp32).

    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_muon.py
    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_muon.py --depths 4 6 --threads 2

One `build_optimizer(model).step()` (Muon on the block matrices, AdamW on the embedding and head; eager,
as CPU training runs it) of `GPT.from_depth(depth)` with vocabulary 8192, on random gradients. Three ways,
alternated in one process:
- `plain5`: the plain iteration (X ← a X + (b A + c A²) X, A = X Xᵀ) five times with the one quintic
  (3.4445, −4.7750, 2.0315), as picochat first did it;
- `gram5`: the same five quintics, matrices at least twice as wide as tall iterating on their Gram matrix
  (`optim.gram_newton_schulz`);
- `gram4`: picochat's step now, the Gram iteration with the four quintics of `optim.NEWTON_SCHULZ_COEFFS`.
Reported: the median step time of `--rounds` rounds after 2 warm-up rounds. Only meaningful where
Newton–Schulz runs in fp32 (`optim.newton_schulz_dtype`: CPUs without fast bf16 matmuls); elsewhere
every way runs the plain iteration and only the count of iterations differs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import picochat.optim as optim
from picochat.model import GPT, GPTConfig
from picochat.settings import TrainSettings
from picochat.training import stage_optimizer

CONSTANT_QUINTIC = ((3.4445, -4.7750, 2.0315),) * 5


def plain_newton_schulz(X: torch.Tensor, coefficients) -> torch.Tensor:
    """The iteration `gram_newton_schulz` replaces, for comparison."""
    for a, b, c in coefficients:
        A = X @ X.mT
        X = a * X + (b * A + c * (A @ A)) @ X
    return X


def time_steps(depth: int, rounds: int) -> dict[str, float]:
    """Median seconds of an optimizer step, each way."""
    model = GPT(GPTConfig.from_depth(depth, vocab_size=8192, seq_len=512))
    optimizer = stage_optimizer(TrainSettings(), model)
    muon = next(o for o in optimizer.optimizers if isinstance(o, optim.Muon))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    gram = optim.gram_newton_schulz
    ways = {
        "plain5": (plain_newton_schulz, CONSTANT_QUINTIC),
        "gram5": (gram, CONSTANT_QUINTIC),
        "gram4": (gram, optim.NEWTON_SCHULZ_COEFFS),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for r in range(2 + rounds):
            for name, (iteration, coefficients) in ways.items():
                optim.gram_newton_schulz = iteration  # orthogonalize looks the name up at each call
                muon.ns_coefficients = coefficients
                start = time.perf_counter()
                optimizer.step()
                if r >= 2:
                    times[name].append(time.perf_counter() - start)
    finally:
        optim.gram_newton_schulz = gram
        muon.ns_coefficients = optim.NEWTON_SCHULZ_COEFFS
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
        print(f"depth {depth}: optimizer step plain5 {t['plain5'] * 1e3:.0f} ms, gram5 {t['gram5'] * 1e3:.0f} ms, "
              f"gram4 {t['gram4'] * 1e3:.0f} ms; plain5/gram4 {t['plain5'] / t['gram4']:.2f}x, "
              f"gram5/gram4 {t['gram5'] / t['gram4']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
