"""The gpu presets of `picochat run`: each training stage is launched with torchrun on every visible GPU,
as its command with the stage preset and the run's own settings as flags; without a GPU, a clear error."""

import subprocess
import sys

import pytest
import torch

from picochat import launch, pipeline
from picochat.cli import build_parser
from picochat.errors import UserError
from picochat.settings import PRETRAIN_PRESETS, RUN_PRESETS, SFT_PRESETS, SFTConfig, as_flags


def test_gpu_presets_name_real_stage_presets_sources_and_flags(tmp_path, monkeypatch):
    from picochat.data.sources import SOURCES

    for name in ("gpu", "gpu-d12"):
        preset = RUN_PRESETS[name]
        assert preset.stages in PRETRAIN_PRESETS and preset.stages in SFT_PRESETS and preset.torchrun
        assert preset.corpus in SOURCES and 0 < preset.shards < SOURCES[preset.corpus].origin.num_shards
    launched = []
    monkeypatch.setattr(pipeline, "torchrun", launched.append)
    monkeypatch.setattr(pipeline, "training_complete", lambda run_dir: None)
    pipeline.train("sft", "chat model", RUN_PRESETS["gpu"], base=tmp_path / "base", run_dir=tmp_path / "sft")
    ((command, *flags),) = launched
    assert command == "sft" and flags[:2] == ["--preset", "gpu-d20"]
    assert flags[2:] == as_flags(SFTConfig, dict(base=tmp_path / "base", run_dir=tmp_path / "sft"))
    parsed = build_parser().parse_args(launched[0])
    assert set(vars(parsed)) >= {"base", "run_dir"}  # every flag is one `picochat sft` reads


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
