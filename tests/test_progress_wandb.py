"""wandb logging through a fake `wandb` module: the configuration is logged, and a resumed run continues
the same wandb run (its id kept in the run directory)."""

import sys
import types
from pathlib import Path

import pytest

from picochat.progress import WANDB_ID_FILE, MetricsLog


class FakeRun:
    def __init__(self, kwargs):
        self.kwargs, self.logged, self.finished = kwargs, [], False

    def log(self, numbers, step):
        self.logged.append((step, numbers))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    module = types.ModuleType("wandb")
    module.runs = []

    def init(**kwargs):
        module.runs.append(FakeRun(kwargs))
        return module.runs[-1]

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_config_is_logged_and_a_resumed_run_continues_the_same_wandb_run(fake_wandb, tmp_path):
    run_dir = tmp_path / "base"
    config = {"depth": 2, "corpus": Path("/data/x"), "steps": 40}
    log = MetricsLog(run_dir / "metrics.jsonl", wandb_project="picochat", config=config)
    log.write({"step": 1, "loss": 4.5, "mfu": 0.1, "note": "text is not sent"})
    log.close()
    first = fake_wandb.runs[0]
    assert first.kwargs["project"] == "picochat" and first.kwargs["resume"] == "allow"
    assert first.kwargs["config"] == {"depth": 2, "corpus": "/data/x", "steps": 40}
    assert first.logged == [(1, {"loss": 4.5, "mfu": 0.1})] and first.finished
    run_id = (run_dir / WANDB_ID_FILE).read_text()
    assert first.kwargs["id"] == run_id and run_id.isalnum()

    resumed = MetricsLog(run_dir / "metrics.jsonl", wandb_project="picochat", config=config)
    resumed.write({"step": 2, "loss": 4.0})
    assert fake_wandb.runs[1].kwargs["id"] == run_id  # the same wandb run

    MetricsLog(tmp_path / "other" / "metrics.jsonl", wandb_project="picochat")
    assert fake_wandb.runs[2].kwargs["id"] != run_id and fake_wandb.runs[2].kwargs["config"] is None


def test_without_wandb_installed_training_logs_on(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    log = MetricsLog(tmp_path / "metrics.jsonl", wandb_project="picochat")
    log.write({"step": 1, "loss": 1.0})
    assert log.wandb is None and "wandb is not installed" in capsys.readouterr().err
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1
