"""Plot a training run's loss and validation bits per byte from its metrics.jsonl.

    .venv/bin/python bench/plot_training.py ~/.cache/picochat/checkpoints/base --out bench/results/cpu_demo_pretrain.png

Needs matplotlib (`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    steps, evals = [], []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        (steps if "loss" in record else evals).append(record)
    return steps, evals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default=None)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, evals = read_metrics(args.run_dir)
    fig, (ax_loss, ax_bpb) = plt.subplots(1, 2, figsize=(11, 4))
    tokens = [r["tokens"] / 1e6 for r in steps]
    ax_loss.plot(tokens, [r["loss"] for r in steps], lw=0.8)
    ax_loss.set_xlabel("training tokens (millions)")
    ax_loss.set_ylabel("training loss (nats/token)")
    ax_loss.grid(alpha=0.3)
    tokens_per_step = steps[0]["tokens"] / steps[0]["step"] if steps else 1
    ax_bpb.plot([r["step"] * tokens_per_step / 1e6 for r in evals], [r["val_bpb"] for r in evals], "o-")
    ax_bpb.set_xlabel("training tokens (millions)")
    ax_bpb.set_ylabel("validation bits per byte")
    ax_bpb.grid(alpha=0.3)
    fig.suptitle(args.title or str(args.run_dir))
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
