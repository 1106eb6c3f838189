"""The gpu presets of `picochat run`: each training stage is launched with torchrun on every visible GPU,
as its command with the stage preset and the run's own settings as flags; without a GPU, a clear error."""

import subprocess
import sys
import threading

import pytest
import torch

from picochat import launch, pipeline
from picochat.checkpoint import latest_checkpoint, read_meta
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
    monkeypatch.setattr(pipeline, "torchrun", lambda command, processes: launched.append(command))
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


@pytest.mark.slow
def test_the_gpu_rehearsal_runs_every_gpu_stage_through_torchrun_against_a_stand_in_hub(
    tmp_path, monkeypatch
):
    """`picochat run --preset gpu-rehearsal`: the gpu presets' stages in their order, the training ones as
    torchrun with two CPU processes, the shards from a local stand-in for the Hub (HF_ENDPOINT)."""
    from picochat.data.corpus import write_synthetic_corpus
    from picochat.data.sources import SOURCES
    from tests.test_data_hub import COMMIT_A, FakeHub

    shard_set = SOURCES[RUN_PRESETS["gpu-rehearsal"].corpus].origin
    hub = FakeHub()
    hub.repo = shard_set.repo
    synthetic = write_synthetic_corpus(tmp_path / "synthetic", n_docs=300, seed=1)
    shards = [p.read_bytes() for p in sorted((synthetic / "train").glob("*.parquet"))]
    for index in (0, 1, shard_set.val_index):
        hub.files[COMMIT_A][shard_set.filename(index)] = shards[index % len(shards)]
    threading.Thread(target=hub.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    home = tmp_path / "home"
    for name, value in dict(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", PICOCHAT_HOME=str(home)).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def offline(names):  # the benchmark packages come from PyPI and Debian, which a test does not reach
        raise UserError("offline")

    monkeypatch.setattr(pipeline, "fetch_benchmarks", offline)
    try:
        summary = pipeline.run_pipeline("gpu-rehearsal")
    finally:
        hub.shutdown()
        hub.server_close()
    gpu = RUN_PRESETS["gpu"]
    stages = ["data", "tokenizer", "pretrain", "sft", "evaluate"] + ["benchmarks"] * bool(
        gpu.benchmark_problems
    )
    assert list(summary["stage_seconds"]) == stages
    assert summary["base_steps"] == 4 and summary["benchmarks"] == {"skipped": "offline"}
    for run in ("base", "sft"):
        meta = read_meta(latest_checkpoint(home / "checkpoints" / run))
        assert meta.fingerprint["world_size"] == 2  # trained by the two torchrun processes
    assert any(path.endswith("/" + shard_set.filename(shard_set.val_index)) for path, _, _ in hub.gets)
    corpus = home / "data" / RUN_PRESETS["gpu-rehearsal"].corpus
    assert len(list((corpus / "train").glob("*.parquet"))) == 2 and len(list((corpus / "val").glob("*"))) == 1
