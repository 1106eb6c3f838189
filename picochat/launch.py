"""Launching a training command on every GPU of the machine, for `picochat run`'s GPU presets.

    torchrun(["pretrain", "--preset", "gpu-d20"])
    # = python -m torch.distributed.run --standalone --nproc_per_node=<GPUs> -m picochat pretrain --preset gpu-d20

Only the training stages are distributed; `picochat run` does the rest (data, tokenizer, evaluation) once,
in its own process, and starts each training stage as a torchrun child that resumes from its last
checkpoint when started again.
"""

from __future__ import annotations

import subprocess
import sys

from picochat.errors import UserError


def torchrun(command: list[str]) -> None:
    """Run `picochat COMMAND ...` on every visible GPU: torchrun --standalone --nproc_per_node=N."""
    import torch

    gpus = torch.cuda.device_count()
    if gpus == 0:
        raise UserError("this preset trains on CUDA GPUs and none is visible; use --preset cpu-demo on a CPU")
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
            "-m", "picochat", *command]  # fmt: skip
    print("$ " + " ".join(argv), flush=True)
    if subprocess.run(argv).returncode:
        raise UserError(
            f"'picochat {command[0]}' failed on {gpus} GPUs; run the same command again to resume"
        )


def as_flags(overrides: dict) -> list[str]:
    """{"seq_len": 2048} -> ["--seq-len", "2048"]: a preset's stage settings as command-line flags."""
    out = []
    for key, value in overrides.items():
        if key == "time_budget_s" and value is not None:
            out += ["--time-budget", f"{value}s"]
        elif value is not None:
            out += ["--" + key.replace("_", "-"), str(value)]
    return out
