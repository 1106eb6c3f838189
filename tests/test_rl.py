"""RL (GRPO): advantages, the loss and the KL estimator against hand computations, masks, checkable tasks,
learning a toy task end to end, exact resume after kill -9, and torchrun equivalence."""

from __future__ import annotations

import json
import math
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
from picochat.engine import GenerationResult, SamplingParams
from picochat.equations import kl_divergence, log_softmax
from picochat.errors import UserError
from picochat.model import GPT, GPTConfig
from picochat.rl import (
    ProblemStream,
    group_advantages,
    grpo_loss,
    kl_k3,
    pick,
    rl,
    sample_rollouts,
)
from picochat.settings import RLConfig, with_settings
from picochat.tasks import make_checkable_task, parse_task_mix
from picochat.tasks.checkable import HELD_OUT_START, final_answer, last_number, written_text
from picochat.tokenizer import Tokenizer

TEXT = (
    "The cat sat on the mat. A dog ran to the park and back again. Numbers like 12 and 345 are tokens too. "
    "What is 7 * 6? It is 42. Spell the word tree: t-r-e-e. How many letters? Four. "
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and deterministically), as the subprocess tests run too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train([TEXT * 8], vocab_size=300)


def tiny_model(vocab_size: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, seq_len=32, n_layer=1, n_head=2, n_kv_head=2, n_embd=32))


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory, tokenizer):
    """A tiny untrained chat checkpoint on disk, as `picochat rl --base` reads it."""
    run = tmp_path_factory.mktemp("base")
    return save_checkpoint(run, tiny_model(tokenizer.vocab_size), CheckpointMeta(step=0), tokenizer=tokenizer)


# ---- the math ------------------------------------------------------------------------------------------


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [1.0, 0.0, 0.0, 0.0]])
    got = group_advantages(rewards, eps=0.0 + 1e-12)
    # group 0: mean 1/2, population std 1/2 -> ±1; group 1: all equal -> 0
    # group 2: mean 1/4, std √(1/4·(9/16) + 3/4·(1/16)) = √3/4 -> (3/4)/(√3/4) = √3 and (−1/4)/(√3/4) = −1/√3
    s3 = math.sqrt(3)
    expected = torch.tensor([[1.0, -1, -1, 1], [0, 0, 0, 0], [s3, -1 / s3, -1 / s3, -1 / s3]])
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.sum(dim=-1), torch.zeros(3), atol=1e-6)  # advantages are centred per group


def test_grpo_loss_value_and_gradient_by_hand():
    # two replies, three positions; reply 0 has a forced token at position 1, reply 1 is padded at position 2
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    adv = torch.tensor([2.0, -1.0])
    n = 4.0
    loss = grpo_loss(logp, logp.detach(), adv, mask, n, clip_eps=0.2, kl_coef=0.0)  # first update: ratio 1
    # L = −(1/N) Σ m·A = −(2 + 2 − 1 − 1) / 4 = −0.5;  ∂L/∂logp = −m·A/N
    assert loss.item() == pytest.approx(-0.5)
    loss.backward()
    assert torch.allclose(logp.grad, -mask * adv[:, None] / n)

    # a later update: ratios 1.5 (A > 0: clipped at 1.2, no gradient) and 0.5 (A < 0: clipped at 0.8,
    # min(0.5·(−1), 0.8·(−1)) = −0.8, no gradient); ratio 1.1 stays inside the clip and gets a gradient
    new = torch.tensor([[math.log(1.5), 0.0, math.log(1.1)], [math.log(0.5), 0.0, 0.0]], requires_grad=True)
    old = torch.zeros(2, 3)
    loss = grpo_loss(new, old, adv, mask, n, clip_eps=0.2, kl_coef=0.0)
    expected = -(1.2 * 2 + 1.1 * 2 + 0.8 * -1 + 1.0 * -1) / n
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    expected_grad = torch.zeros(2, 3)
    expected_grad[0, 2] = -1.1 * 2 / n  # ∂(ρA)/∂logp = ρA
    expected_grad[1, 1] = -1.0 * -1 / n
    assert torch.allclose(new.grad, expected_grad, atol=1e-6)


def test_kl_penalty_adds_k3_and_its_gradient():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0]])
    mask, adv = torch.ones(1, 2), torch.zeros(1)
    loss = grpo_loss(logp, logp.detach(), adv, mask, 2.0, clip_eps=0.2, kl_coef=0.1, ref_logp=ref)
    r = torch.exp(ref - logp.detach())
    assert loss.item() == pytest.approx(0.1 * (r - torch.log(r) - 1).sum().item() / 2)
    loss.backward()
    assert torch.allclose(logp.grad, 0.1 * (1 - r) / 2)  # d k3 / d log π = 1 − r


def test_k3_estimates_the_exact_kl_on_a_small_vocabulary():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        log_pi = log_softmax(torch.randn(7, generator=g) * 2)
        log_ref = log_softmax(torch.randn(7, generator=g) * 2)
        exact = kl_divergence(log_pi, log_ref)
        k3 = kl_k3(log_pi, log_ref)  # per token of the vocabulary
        assert (k3 >= 0).all()
        assert (log_pi.exp() * k3).sum().item() == pytest.approx(exact.item(), rel=1e-5)  # E_{y∼π}[k3] = KL
        samples = torch.multinomial(log_pi.exp(), 200_000, replacement=True, generator=g)
        values = k3[samples]
        assert abs(values.mean() - exact) < 4 * values.std() / math.sqrt(len(values))
    assert kl_k3(log_pi, log_pi).abs().max() == 0


def test_paired_gain_by_hand():
    from picochat.rl import paired_gain

    before, after = [0, 0, 1, 1, 0, 1], [1, 0, 1, 1, 1, 0]  # d = 1, 0, 0, 0, 1, -1
    gain, stderr = paired_gain(before, after)
    mean = 1 / 6
    s2 = ((1 - mean) ** 2 * 2 + (0 - mean) ** 2 * 3 + (-1 - mean) ** 2) / 5
    assert gain == pytest.approx(mean) and stderr == pytest.approx(math.sqrt(s2 / 6))
    with pytest.raises(ValueError):
        paired_gain([1], [0, 1])


def test_pick_takes_the_targets_log_probabilities():
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, 4, -1], [0, 2, 3]])
    got = pick(log_softmax(logits), targets)
    ref = torch.log_softmax(logits, -1)
    expected = torch.stack([ref[0, [0, 1], [1, 4]], ref[1, [0, 1, 2], [0, 2, 3]][:2]]).flatten()
    assert torch.allclose(got[[0, 0, 1, 1], [0, 1, 0, 1]], expected, atol=1e-6)
    assert torch.allclose(got[1, 2], ref[1, 2, 3], atol=1e-6) and got[0, 2] == 0


# ---- rollouts and masks --------------------------------------------------------------------------------


class FakeEngine:
    """Returns fixed replies, one with a forced tool output (mask 0), as Engine.generate would."""

    def __init__(self, tokenizer, replies: list[GenerationResult]):
        self.tokenizer, self.replies = tokenizer, replies
        self.seen: list[list[int]] = []

    def generate(self, prompts, params):
        self.seen = prompts
        return self.replies[: len(prompts)]


def test_rollouts_lay_out_prompt_and_reply_and_mask_forced_tokens(tokenizer):
    task = make_checkable_task("contains:e")
    problem = task.problem(0)
    prompt = tokenizer.render_for_completion(problem.messages)
    end = tokenizer.special_id("<|assistant_end|>")
    e, x = tokenizer.encode("e"), tokenizer.encode("x")
    replies = [
        GenerationResult(tokens=[*x, 7, 8, *e, end], text="x..e", finish_reason="stop", mask=[1, 0, 0, 1, 1]),
        GenerationResult(tokens=[*x, end], text="x", finish_reason="stop", mask=[1, 1]),
    ]
    rollouts = sample_rollouts(
        FakeEngine(tokenizer, replies), [(task, problem)], 2, SamplingParams(), 0, "cpu"
    )
    assert rollouts.rewards.tolist() == [[1.0, 0.0]]
    assert rollouts.advantages.tolist() == pytest.approx([1.0, -1.0], abs=1e-5)
    P = len(prompt)
    assert rollouts.inputs.shape == (2, P + 5 - 1)
    assert rollouts.inputs[0].tolist() == (prompt + replies[0].tokens)[:-1]
    assert rollouts.targets[0].tolist() == (prompt + replies[0].tokens)[1:]
    assert rollouts.mask[0].tolist() == [0] * (P - 1) + [1, 0, 0, 1, 1]  # target t = token t + 1
    assert rollouts.mask[1].tolist() == [0] * (P - 1) + [1, 1, 0, 0, 0]
    assert rollouts.targets[1, P + 1 :].tolist() == [-1] * 3  # padding


def test_masked_tokens_carry_no_gradient(tokenizer):
    task = make_checkable_task("contains:e")
    problem = task.problem(0)
    end = tokenizer.special_id("<|assistant_end|>")
    e = tokenizer.encode("e")
    replies = [
        GenerationResult(tokens=[*e, 7, 8, end], text="e", finish_reason="stop", mask=[1, 0, 0, 1]),
        GenerationResult(tokens=[9, 10, end], text="", finish_reason="stop", mask=[1, 1, 1]),
    ]
    rollouts = sample_rollouts(
        FakeEngine(tokenizer, replies), [(task, problem)], 2, SamplingParams(), 0, "cpu"
    )
    model = tiny_model(tokenizer.vocab_size)
    logits = model(rollouts.inputs).detach().requires_grad_(True)
    logp = pick(log_softmax(logits), rollouts.targets)
    ref = logp.detach() - 0.3
    loss = grpo_loss(
        logp,
        logp.detach(),
        rollouts.advantages,
        rollouts.mask,
        rollouts.mask.sum(),
        clip_eps=0.2,
        kl_coef=0.5,
        ref_logp=ref,
    )
    loss.backward()
    per_position = logits.grad.abs().sum(dim=-1)  # (B, T)
    assert (per_position[rollouts.mask == 0] == 0).all()  # prompt, forced tool output, padding
    assert (per_position[rollouts.mask == 1] > 0).all()


# ---- tasks ---------------------------------------------------------------------------------------------


def test_answers_are_read_from_what_the_model_wrote():
    reply = "<|python_start|>3 * 4<|python_end|><|output_start|>12<|output_end|>So 3 * 4 = 12."
    assert written_text(reply).strip() == "So 3 * 4 = 12."
    assert last_number(written_text(reply)) == 12
    assert last_number("about 1,234.5 apples") == 1234.5 and last_number("none") is None
    assert final_answer("Let me see.\nThe answer is -4.") == "-4"
    assert final_answer("first line\nlast line") == "last line"
    # a tool output alone is not an answer the model gave
    assert (
        last_number(written_text("<|python_start|>1+1<|python_end|><|output_start|>2<|output_end|>")) is None
    )


@pytest.mark.parametrize("spec", ["arithmetic", "arithmetic:plain", "arithmetic:worded"])
def test_word_problems_need_the_calculator_and_the_right_number(spec):
    from picochat.tasks.arithmetic import WORDED_TEMPLATES

    task = make_checkable_task(spec)
    worded = {t.format(a="", b="") for ts in WORDED_TEMPLATES.values() for t in ts}
    for i in [0, 1, 2, 3, 4, 5, HELD_OUT_START + 1]:
        p = task.problem(i)
        a, op, b = p.data["expression"].split()
        assert float(p.answer) == eval(p.data["expression"]) and int(p.answer) >= 0  # noqa: S307 (test)
        question = p.messages[0]["content"]
        assert a in question and b in question
        # plain questions show the expression; worded ones one of SFT's phrasings, the operator in words
        assert (p.data["expression"] in question) == (spec == "arithmetic:plain")
        if spec == "arithmetic:worded":
            assert question.replace(a, "", 1).replace(b, "", 1) in worded and op not in question
        call = f"<|python_start|>{p.data['expression']}<|python_end|><|output_start|>{p.answer}<|output_end|>"
        assert task.reward(p, f"{call}{p.data['expression']} = {p.answer}") == 1.0
        assert task.reward(p, f"{p.data['expression']} = {p.answer}") == 0.0  # no calculator call
        assert task.reward(p, f"{call}so it is {int(p.answer) + 1}") == 0.0
    assert task.problem(3) == task.problem(3)


def test_letters_hold_out_whole_words_and_score_counts_and_spellings():
    from picochat.tasks.spelling import word_split

    HELD_OUT_WORDS, TRAINING_WORDS = set(word_split(True)), set(word_split(False))
    task = make_checkable_task("spelling")
    assert HELD_OUT_WORDS and TRAINING_WORDS and not set(HELD_OUT_WORDS) & set(TRAINING_WORDS)
    kinds = set()
    for i in range(60):
        for index, words in ((i, TRAINING_WORDS), (HELD_OUT_START + i, HELD_OUT_WORDS)):
            p = task.problem(index)
            assert p.data["word"] in words
            kinds.add(p.data["kind"])
            assert task.reward(p, f"The answer is {p.answer}.") == 1.0
            word = p.data["word"]
            if p.data["kind"] == "count":
                # the SFT task's wording: the count, then the positions (which are not the answer)
                letter, count = p.data["letter"], int(p.answer)
                sft_reply = f"Spelling it out: {' '.join(word)}. The letter {letter} appears {count} times (at position 9)."
                assert task.reward(p, sft_reply) == 1.0
                assert task.reward(p, sft_reply.replace(f"appears {count}", f"appears {count + 1}")) == 0.0
                assert task.reward(p, f"It appears {count + 1} times.") == 0.0
            else:
                assert task.reward(p, f"{word} is spelled {' '.join(word)}.") == 1.0
                assert task.reward(p, f"{word} is spelled {'-'.join(word).upper()}.") == 1.0
                assert task.reward(p, p.answer.replace(" ", "")) == 0.0
                assert task.reward(p, f"{p.answer} s") == 0.0
    assert kinds == {"count", "spell"}


def test_gym_problems_use_reasoning_gyms_own_scorer():
    pytest.importorskip("reasoning_gym")
    task = make_checkable_task("gym:chain_sum")
    p = task.problem(5)
    assert task.reward(p, f"The answer is {p.answer}.") == 1.0
    assert task.reward(p, f"The answer is {int(p.answer) + 1}.") < 1.0
    assert task.reward(p, "") == 0.0
    assert task.problem(HELD_OUT_START).messages != task.problem(0).messages


def test_training_never_draws_held_out_problems_and_ranks_split_them():
    mix = parse_task_mix("contains:a:1,contains:b:3", seed=1)
    names = [mix.training_problem(n)[0].name for n in range(400)]
    assert 0.65 < names.count("contains:b") / 400 < 0.85
    with pytest.raises(ValueError):
        mix.training_problem(HELD_OUT_START)
    streams = [ProblemStream(mix, 2, rank=r, world_size=2) for r in (0, 1)]
    taken = [p for _ in range(3) for s in streams for p in next(s)]
    assert len(taken) == 12
    state = json.loads(json.dumps(streams[1].state_dict()))
    again = ProblemStream(mix, 2, rank=1, world_size=2)
    again.load_state_dict(state)
    assert [p.messages for _, p in next(again)] == [p.messages for _, p in next(streams[1])]
    with pytest.raises(UserError, match="unknown RL task"):
        parse_task_mix("nonsense")
    with pytest.raises(UserError, match="twice"):
        parse_task_mix("spelling,spelling")


# ---- the stage end to end ------------------------------------------------------------------------------


def toy_config(base: Path, run_dir: Path, **overrides) -> RLConfig:
    """A tiny GRPO run on 'the reply contains e', replies of 4 tokens."""
    settings = dict(base=base, run_dir=run_dir, tasks="contains:e", prompts_per_step=2, group_size=8)
    settings |= dict(device_batch=16, max_new_tokens=4, steps=20, lr_frac=2.0, eval_problems=16, log_every=10)
    settings |= dict(save_every=0, dtype="fp32", device="cpu", tool="none", warmdown_frac=0.3)
    settings["rollout_compile"] = False
    return with_settings(RLConfig(), **{**settings, **overrides})


def read_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_toy_task_reward_rises_above_90_percent(base_checkpoint, tmp_path):
    run = tmp_path / "rl"
    result = rl(toy_config(base_checkpoint, run))
    records = read_records(run)
    rewards = [r["reward_mean"] for r in records if "reward_mean" in r]
    assert len(rewards) == 20
    assert sum(rewards[:3]) / 3 < 0.8, rewards  # there was something to learn
    assert sum(rewards[-5:]) / 5 > 0.9, rewards
    before = records[0]
    assert before["step"] == 0 and "val_pass_at_1" in before
    assert result["pass_at_1"] > 0.9 and result["pass_at_1"] > before["val_pass_at_1"]
    # the same 16 held-out problems before and after: the paired gain is the difference of the two rates
    saved = json.loads((run / "held_out_before.json").read_text())
    assert len(saved["outcomes"]) == 16 and sum(saved["outcomes"]) / 16 == before["val_pass_at_1"]
    assert abs(result["paired_gain"] - (result["pass_at_1"] - before["val_pass_at_1"])) < 1e-9
    assert result["paired_gain_stderr"] >= 0 and "val_paired_gain" in records[-1]
    for key in ("reward_std", "pass_at_1", "pass_at_g", "kl", "completion_len", "tool_calls"):
        assert key in records[5]
    assert [r["kl"] for r in records if "kl" in r][-1] > 0  # the policy moved away from the starting model
    meta = json.loads((latest_checkpoint(run) / "meta.json").read_text())
    assert meta["step"] == 20 and meta["fingerprint"]["stage"] == "rl"


def rl_cli(*args) -> list[str]:
    return [sys.executable, "-m", "picochat", "rl", *args]


def common_flags(base: Path) -> list[str]:
    flags = "--tasks contains:e --prompts-per-step 4 --group-size 4 --device-batch 8 --max-new-tokens 4 --steps 20"
    flags += " --lr-frac 2 --tool none --dtype fp32 --device cpu --eval-problems 4 --kl-coef 0.05"
    flags += " --updates-per-batch 2 --no-eval-before --no-rollout-compile"
    return ["--base", str(base), *flags.split()]


def test_kill_minus_nine_then_resume_matches_uninterrupted_run(base_checkpoint, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PICOCHAT_HOME": str(tmp_path / "home")}
    common = [*common_flags(base_checkpoint), "--save-every", "2"]
    straight = tmp_path / "straight"
    subprocess.run(rl_cli(*common, "--run-dir", str(straight)), env=env, check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        rl_cli(*common, "--run-dir", str(killed)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "step_000004").exists():
        time.sleep(0.02)
    time.sleep(0.03)  # a little further, maybe mid-step or mid-checkpoint (not so far that it finishes)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list_checkpoints(killed), "the killed run left no complete checkpoint"
    assert latest_checkpoint(killed).name != "step_000020", "the run finished before it was killed"
    resumed = subprocess.run(
        rl_cli(*common, "--run-dir", str(killed)), env=env, check=True, capture_output=True, text=True
    )
    assert "resumed from" in resumed.stdout

    a = load_file(latest_checkpoint(straight) / "model.safetensors")
    b = load_file(latest_checkpoint(killed) / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    keys = ("step", "loss", "reward_mean", "kl", "pass_at_g", "val_pass_at_1")
    strip = [[{k: r[k] for k in keys if k in r} for r in read_records(run)] for run in (straight, killed)]
    assert strip[0] == strip[1]


def test_every_rl_flag_reaches_the_configuration(tmp_path):
    import argparse
    from dataclasses import fields

    from picochat.cli import build_parser
    from picochat.settings import TrainSettings, config_from_args, declared, flat

    parser = build_parser()
    command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["rl"]
    values = {
        "--base": str(tmp_path),
        "--tasks": "spelling",
        "--prompts-per-step": "4",
        "--group-size": "4",
        "--max-new-tokens": "8",
        "--temperature": "0.9",
        "--top-k": "5",
        "--tool": "none",
        "--kl-coef": "0.1",
        "--clip-eps": "0.3",
        "--updates-per-batch": "2",
        "--eval-problems": "7",
        "--no-eval-before": None,
        "--lr-frac": "0.2",
        "--no-rollout-compile": None,
    }
    own = [name for name in declared(RLConfig) if name not in {f.name for f in fields(TrainSettings)}]
    assert len(values) == len(own)  # every RL setting is walked
    default = flat(config_from_args(command.parse_args([]), RLConfig))
    for flag, value in values.items():
        config = flat(config_from_args(command.parse_args([flag] + ([value] if value else [])), RLConfig))
        assert [k for k in config if config[k] != default[k] and k != "batch_tokens"], flag
    config = config_from_args(command.parse_args(["--prompts-per-step", "4", "--seq-len", "256"]), RLConfig)
    assert config.train.batch_tokens == 4 * 8 * 256  # the step's capacity follows P × G × seq_len


@pytest.mark.parametrize("rollout_compile", [True, False])
def test_rollout_compile_reaches_both_engines(rollout_compile, base_checkpoint, tmp_path, monkeypatch):
    """The rollout engine and the held-out one compile where compiling can run, unless --no-rollout-compile.
    (The compiler itself is replaced by the eager step: compiled decoding is tested in test_decode_slots.py.)"""
    import picochat.decode
    import picochat.rl
    from picochat.engine import Engine
    from picochat.runtime import can_compile

    engines = []

    class Recorded(Engine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            engines.append(self)

    monkeypatch.setattr(picochat.rl, "Engine", Recorded)
    monkeypatch.setattr(picochat.decode, "compile_step", lambda fn, device, frozen=False: fn)
    config = toy_config(
        base_checkpoint, tmp_path / "rl", steps=1, eval_problems=2, rollout_compile=rollout_compile
    )
    rl(config)
    assert len(engines) == 2  # held-out evaluation, rollouts
    expected = rollout_compile and can_compile(torch.device("cpu"))
    assert [e.compile for e in engines] == [expected, expected]
    assert [e._slots.compiled for e in engines] == [expected, expected]  # both have decoded
    assert not any(e._slots.frozen for e in engines)  # the policy's weights change: never frozen


def test_bad_settings_are_refused_by_name(base_checkpoint, tmp_path):
    with pytest.raises(UserError, match="multiple of --group-size"):
        rl(toy_config(base_checkpoint, tmp_path / "a", device_batch=12, prompts_per_step=3))
    with pytest.raises(UserError, match="--device-batch"):
        rl(toy_config(base_checkpoint, tmp_path / "b", prompts_per_step=3))
    with pytest.raises(UserError, match="--group-size"):
        rl(toy_config(base_checkpoint, tmp_path / "c", group_size=1, device_batch=4))
    with pytest.raises(UserError, match="--max-new-tokens"):
        rl(toy_config(base_checkpoint, tmp_path / "d", max_new_tokens=600))
    cli = subprocess.run(rl_cli("--batch-tokens", "1000"), capture_output=True, text=True)
    assert cli.returncode != 0 and "--batch-tokens" in cli.stderr


@pytest.mark.skipif(
    not (Path(sys.executable).parent / "torchrun").exists() and shutil.which("torchrun") is None,
    reason="torchrun is not installed",
)
def test_torchrun_two_processes_match_one_process_with_two_micro_steps(base_checkpoint, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PICOCHAT_HOME": str(tmp_path / "home")}
    common = [*common_flags(base_checkpoint), "--steps", "4", "--device-batch", "8"]
    single = tmp_path / "single"
    subprocess.run(rl_cli(*common, "--run-dir", str(single)), env=env, check=True, capture_output=True)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    double = tmp_path / "double"
    subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "picochat",
            "rl",
            *common,
            "--run-dir",
            str(double),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    one, two = read_records(single), read_records(double)
    assert [r["step"] for r in one] == [r["step"] for r in two]
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in ("loss", "reward_mean", "pass_at_g", "kl", "completion_len", "val_pass_at_1"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), (key, a, b)
