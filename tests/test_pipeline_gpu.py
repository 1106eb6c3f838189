"""The gpu presets of `picochat run`: each training stage is launched with torchrun on every visible GPU,
with the preset's settings as flags; without a GPU, a clear error."""

import argparse
import subprocess
import sys

import pytest
import torch

from picochat import launch, pipeline
from picochat.cli import build_parser
from picochat.errors import UserError
from picochat.settings import PRETRAIN_PRESETS as PRESETS


def flags_of(command: str) -> set[str]:
    """The option strings `picochat COMMAND` accepts, from the real command line."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {option for action in subparsers.choices[command]._actions for option in action.option_strings}


def test_gpu_presets_name_real_pretrain_presets_sources_and_flags():
    from picochat.data.sources import SOURCES

    for name in ("gpu", "gpu-d12"):
        preset = pipeline.RUN_PRESETS[name]
        assert preset.pretrain_preset in PRESETS and preset.torchrun
        assert (
            preset.shard_source in SOURCES
            and 0 < preset.shards < SOURCES[preset.shard_source].origin.num_shards
        )
        for flag in launch.as_flags(preset.sft)[::2]:
            assert flag in flags_of("sft"), flag
    assert {"--corpus", "--tokenizer", "--run-dir"} <= flags_of("pretrain")
    assert launch.as_flags({"seq_len": 2048, "steps": None, "time_budget_s": 90}) == [
        "--seq-len", "2048", "--time-budget", "90s"
    ]  # fmt: skip


def test_torchrun_launches_every_gpu_and_reports_a_failure(monkeypatch):
    launched = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(
        subprocess, "run", lambda argv: launched.append(argv) or subprocess.CompletedProcess(argv, 0)
    )
    launch.torchrun(["pretrain", "--preset", "gpu-d20"])
    assert launched == [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8",
                         "-m", "picochat", "pretrain", "--preset", "gpu-d20"]]  # fmt: skip
    monkeypatch.setattr(subprocess, "run", lambda argv: subprocess.CompletedProcess(argv, 1))
    with pytest.raises(UserError, match="run the same command again to resume"):
        launch.torchrun(["sft"])


def test_without_a_gpu_the_gpu_preset_says_what_to_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UserError, match="cpu-demo"):
        launch.torchrun(["pretrain"])
