"""Launching a training command on every GPU of the machine, for `picochat run`'s GPU presets.

    torchrun(["pretrain", "--preset", "gpu-d20"])
    # = python -m torch.distributed.run --standalone --nproc_per_node=<GPUs> -m picochat pretrain --preset gpu-d20

Only the training stages are distributed; `picochat run` does the rest (data, tokenizer, evaluation) once,
in its own process, and starts each training stage as a torchrun child that resumes from its last
checkpoint when started again. `settings.as_flags` writes a stage's settings as the child's flags.
"""

from __future__ import annotations

import subprocess
import sys

import torch

from picochat.errors import UserError


def torchrun(command: list[str]) -> None:
    """Run `picochat COMMAND ...` on every visible GPU: torchrun --standalone --nproc_per_node=N."""
    gpus = torch.cuda.device_count()
    if gpus == 0:
        raise UserError("this preset trains on CUDA GPUs and none is visible; use --preset cpu-demo on a CPU")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    argv = [*launcher, "-m", "picochat", *command]
    print("$ " + " ".join(argv), flush=True)
    if subprocess.run(argv).returncode:
        raise UserError(
            f"'picochat {command[0]}' failed on {gpus} GPUs; run the same command again to resume"
        )
