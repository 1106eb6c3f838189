"""Pretraining end to end: learning, exact resume after kill -9, damaged checkpoints, torchrun equivalence."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from picochat.checkpoint import CheckpointMeta, latest_checkpoint, list_checkpoints, save_checkpoint
from picochat.data.corpus import write_synthetic_corpus
from picochat.data.shards import iter_documents
from picochat.pretrain import preset_config, pretrain
from picochat.tokenizer import Tokenizer

TINY = dict(
    depth=1, seq_len=64, device_batch=4, batch_tokens=256, warmup_steps=2, eval_batches=2, log_every=5
)


@pytest.fixture(scope="module")
def corpus_and_tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain_data")
    corpus = write_synthetic_corpus(root / "corpus", n_docs=160, seed=3)
    docs = list(iter_documents(sorted((corpus / "train").glob("*.parquet"))))
    Tokenizer.train(docs, vocab_size=400).save(root / "tokenizer")
    return corpus, root / "tokenizer"


def config_for(corpus_and_tokenizer, run_dir, **overrides):
    corpus, tokenizer = corpus_and_tokenizer
    return preset_config(
        "cpu-tiny", corpus=corpus, tokenizer=tokenizer, run_dir=run_dir, **{**TINY, **overrides}
    )


TINY_FLAGS = "--depth 1 --seq-len 64 --device-batch 4 --batch-tokens 512"  # what the command-line tests train


def data_flags(corpus_and_tokenizer) -> list[str]:
    corpus, tokenizer = corpus_and_tokenizer
    return ["--corpus", str(corpus), "--tokenizer", str(tokenizer)]


def read_losses(run_dir: Path) -> list[tuple[int, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


def cli(*args, env_extra=None) -> list[str]:
    return [sys.executable, "-m", "picochat", "pretrain", "--preset", "cpu-tiny", *args]


def test_cpu_tiny_trains_and_validation_bpb_falls(corpus_and_tokenizer, tmp_path):
    from picochat.data.loader import validation_batches
    from picochat.evaluation.bpb import evaluate_bpb
    from picochat.model import GPT, GPTConfig

    corpus, tok_dir = corpus_and_tokenizer
    tokenizer = Tokenizer.load(tok_dir)
    torch.manual_seed(0)
    untrained = GPT(GPTConfig.from_depth(1, vocab_size=tokenizer.vocab_size, seq_len=64))
    val = sorted((corpus / "val").glob("*.parquet"))
    token_bytes = torch.as_tensor(tokenizer.token_byte_lengths(), dtype=torch.int64)
    before = evaluate_bpb(
        untrained, validation_batches(val, tokenizer, 4, 64, max_batches=2), token_bytes, "cpu"
    )
    result = pretrain(config_for(corpus_and_tokenizer, tmp_path / "run", steps=30))
    assert result["step"] == 30
    assert result["bpb"] < 0.6 * before["bpb"], (before, result)
    losses = [loss for _, loss in read_losses(tmp_path / "run")]
    assert len(losses) == 30 and losses[-1] < losses[0] - 1.0
    ckpt = latest_checkpoint(tmp_path / "run")
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["step"] == 30 and meta["last_eval"]["bpb"] == pytest.approx(result["bpb"])
    assert (ckpt / "tokenizer").is_dir()


def test_kill_minus_nine_then_resume_matches_uninterrupted_run(corpus_and_tokenizer, tmp_path):
    common = data_flags(corpus_and_tokenizer) + TINY_FLAGS.split()
    common += "--steps 14 --save-every 3 --warmup-steps 2 --eval-batches 2".split()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PICOCHAT_HOME": str(tmp_path / "home")}
    straight = tmp_path / "straight"
    subprocess.run(cli(*common, "--run-dir", str(straight)), env=env, check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        cli(*common, "--run-dir", str(killed)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "step_000006").exists():
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere in steps 7-9, maybe mid-checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list_checkpoints(killed), "the killed run left no complete checkpoint"
    resumed = subprocess.run(
        cli(*common, "--run-dir", str(killed)), env=env, check=True, capture_output=True, text=True
    )
    assert "resumed from" in resumed.stdout

    a = load_file(latest_checkpoint(straight) / "model.safetensors")
    b = load_file(latest_checkpoint(killed) / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert read_losses(straight) == read_losses(killed)


def test_auto_resume_skips_a_half_written_checkpoint(corpus_and_tokenizer, tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(config_for(corpus_and_tokenizer, run, steps=6, save_every=2, keep_last=5, stop_after_steps=2))
    good = latest_checkpoint(run)
    assert good.name == "step_000002"
    # a later checkpoint whose copy was cut short: weights truncated, no meta.json
    broken = run / "step_000004"
    shutil.copytree(good, broken)
    (broken / "meta.json").unlink()
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert latest_checkpoint(run) == good
    assert "skipping incomplete checkpoint" in capsys.readouterr().err
    # a meta.json that is truncated JSON is skipped too
    (broken / "meta.json").write_text('{"step": 4, "comple')
    assert latest_checkpoint(run) == good
    result = pretrain(config_for(corpus_and_tokenizer, run, steps=6, save_every=2, keep_last=5))
    assert result["step"] == 6
    assert "resumed from" in capsys.readouterr().out and read_losses(run)[0][0] == 1


def test_resume_with_other_settings_is_refused(corpus_and_tokenizer, tmp_path):
    from picochat.errors import UserError

    run = tmp_path / "run"
    pretrain(config_for(corpus_and_tokenizer, run, steps=3))
    with pytest.raises(UserError, match="seq_len"):
        pretrain(config_for(corpus_and_tokenizer, run, steps=5, seq_len=32))
    # unless the user asks to restart the schedule with the old weights
    result = pretrain(config_for(corpus_and_tokenizer, run, steps=2, seq_len=32, restart_schedule=True))
    assert result["step"] >= 2


def test_non_finite_loss_stops_with_a_message_and_keeps_the_checkpoint(corpus_and_tokenizer, tmp_path):
    from picochat.errors import UserError

    run = tmp_path / "run"
    pretrain(config_for(corpus_and_tokenizer, run, steps=2))
    before = latest_checkpoint(run)
    weights = (before / "model.safetensors").read_bytes()
    with pytest.raises(UserError, match="loss became"):
        pretrain(
            config_for(
                corpus_and_tokenizer,
                run,
                steps=6,
                embedding_lr=1e30,
                matrix_lr=1e30,
                head_lr=1e30,
                restart_schedule=True,
                grad_clip=0.0,
            )
        )
    assert latest_checkpoint(run) == before and (before / "model.safetensors").read_bytes() == weights


def test_checkpoint_is_never_visible_half_written(tmp_path, monkeypatch):
    from picochat import checkpoint as ck
    from picochat.model import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=20, n_layer=1, n_head=2, n_kv_head=2, n_embd=16, seq_len=8))

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", explode)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, model, CheckpointMeta(step=5))
    assert not (tmp_path / "step_000005").exists()
    assert latest_checkpoint(tmp_path) is None


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
    reason="torchrun is not installed",
)
def test_torchrun_two_processes_match_one_process_with_two_accumulation_steps(corpus_and_tokenizer, tmp_path):
    common = ["pretrain", "--preset", "cpu-tiny", *data_flags(corpus_and_tokenizer), *TINY_FLAGS.split()]
    common += "--steps 6 --warmup-steps 2 --eval-batches 2 --dtype fp32".split()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PICOCHAT_HOME": str(tmp_path / "home")}
    single = tmp_path / "single"
    subprocess.run(
        [sys.executable, "-m", "picochat", *common, "--run-dir", str(single)],
        env=env,
        check=True,
        capture_output=True,
    )
    torchrun = str(Path(sys.executable).parent / "torchrun")
    double = tmp_path / "double"
    subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "picochat", *common, "--run-dir", str(double)],
        env=env,
        check=True,
        capture_output=True,
    )
    one, two = read_losses(single), read_losses(double)
    assert [s for s, _ in one] == [s for s, _ in two] == list(range(1, 7))
    for (_, a), (_, b) in zip(one, two):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-4)


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
    reason="torchrun is not installed",
)
def test_torchrun_ranks_follow_one_time_budget(corpus_and_tokenizer, tmp_path):
    """Under torchrun every rank plans the horizon from rank 0's clock (its steps, its setup, the time it
    keeps back for checkpoints and evaluations), so both ranks stop at the same step and the run exits.
    Here rank 1's clock runs twice as fast: a rank that planned from its own readings would count twice the
    setup and stop steps before the other, which then waits forever in its next collective."""
    run = tmp_path / "run"
    launcher = tmp_path / "fast_clock_on_rank_1.py"
    launcher.write_text(
        "import os, sys, time\n"
        "from picochat.cli import main\n"
        "from picochat.training import Trainer\n"
        "if os.environ['RANK'] == '1':\n"
        "    Trainer.clock = staticmethod(lambda: 2 * time.perf_counter())\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["pretrain", "--preset", "cpu-tiny", *data_flags(corpus_and_tokenizer), *TINY_FLAGS.split()]
    args += "--time-budget 15 --eval-every 5 --save-every 5 --eval-batches 2 --dtype fp32".split()
    args += ["--run-dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PICOCHAT_HOME": str(tmp_path / "home")}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", str(launcher), *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=150,
    )  # a hang ends here
    meta = json.loads((latest_checkpoint(run) / "meta.json").read_text())
    assert meta["total_steps"] == meta["step"] == meta["time_budget"]["end_step"] > 5


@pytest.mark.parametrize("slowdown", [1.0, 3.0, 0.5])
def test_time_budget_holds_when_the_machine_slows_down_mid_run(
    corpus_and_tokenizer, tmp_path, monkeypatch, slowdown
):
    """The wall clock decides: steps that turn 3x slower (or 2x faster) after a third of the budget still
    end within 5 % of it. The clock is simulated, so the test is exact and fast on any machine."""
    from picochat.training import Trainer

    budget, step_s = 20.0, 0.1
    now = [0.0]
    real_step = Trainer.train_step

    def step_on_a_changing_machine(self):
        now[0] += step_s * (slowdown if now[0] > budget / 3 else 1.0)
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_on_a_changing_machine)
    monkeypatch.setattr(Trainer, "clock", staticmethod(lambda: now[0]))
    run = tmp_path / "run"
    result = pretrain(config_for(corpus_and_tokenizer, run, steps=None, ratio=None, time_budget_s=budget))
    meta = json.loads((latest_checkpoint(run) / "meta.json").read_text())
    plan = meta["time_budget"]
    assert meta["total_steps"] == result["step"] == plan["end_step"]
    assert abs(now[0] - budget) <= 0.05 * budget, plan
    factors = [
        r["lr_factor"]
        for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if "lr_factor" in r
    ]
    warmup = TINY["warmup_steps"]
    assert factors[warmup:].count(1.0) >= 0.5 * (1 - 0.4) * budget / step_s  # the stable phase
    decay = factors[factors.index(1.0, warmup) :]
    assert all(b <= a + 1e-12 for a, b in zip(decay, decay[1:]))  # then the decay, never a jump up
    assert decay[-1] < 0.1
    # the fixed horizon of the first steps' pace would have run 3x slow steps to the end
    if slowdown > 1:
        assert result["step"] < 0.8 * budget / step_s


def test_time_budget_keeps_back_time_for_a_final_evaluation_it_has_not_timed(
    corpus_and_tokenizer, tmp_path, monkeypatch
):
    """With no evaluation before the end (SFT's way), the budget keeps back an estimate of the final one
    (its batches' forward passes at a third of a step each), so the run, final evaluation included, still
    ends within 5 % of the budget; here that evaluation costs a tenth of the budget on the simulated clock,
    and spending it after a full budget of steps would end 10 % late."""
    from picochat.training import Trainer

    budget, step_s, eval_batches = 20.0, 0.1, 60
    now = [0.0]
    real_step, real_evaluation = Trainer.train_step, Trainer.run_evaluation

    def step(self):
        now[0] += step_s
        return real_step(self)

    def evaluation(self):
        now[0] += eval_batches * step_s / 3  # one micro-batch a step here: forward only, a third of it
        return real_evaluation(self)

    monkeypatch.setattr(Trainer, "train_step", step)
    monkeypatch.setattr(Trainer, "run_evaluation", evaluation)
    monkeypatch.setattr(Trainer, "clock", staticmethod(lambda: now[0]))
    run = tmp_path / "run"
    config = config_for(
        corpus_and_tokenizer,
        run,
        steps=None,
        ratio=None,
        time_budget_s=budget,
        eval_every=0,
        eval_batches=eval_batches,
    )
    pretrain(config)
    plan = json.loads((latest_checkpoint(run) / "meta.json").read_text())["time_budget"]
    assert abs(now[0] - budget) <= 0.05 * budget, plan
    assert plan["reserve_s"] == pytest.approx(eval_batches * step_s / 3) and not plan["reserve_measured"]


def test_time_budget_counts_the_stage_setup(corpus_and_tokenizer, tmp_path, monkeypatch):
    """The budget's clock starts with the stage, not with its first step: loading the model and the data
    (here a tenth of the budget on the simulated clock) is spent time, and the run still ends within 5 %
    of the budget; counting from the first step would end 10 % late."""
    from picochat.training import Trainer

    budget, step_s = 20.0, 0.1
    now = [0.0]
    real_step, real_init = Trainer.train_step, Trainer.__init__

    def step(self):
        now[0] += step_s
        return real_step(self)

    def slow_setup(self, *args, **kwargs):
        now[0] += budget / 10
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_step", step)
    monkeypatch.setattr(Trainer, "__init__", slow_setup)
    monkeypatch.setattr(Trainer, "clock", staticmethod(lambda: now[0]))
    run = tmp_path / "run"
    pretrain(
        config_for(corpus_and_tokenizer, run, steps=None, ratio=None, time_budget_s=budget, eval_every=0)
    )
    plan = json.loads((latest_checkpoint(run) / "meta.json").read_text())["time_budget"]
    assert abs(now[0] - budget) <= 0.05 * budget, plan


def test_checkpoint_keeps_the_resolved_configuration_and_resume_names_what_changed(
    corpus_and_tokenizer, tmp_path, capsys
):
    run = tmp_path / "run"
    pretrain(config_for(corpus_and_tokenizer, run, steps=4, save_every=2, stop_after_steps=2))
    meta = json.loads((latest_checkpoint(run) / "meta.json").read_text())
    assert meta["config"]["matrix_lr"] == 0.03 and meta["config"]["depth"] == 1
    assert meta["config"]["run_dir"] == str(run)
    capsys.readouterr()
    result = pretrain(config_for(corpus_and_tokenizer, run, steps=4, save_every=2, matrix_lr=0.05))
    out = capsys.readouterr().out
    assert result["step"] == 4 and "resumed from" in out
    assert "changed since that checkpoint: matrix_lr 0.03 -> 0.05" in out
    assert "stop_after_steps 2 -> None" in out
    assert json.loads((latest_checkpoint(run) / "meta.json").read_text())["config"]["matrix_lr"] == 0.05


def test_textbook_training_follows_the_fast_path(corpus_and_tokenizer, tmp_path):
    fast = pretrain(config_for(corpus_and_tokenizer, tmp_path / "fast", steps=3, dtype="fp32"))
    textbook = pretrain(
        config_for(corpus_and_tokenizer, tmp_path / "textbook", steps=3, dtype="fp32", textbook=True)
    )
    losses = [[loss for _, loss in read_losses(tmp_path / run)] for run in ("fast", "textbook")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)
    assert textbook["bpb"] == pytest.approx(fast["bpb"], rel=1e-3)


def test_fp16_trains_with_a_gradient_scaler_that_is_checkpointed(corpus_and_tokenizer, tmp_path):
    run = tmp_path / "run"
    result = pretrain(config_for(corpus_and_tokenizer, run, steps=3, dtype="fp16"))
    assert result["step"] == 3
    meta = json.loads((latest_checkpoint(run) / "meta.json").read_text())
    assert meta["grad_scaler"]["scale"] > 1  # the loss is scaled up (2^16 at the start)
    assert all(loss == loss for _, loss in read_losses(run))


def test_conversation_rows_mixed_in_learn_only_the_assistant_and_resume_exactly(
    corpus_and_tokenizer, tmp_path
):
    from picochat.pretrain import make_loader_fn

    corpus, tok_dir = corpus_and_tokenizer
    tokenizer = Tokenizer.load(tok_dir)
    config = config_for(
        corpus_and_tokenizer, tmp_path / "x", chat_share=0.25, chat_mix="arithmetic:1,spelling:1"
    )
    inputs, targets = next(
        make_loader_fn(config, tokenizer, sorted((corpus / "train").glob("*.parquet")), "cpu")(0, 1)
    )
    assert inputs.shape == targets.shape == (4, 64)
    assert (targets[0] == -1).any() and (targets[0] != -1).any()  # a conversation: the user's turns unlearned
    assert tokenizer.special_id("<|user_start|>") in inputs[0].tolist()
    assert (targets[1:] != -1).all()  # corpus rows: every token learned

    straight = pretrain(
        config_for(corpus_and_tokenizer, tmp_path / "straight", steps=8, save_every=4, chat_share=0.25)
    )
    pretrain(
        config_for(
            corpus_and_tokenizer,
            tmp_path / "stopped",
            steps=8,
            save_every=4,
            chat_share=0.25,
            stop_after_steps=4,
        )
    )
    resumed = pretrain(
        config_for(corpus_and_tokenizer, tmp_path / "stopped", steps=8, save_every=4, chat_share=0.25)
    )
    assert resumed["bpb"] == straight["bpb"]
    a = load_file(latest_checkpoint(tmp_path / "straight") / "model.safetensors")
    b = load_file(latest_checkpoint(tmp_path / "stopped") / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_mid_training_takes_more_conversation_rows_in_the_last_steps_and_resumes_exactly(
    corpus_and_tokenizer, tmp_path
):
    from picochat.pretrain import in_last_steps, make_loader_fn

    assert [in_last_steps(s, 10, 0.3) for s in range(10)] == [False] * 7 + [True] * 3
    assert not in_last_steps(9, None, 0.3)  # a time budget that has not fixed the end yet
    assert not in_last_steps(9, 10, 0.0)
    corpus, tok_dir = corpus_and_tokenizer
    tokenizer = Tokenizer.load(tok_dir)
    shards = sorted((corpus / "train").glob("*.parquet"))

    def conversation_rows(loader, step, total):
        loader.set_progress(step, total)
        inputs, targets = next(loader)
        assert inputs.shape == targets.shape == (4, 64)
        return [bool((row == -1).any()) for row in targets]  # only a conversation leaves tokens unlearned

    for chat_share, before in ((0.25, [True, False, False, False]), (0.0, [False] * 4)):
        config = config_for(
            corpus_and_tokenizer,
            tmp_path / "x",
            chat_share=chat_share,
            mid_share=0.5,
            mid_frac=0.25,
            chat_mix="arithmetic:1,spelling:1",
        )
        loader = make_loader_fn(config, tokenizer, shards, "cpu")(0, 1)
        assert conversation_rows(loader, 0, None) == before
        assert conversation_rows(loader, 5, 8) == before
        assert conversation_rows(loader, 6, 8) == [True, True, False, False]

    mid = dict(steps=8, save_every=4, chat_share=0.25, mid_share=0.5, mid_frac=0.25)
    straight = pretrain(config_for(corpus_and_tokenizer, tmp_path / "straight", **mid))
    pretrain(config_for(corpus_and_tokenizer, tmp_path / "stopped", stop_after_steps=4, **mid))
    resumed = pretrain(config_for(corpus_and_tokenizer, tmp_path / "stopped", **mid))  # crosses into mid
    assert resumed["bpb"] == straight["bpb"]
    a = load_file(latest_checkpoint(tmp_path / "straight") / "model.safetensors")
    b = load_file(latest_checkpoint(tmp_path / "stopped") / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)
    plain = pretrain(config_for(corpus_and_tokenizer, tmp_path / "plain", steps=8, chat_share=0.25))
    assert plain["bpb"] != straight["bpb"]  # the mid phase changed the last steps' batches


def test_a_chat_share_that_leaves_no_row_is_refused(corpus_and_tokenizer, tmp_path):
    from picochat.errors import UserError

    with pytest.raises(UserError, match="--chat-share"):
        pretrain(config_for(corpus_and_tokenizer, tmp_path / "run", steps=2, chat_share=0.05))
    with pytest.raises(UserError, match="--mid-share"):
        pretrain(config_for(corpus_and_tokenizer, tmp_path / "run", steps=2, mid_share=0.95, mid_frac=0.5))
    for half in (dict(mid_share=0.5), dict(mid_frac=0.5)):  # one mid-training flag without the other
        with pytest.raises(UserError, match="give both, or neither"):
            pretrain(config_for(corpus_and_tokenizer, tmp_path / "run", steps=2, **half))
