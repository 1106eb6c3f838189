"""Benchmark a decode step's matrix products alone: compiled, frozen, and frozen through inductor's GEMM template.

    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_decode_products.py
    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_decode_products.py --depth 4 --rows 1 8 32

The products of one decode step of a GPT of the given depth (per layer q, k, v, o, fc1, fc2; then the LM
head, vocab 8192), chained with residual adds and ReLU² so that none can be skipped, on `rows` rows in
fp32. Each way runs in a fresh process (inductor's settings are global): `compiled` (torch.compile, the
library's GEMM), `frozen` (inductor `freezing`: the weights become constants), `frozen+cpp` (freezing
and `max_autotune_gemm` with the CPP backend, inductor's own packed GEMM kernels: what
`DecodeSlots(freeze=True)` uses). Reported: the median of `--rounds` rounds of 20 calls, ms per call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

WAYS = ("compiled", "frozen", "frozen+cpp")


class Products(torch.nn.Module):
    """The weights of a decode step, applied to a few rows: (R, C) -> (R, vocab)."""

    def __init__(self, width: int, layers: int, vocab: int = 8192):
        super().__init__()

        def linear(n_in: int, n_out: int) -> torch.nn.Linear:
            return torch.nn.Linear(n_in, n_out, bias=False)

        self.layers = torch.nn.ModuleList(
            torch.nn.ModuleList(
                [linear(width, width) for _ in range(4)]
                + [linear(width, 4 * width), linear(4 * width, width)]
            )
            for _ in range(layers)
        )
        self.head = linear(width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for q, k, v, o, fc1, fc2 in self.layers:
            x = x + o(q(x) + k(x) + v(x))  # (R, C)
            x = x + fc2(torch.relu(fc1(x)).square())  # (R, C)
        return self.head(x)  # (R, V)


def time_one_way(way: str, depth: int, rows: int, rounds: int) -> float:
    """Compile the products one way and return the median ms per call."""
    import torch._inductor.config as inductor

    torch.set_num_threads(1)
    torch.manual_seed(0)
    width = 64 * depth
    model = Products(width, depth).eval()
    x = torch.randn(rows, width)
    if way != "compiled":
        inductor.freezing = True  # read when dynamo traces, so set before the first call
    if way == "frozen+cpp":
        inductor.max_autotune_gemm, inductor.max_autotune_gemm_backends = True, "CPP"
    step = torch.compile(model)
    times = []
    with torch.no_grad():
        for _ in range(3):  # compiles
            step(x)
        for _ in range(rounds):
            began = time.perf_counter()
            for _ in range(20):
                step(x)
            times.append((time.perf_counter() - began) / 20)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=6, help="width 64 × depth, as GPTConfig.from_depth")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--one", nargs=2, metavar=("WAY", "ROWS"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        way, rows = args.one[0], int(args.one[1])
        print(json.dumps(time_one_way(way, args.depth, rows, args.rounds)))
        return

    print(f"depth {args.depth} (width {64 * args.depth}), fp32, 1 thread, torch {torch.__version__}; "
          f"ms per call, median of {args.rounds} rounds of 20")  # fmt: skip
    print("| rows | " + " | ".join(WAYS) + " |")
    print("|---" * (len(WAYS) + 1) + "|")
    for rows in args.rows:
        cells = []
        for way in WAYS:
            child = [sys.executable, __file__, "--depth", str(args.depth), "--rounds", str(args.rounds)]
            out = subprocess.run(
                child + ["--one", way, str(rows)], capture_output=True, text=True, check=True
            )
            cells.append(f"{json.loads(out.stdout.strip().splitlines()[-1]):.2f}")
        print(f"| {rows} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
