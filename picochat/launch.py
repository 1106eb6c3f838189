"""Launching a training command on every GPU of the machine, for `picochat run`'s GPU presets: only the
training stages are distributed, each a torchrun child that resumes from its last checkpoint when started
again (`settings.as_flags` writes its settings as flags); the rest runs once in `picochat run`'s process."""

from __future__ import annotations

import subprocess
import sys

import torch

from picochat.errors import UserError


def torchrun(command: list[str], processes: int = 0) -> None:
    """Run `picochat COMMAND ...` on every visible GPU (or in `processes` CPU processes, a rehearsal):
    torchrun --standalone --nproc_per_node=N."""
    gpus = processes or torch.cuda.device_count()
    if gpus == 0:
        raise UserError("this preset trains on CUDA GPUs and none is visible; use --preset cpu-demo on a CPU")
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    argv += ["-m", "picochat", *command]
    print("$ " + " ".join(argv), flush=True)
    if subprocess.run(argv).returncode:
        raise UserError(
            f"'picochat {command[0]}' failed in {gpus} processes; run the same command again to resume"
        )
