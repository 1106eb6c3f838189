"""`picochat eval base|chat` end to end on a tiny checkpoint and fixture tasks: the report follows the
contract, torchrun with two processes gives the same numbers as one process, and --compile / --no-compile
reach the chat suite's engines."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from picochat.checkpoint import CheckpointMeta, save_checkpoint
from picochat.evaluation.benchmarks import write_task
from picochat.model import GPT, GPTConfig
from picochat.tokenizer import Tokenizer

WORDS = "cat dog sea sky mat river blue green red warm cold park book tree sun moon rain fish bird".split()


def fixture_tasks(seed: int = 0) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    arc, wino, lamb = [], [], []
    for i in range(24):
        a, b, c, d = rng.sample(WORDS, 4)
        arc.append(
            {
                "id": str(i),
                "query": f"Question: Which word goes with the {a}?\nAnswer:",
                "choices": [b, c, d],
                "answer": i % 3,
                "question": f"Which word goes with the {a}?",
            }
        )
        wino.append(
            {
                "id": str(i),
                "query": f"The {a} saw the {b} so _ ran to the {c}.",
                "choices": [a, b],
                "answer": i % 2,
            }
        )
        lamb.append(
            {
                "id": str(i),
                "query": f"The {a} and the {b} went to the {c} by the",
                "choices": [d],
                "answer": 0,
            }
        )
    return {"arc_easy": arc, "winogrande": wino, "lambada": lamb}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("eval_home")
    for name, problems in fixture_tasks().items():
        write_task(home / "eval" / "tasks" / f"{name}.jsonl", problems)
    text = " ".join(" ".join(p["query"] for p in ps) for ps in fixture_tasks().values())
    tokenizer = Tokenizer.train([text * 3], vocab_size=300)
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=tokenizer.vocab_size, seq_len=128, n_layer=1, n_head=2, n_kv_head=2, n_embd=32)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    for stage in ("base", "sft"):
        save_checkpoint(home / "checkpoints" / stage, model, CheckpointMeta(step=7), tokenizer=tokenizer)
    return home


def run_cli(home: Path, *args: str, torchrun: bool = False) -> dict:
    env = {**os.environ, "PICOCHAT_HOME": str(home), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable]
    if torchrun:
        launcher = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2"]
    result = subprocess.run(
        [*launcher, "-m", "picochat", "eval", *args], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    suite, stage = args[0], "base" if args[0] == "base" else "sft"
    return json.loads((home / "reports" / f"eval_{suite}_{stage}.json").read_text())


BASE_ARGS = ("base", "--tasks", "arc_easy:3,winogrande,lambada", "--max-per-task", "0")
CHAT_ARGS = (
    "chat",
    "--tasks",
    "arc_easy,spelling",
    "--max-per-task",
    "6",
    "--batch-size",
    "4",
    "--no-compile",
)


def test_base_report_follows_the_contract(home):
    report = run_cli(home, *BASE_ARGS)
    assert report["suite"] == "base" and report["stage"] == "base" and report["step"] == 7
    assert set(report["tasks"]) == {"arc_easy", "winogrande", "lambada"}
    arc = report["tasks"]["arc_easy"]
    # CORE's published baseline for ARC (four choices), not 1/3 for this fixture's three
    assert arc["n"] == 24 and arc["chance"] == pytest.approx(0.25) and arc["shots"] == 3
    assert arc["centered"] == pytest.approx((arc["accuracy"] - 0.25) / 0.75)
    assert (arc["scoring"], arc["rule"], report["tasks"]["lambada"]["rule"]) == (
        "multiple choice",
        "per-token",
        "greedy",
    )
    centred = [t["centered"] for t in report["tasks"].values()]
    assert report["core"] == pytest.approx(sum(centred) / 3) and report["core_tasks"] == 3
    assert len(report["core_missing"]) == 22 - 3 and "boolq" in report["core_missing"]
    for key in ("checkpoint", "created", "seconds"):
        assert key in report


def test_list_shows_tasks_and_licences(home):
    env = {**os.environ, "PICOCHAT_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "picochat", "eval", "--list"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "hellaswag" in out and "10,042" in out and "CC-BY-SA-4.0" in out
    assert out.count(" yes ") >= 4  # the three fixture tasks and spelling are on disk


@pytest.mark.skipif(
    not (Path(sys.executable).parent / "torchrun").exists(), reason="torchrun is not installed"
)
def test_torchrun_two_processes_match_one_process(home):
    one_base = run_cli(home, *BASE_ARGS)
    two_base = run_cli(home, *BASE_ARGS, torchrun=True)
    one_chat = run_cli(home, *CHAT_ARGS)
    two_chat = run_cli(home, *CHAT_ARGS, torchrun=True)
    for one, two in ((one_base, two_base), (one_chat, two_chat)):
        for name, result in one["tasks"].items():
            for key in ("accuracy", "stderr", "n", "chance"):
                assert two["tasks"][name][key] == pytest.approx(result[key]), (name, key)
        assert one["core"] == two["core"] or one["core"] == pytest.approx(two["core"])


def test_unknown_task_is_a_clear_error(home):
    env = {**os.environ, "PICOCHAT_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-m", "picochat", "eval", "base", "--tasks", "gsm8k"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "not a log-likelihood" in result.stderr


@pytest.mark.parametrize("flags, compiles", [([], None), (["--no-compile"], False), (["--compile"], True)])
def test_compile_flag_reaches_the_chat_engines(flags, compiles, home, monkeypatch):
    """Compiled where it can be by default (None: can_compile), eager with --no-compile, and the engine
    rebuilt for a task without the calculator (spelling) keeps the choice. The compiler itself is replaced by
    the eager step: compiled decoding is tested in test_decode_slots.py."""
    import picochat.decode
    import picochat.engine
    import picochat.evaluation.chat
    import picochat.evaluation.suite
    from picochat.cli import main
    from picochat.engine import Engine
    from picochat.runtime import can_compile

    engines = []

    class Recorded(Engine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            engines.append(self)

    # the suite's engine, and the one rebuilt without the calculator
    monkeypatch.setattr(picochat.evaluation.suite, "Engine", Recorded)
    monkeypatch.setattr(picochat.evaluation.chat, "Engine", Recorded)
    monkeypatch.setattr(picochat.decode, "compile_step", lambda fn, device, frozen=False: fn)
    checkpoint = str(home / "checkpoints" / "sft")
    args = ["eval", "chat", "--checkpoint", checkpoint, "--tasks", "spelling", "--max-per-task", "2", *flags]
    assert main(args) == 0
    assert len(engines) == 2  # the suite's (with the calculator), spelling's (without)
    expected = can_compile(engines[0].device) if compiles is None else compiles
    assert [e.compile for e in engines] == [expected, expected]
    assert engines[1]._slots.compiled == (expected and can_compile(engines[1].device))
