"""`picochat pretrain --plan`: the memory of a training step estimated on fake tensors (MemTracker) against
the peak of the same step on real tensors, tallied by a second, independent tracker written here."""

import re
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from picochat import plan, settings
from picochat.cli import main
from picochat.errors import UserError
from picochat.model import GPT, GPTConfig
from picochat.optim import build_optimizer
from picochat.pretrain import preset_config


class LiveBytes(TorchDispatchMode):
    """Every storage an op returns counts from its creation until it is freed; `peak` is the largest sum."""

    def __init__(self, *tensors):
        super().__init__()
        self.live, self.now, self.peak = {}, 0, 0
        for t in tensors:
            self.add(t)

    def add(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key in self.live or not storage.nbytes():
            return
        self.live[key] = storage.nbytes()
        self.now += storage.nbytes()
        self.peak = max(self.peak, self.now)
        weakref.finalize(storage, self.free, key)

    def free(self, key: int) -> None:
        self.now -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.add(t)
        return out


def measured_peak(config: GPTConfig, device_batch: int, dtype) -> int:
    """The peak bytes of the second real training step (the first creates the optimizer state)."""
    torch.manual_seed(0)
    model = GPT(config)
    lrs = dict(embedding_lr=0.2, head_lr=0.004, matrix_lr=0.02, weight_decay=0.0)
    optimizer = build_optimizer(model, tokens_per_step=None, compile=False, **lrs)
    rows = torch.randint(0, config.vocab_size, (device_batch, config.seq_len))
    plan.training_step(model, optimizer, rows, dtype)
    state = [
        t for o in optimizer.optimizers for s in o.state.values() for t in s.values() if torch.is_tensor(t)
    ]
    with LiveBytes(*model.parameters(), *model.buffers(), *state, rows) as tracker:
        plan.training_step(model, optimizer, rows, dtype)
    return tracker.peak


@pytest.mark.slow
@pytest.mark.parametrize(
    "depth, device_batch, seq_len, vocab, dtype",
    [(2, 8, 64, 512, torch.float32), (1, 2, 32, 256, torch.bfloat16)],
)
def test_the_fake_step_estimates_the_real_peak_within_15_percent(depth, device_batch, seq_len, vocab, dtype):
    config = GPTConfig.from_depth(depth, vocab_size=vocab, seq_len=seq_len)
    estimate = plan.step_memory(config, device_batch, dtype)
    assert abs(estimate["total"] - measured_peak(config, device_batch, dtype)) <= 0.15 * estimate["total"]
    weights = sum(p.numel() * 4 for p in GPT(config).parameters())
    assert estimate["weights"] == weights
    assert sum(v for k, v in estimate.items() if k != "total") == estimate["total"]


@pytest.mark.slow
def test_a_plan_that_does_not_fit_names_the_largest_device_batch_that_does(monkeypatch):
    config = preset_config("cpu-tiny", seq_len=32, batch_tokens=256)  # 8 rows of 32 tokens a step
    model_config = GPTConfig.from_depth(2, vocab_size=256, seq_len=32)
    at_8 = plan.step_memory(model_config, 8)["total"]
    monkeypatch.setitem(settings.GPUS, "tiny", settings.GPU(0.8 * at_8, 1e12))
    with pytest.raises(UserError, match=r"does not fit tiny.*--device-batch 4 fits") as refused:
        plan.plan_pretraining(config, 256, "tiny", 1)
    assert "activations" in str(refused.value) and "weights" in str(refused.value)
    (fits,) = re.findall(r"--device-batch 4 fits \(([0-9.]+) GiB\)", str(refused.value))
    assert float(fits) <= 0.8 * at_8 / 2**30 + 0.05
    monkeypatch.setitem(settings.GPUS, "tiny", settings.GPU(at_8 * 1.01, 1e12))
    text = plan.plan_pretraining(config, 256, "tiny", 1)
    assert "in 40 steps" in text and "training FLOPs" in text


def test_pretrain_and_run_print_a_plan(capsys):
    flags = ["--seq-len", "32", "--batch-tokens", "256", "--plan", "--gpu", "a100", "--gpus", "1"]
    assert main(["pretrain", "--preset", "cpu-tiny", *flags]) == 0
    out = capsys.readouterr().out
    model = GPT(GPTConfig.from_depth(2, vocab_size=65536, seq_len=32))  # no tokenizer yet: the GPU vocab
    flops = model.flops_per_token() * 256 * 40
    assert f"training FLOPs {flops:.2e}" in out and "optimizer state" in out
    seconds = flops / (0.4 * settings.GPUS["a100"].peak_flops)
    assert f"{seconds / 60:.0f} min at 40%" in out
    assert main(["run", "--preset", "cpu-tiny", "--plan", "--gpus", "0"]) == 2
