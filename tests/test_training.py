"""The shared stage API: a new stage declares its config around TrainSettings and trains through train_stage."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from picochat.errors import UserError
from picochat.model import GPT, GPTConfig
from picochat.settings import (
    TrainSettings,
    add_flags,
    config_from_args,
    flat,
    resolve,
    setting,
    stage_settings,
)
from picochat.training import grad_accum_steps, start_stage, train_stage


@dataclass
class ToyConfig:
    """A third stage, declared the way docs/settings.md tells RL to declare its config."""

    train: TrainSettings = stage_settings(
        "toy", steps=4, seq_len=8, device_batch=2, batch_tokens=32, warmup_steps=0
    )
    reward_scale: float = setting(1.0, "multiplies the toy reward", above=0)


class CountingLoader:
    """Deterministic (inputs, targets) batches that resume from a position."""

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size, self.position = rank, world_size, 0

    def __iter__(self):
        return self

    def __next__(self):
        g = torch.Generator().manual_seed(self.position * self.world_size + self.rank)
        self.position += 1
        tokens = torch.randint(0, 32, (2, 9), generator=g)  # (B, T+1)
        return tokens[:, :-1], tokens[:, 1:]

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


def test_a_new_stage_gets_flags_validation_and_the_shared_loop(tmp_path):
    parser = argparse.ArgumentParser()
    add_flags(parser, ToyConfig)
    args = parser.parse_args(["--reward-scale", "2.5", "--run-dir", str(tmp_path / "toy"), "--dtype", "fp32"])
    config = config_from_args(args, ToyConfig)
    assert config.reward_scale == 2.5 and config.train.steps == 4 and flat(config)["seq_len"] == 8
    with pytest.raises(UserError, match="--reward-scale 0"):
        resolve(ToyConfig, [{"reward_scale": 0}])

    run = start_stage(config.train)
    assert run.grad_accum == 2  # 32 tokens per step = 2 rows × 8 tokens × 1 process × 2 micro-steps
    model = GPT(GPTConfig(vocab_size=32, seq_len=8, n_layer=1, n_head=2, n_kv_head=2, n_embd=16))

    def loss(model, batch):  # what RL would compute: a loss, and numbers to log with each step
        inputs, targets = batch
        return model(inputs, targets) * config.reward_scale, {"reward_mean": 0.5}

    result = train_stage(
        run, "toy", config, model, None, CountingLoader, loss=loss, evaluate=lambda m: {"score": 1.0}
    )
    assert result == {"step": 4, "score": 1.0}
    records = [
        json.loads(line)
        for line in (Path(config.train.run_dir) / "metrics.jsonl").read_text().split("\n")
        if line
    ]
    assert [r["reward_mean"] for r in records if "loss" in r] == [0.5] * 4
    meta = json.loads(next(Path(config.train.run_dir).glob("step_*/meta.json")).read_text())
    assert meta["config"]["reward_scale"] == 2.5 and meta["fingerprint"]["stage"] == "toy"
    assert sorted(meta["loaders"]) == ["0", "1"]  # one data stream per virtual rank


def test_grad_accum_steps_names_the_multiple_to_pick():
    assert grad_accum_steps(4096, 8, 128, 2) == 2
    with pytest.raises(UserError, match="pick a multiple of 2048"):
        grad_accum_steps(3000, 8, 128, 2)


@pytest.mark.parametrize("bf16_faster", [True, False])
def test_cpus_train_in_the_dtype_whose_matmuls_are_faster(monkeypatch, bf16_faster):
    """The bf16 flag alone does not pick bf16: the GEMM measured in each dtype does (an AVX512-BF16 VM ran
    bf16 at half fp32's speed). Muon's Newton–Schulz follows the same choice; an explicit --dtype wins."""
    from picochat import runtime
    from picochat.optim import newton_schulz_dtype

    speed = {torch.bfloat16: 2.0 if bf16_faster else 0.5, torch.float32: 1.0}
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(runtime, "peak_flops", lambda device, dtype: speed[dtype])
    cpu = torch.device("cpu")
    expected = torch.bfloat16 if bf16_faster else torch.float32
    assert runtime.compute_dtype(cpu) == expected == newton_schulz_dtype(cpu)
    assert runtime.compute_dtype(cpu, "bf16") == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)  # no native bf16: never measured
    monkeypatch.setattr(runtime, "peak_flops", lambda device, dtype: pytest.fail("measured without bf16"))
    assert runtime.compute_dtype(cpu) == torch.float32


def test_measured_cpu_peaks_are_kept_per_dtype_and_thread_count(monkeypatch, tmp_path):
    from picochat import runtime

    monkeypatch.setattr(runtime, "_CPU_PEAKS", {})
    first = runtime.peak_flops(torch.device("cpu"), torch.float32)
    saved = json.loads((tmp_path / "picochat_home" / "peak_flops.json").read_text())
    key = f"cpu-float32-{torch.get_num_threads()}"
    assert first > 1e8 and saved == {key: first}
    (tmp_path / "picochat_home" / "peak_flops.json").write_text(json.dumps({key: 123.0}))
    assert runtime.peak_flops(torch.device("cpu"), torch.float32) == first  # this process's figure first
    monkeypatch.setattr(runtime, "_CPU_PEAKS", {})
    assert runtime.peak_flops(torch.device("cpu"), torch.float32) == 123.0  # then the file, not a new timing
