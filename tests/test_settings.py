"""Settings: every flag reaches the configuration, every bad value is refused at the boundary, a preset of
`picochat run` is the same preset of its stage command, and flags written for a child process read back."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from picochat.cli import build_parser, main
from picochat.errors import UserError
from picochat.schedule import SCHEDULES
from picochat.settings import (
    PRETRAIN_PRESETS,
    RL_PRESETS,
    RUN_PRESETS,
    SFT_MIXTURE,
    SFT_PRESETS,
    ChatOptions,
    ChatSuiteOptions,
    ContaminationOptions,
    PretrainConfig,
    RLConfig,
    ServeOptions,
    SFTConfig,
    TrainSettings,
    as_flags,
    config_from_args,
    declared,
    describe,
    flat,
    from_preset,
    read_config_file,
    resolve,
)

STAGES = {"pretrain": (PretrainConfig, PRETRAIN_PRESETS), "sft": (SFTConfig, SFT_PRESETS)}
NOT_SETTINGS = {"-h", "--help", "--preset", "--config", "--print-config", "--plan", "--gpu", "--gpus"}


def subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def resolved(command: str, argv: list[str]):
    config_cls, presets = STAGES[command]
    args = subparser(command).parse_args(argv)
    return config_from_args(args, config_cls, presets)


def other_value(config_cls, name: str, current, tmp_path) -> str:
    """A flag value that differs from `current` and is allowed."""
    kind, meta = declared(config_cls)[name].kind, declared(config_cls)[name].meta
    if meta.get("choices"):
        return str(next(c for c in meta["choices"] if c != current))
    if name == "device":
        return "cpu" if current != "cpu" else "mps"
    if name == "resume":
        return "never"
    if kind is int:
        return str(current * 2 if current else 3)
    if kind is float:
        if meta.get("max") is not None:
            if current is None:  # unset (a default taken from another setting): halfway up the range
                return str((meta.get("min", 0) + meta["max"]) / 2)
            return str((current + meta["max"]) / 2 if current != meta["max"] else current / 2)
        return str(current * 2 + 0.5 if current is not None else 90.0)
    if kind.__name__ == "Path":
        return str(tmp_path / name)
    return f"other-{name}"


@pytest.mark.parametrize("command", STAGES)
def test_every_flag_changes_the_resolved_configuration(command, tmp_path):
    config_cls, _ = STAGES[command]
    base_file = tmp_path / "base.toml"
    base_file.write_text("batch_tokens = 8192\n")  # room for any device_batch or seq_len doubled
    base_argv = ["--config", str(base_file)]
    base = flat(resolved(command, base_argv))
    walked = set()
    for action in subparser(command)._actions:
        flags = [s for s in action.option_strings if s not in NOT_SETTINGS]
        for flag in flags:
            walked.add(flag)
            name = action.dest
            if isinstance(action, argparse.BooleanOptionalAction):
                positive, negative = action.option_strings
                before_argv = base_argv + [negative if flag == positive else positive]
                argv = before_argv + [flag]
            elif action.const is not None:  # --no-resume
                before_argv, argv = base_argv, base_argv + [flag]
            else:
                before_argv = base_argv
                argv = base_argv + [flag, other_value(config_cls, name, base[name], tmp_path)]
            before, after = flat(resolved(command, before_argv)), flat(resolved(command, argv))
            assert after[name] != before[name], (flag, argv)
    assert len(walked) > len(declared(config_cls))  # every setting has its flag (plus --no- forms)


def test_the_horizon_is_one_of_steps_time_budget_or_ratio():
    config = resolved("pretrain", ["--preset", "cpu-tiny", "--time-budget", "10m"])
    assert (config.train.steps, config.train.time_budget_s, config.ratio) == (None, 600.0, None)
    config = resolved("pretrain", ["--preset", "cpu-demo", "--steps", "7"])
    assert (config.train.steps, config.train.time_budget_s, config.ratio) == (7, None, None)


def test_sft_weight_decay_is_a_setting_of_sft():
    assert resolved("sft", ["--weight-decay", "0.1"]).train.weight_decay == 0.1


BAD = [
    (["pretrain", "--steps", "-5"], "--steps -5", "≥ 1"),
    (["pretrain", "--steps", "0"], "--steps 0", "≥ 1"),
    (["pretrain", "--steps", "ten"], "--steps 'ten'", "an integer"),
    (["pretrain", "--seq-len", "0"], "--seq-len 0", "≥ 1"),
    (["pretrain", "--seq-len", "-3"], "--seq-len -3", "≥ 1"),
    (["pretrain", "--depth", "0"], "--depth 0", "≥ 1"),
    (["pretrain", "--device-batch", "0"], "--device-batch 0", "≥ 1"),
    (["pretrain", "--batch-tokens", "-8"], "--batch-tokens -8", "≥ 1"),
    (["pretrain", "--batch-tokens", "1000"], "--batch-tokens 1000", "multiple"),
    (["pretrain", "--matrix-lr", "nan"], "--matrix-lr 'nan'", "finite"),
    (["pretrain", "--embedding-lr", "inf"], "--embedding-lr 'inf'", "finite"),
    (["pretrain", "--head-lr", "-0.1"], "--head-lr -0.1", "≥ 0"),
    (["pretrain", "--kv-groups", "3"], "--kv-groups 3", "divide"),
    (["pretrain", "--kv-groups", "0"], "--kv-groups 0", "≥ 1"),
    (["pretrain", "--schedule", "linear"], "--schedule 'linear'", "wsd, cosine, constant"),
    (["pretrain", "--warmup-steps", "-1"], "--warmup-steps -1", "≥ 0"),
    (["pretrain", "--warmdown-frac", "1.5"], "--warmdown-frac 1.5", "≤ 1"),
    (["pretrain", "--warmdown-frac", "-0.1"], "--warmdown-frac -0.1", "≥ 0"),
    (["pretrain", "--time-budget", "0"], "--time-budget 0", "> 0"),
    (["pretrain", "--time-budget=-5m"], "--time-budget '-5m'", "duration"),
    (["pretrain", "--keep-last", "-1"], "--keep-last -1", "≥ 0"),
    (["pretrain", "--ratio", "0"], "--ratio 0", "> 0"),
    (["pretrain", "--dtype", "fp8"], "--dtype 'fp8'", "auto, bf16, fp32, fp16"),
    (["pretrain", "--device", "gpu"], "--device 'gpu'", "cuda"),
    (["pretrain", "--eval-batches", "0"], "--eval-batches 0", "≥ 1"),
    (["sft", "--lr-frac", "0"], "--lr-frac 0", "> 0"),
    (["sft", "--steps", "-5"], "--steps -5", "≥ 1"),
    (["sft", "--grad-clip", "-1"], "--grad-clip -1", "≥ 0"),
]


@pytest.mark.parametrize(("argv", "named", "allowed"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_values_are_refused_in_one_line_naming_flag_value_and_range(argv, named, allowed, capsys):
    assert main([*argv, "--print-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and allowed in lines[0], lines


def test_values_from_python_are_checked_too():
    with pytest.raises(UserError, match="--warmdown-frac 2"):
        resolve(PretrainConfig, [{"warmdown_frac": 2}])
    with pytest.raises(UserError, match="unknown setting 'warmdown'"):
        resolve(PretrainConfig, [{"warmdown": 0.5}])


def test_config_file_sets_settings_flags_win_and_unknown_keys_are_refused(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('seq_len = 64\nmatrix_lr = 0.05\nschedule = "cosine"\ntime_budget_s = "2m"\n')
    config = resolved("pretrain", ["--preset", "cpu-tiny", "--config", str(path), "--matrix-lr", "0.07"])
    assert config.train.seq_len == 64 and config.train.schedule == "cosine"
    assert config.train.matrix_lr == 0.07  # the flag wins over the file
    assert config.train.time_budget_s == 120.0 and config.train.steps is None  # the file's horizon
    path.write_text("seq_len = 256\nwarmup = 3\n")
    with pytest.raises(UserError, match="unknown setting 'warmup'"):
        read_config_file(PretrainConfig, path)
    path.write_text("seq_len = 0\n")
    assert main(["pretrain", "--config", str(path), "--print-config"]) == 2
    assert "seq_len = 0" in capsys.readouterr().err
    path.write_text("seq_len = [\n")
    with pytest.raises(UserError, match="not valid TOML"):
        read_config_file(PretrainConfig, path)


@pytest.mark.parametrize("command", STAGES)
def test_print_config_reads_back_as_the_same_configuration(command, tmp_path, capsys):
    argv = ["--steps", "12", "--matrix-lr", "0.05", "--compile"]
    assert main([command, *argv, "--print-config"]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "printed.toml").write_text(printed)
    assert resolved(command, ["--config", str(tmp_path / "printed.toml")]) == resolved(command, argv)


def test_help_shows_each_default_and_what_presets_change(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "(default: 512; cpu-tiny: 128; cpu-demo*: 256; gpu-d12: 2048; gpu-d20: 2048; gpu-rehearsal: 64)"
        in text.replace("- ", "-")
    )
    assert "(default: wsd)" in text and "--print-config" in text and "--config FILE" in text


def test_schedule_choices_are_the_schedules_the_code_knows():
    assert declared(PretrainConfig)["schedule"].meta["choices"] == SCHEDULES


def test_stage_configs_share_one_declaration():
    assert isinstance(PretrainConfig().train, TrainSettings) and isinstance(SFTConfig().train, TrainSettings)
    own = {f.name for f in dataclasses.fields(SFTConfig)} & {
        f.name for f in dataclasses.fields(TrainSettings)
    }
    assert not own  # no stage restates a shared setting
    assert SFTConfig().train.steps == 300 and PretrainConfig().train.steps is None  # stage defaults
    assert describe(SFTConfig()).count("\n") == len(declared(SFTConfig))


# what `picochat run` trained in SFT before its settings became presets of `picochat sft`
RUN_SFT = {
    "cpu-demo": dict(seq_len=256, device_batch=16, batch_tokens=4096, steps=None, time_budget_s=240, compile=True,
                     log_every=20, lr_frac=1.0, mix=SFT_MIXTURE),
    "cpu-tiny": dict(mix="identity:2,arithmetic:2,spelling:1", seq_len=128, device_batch=8, batch_tokens=1024,
                     steps=30, log_every=10),
}  # fmt: skip


@pytest.mark.parametrize("preset", RUN_SFT)
def test_sft_preset_is_the_runs_sft(preset, tmp_path):
    run_dirs = dict(base=tmp_path / "base", run_dir=tmp_path / "sft", owner="Ada")
    flags = [
        "--preset",
        preset,
        "--base",
        str(tmp_path / "base"),
        "--run-dir",
        str(tmp_path / "sft"),
        "--owner",
        "Ada",
    ]
    from_cli = resolved("sft", flags)
    assert from_cli == resolve(SFTConfig, [{**RUN_SFT[preset], **run_dirs}])
    assert RUN_PRESETS[preset].stages == preset
    assert from_preset(SFTConfig, SFT_PRESETS, preset, **run_dirs) == from_cli  # what `picochat run` trains


def test_contamination_checks_the_mixture_the_demo_trains_on():
    demo = from_preset(SFTConfig, SFT_PRESETS, "cpu-demo")
    assert demo.mix == SFTConfig().mix
    assert ContaminationOptions().mixture is None  # the one the checkpoint records (tests/test_evaluation.py)


@pytest.mark.parametrize("command", STAGES)
def test_as_flags_round_trips_a_configuration(command, tmp_path):
    config_cls, presets = STAGES[command]
    config = resolve(config_cls, [presets["cpu-tiny"], dict(compile=True, lr_batch_scaling=False, time_budget_s=90,
                                                           run_dir=tmp_path / "a b", wandb_project="-x")])  # fmt: skip
    values = {name: value for name, value in flat(config).items() if value is not None}
    flags = as_flags(config_cls, values)
    assert "--compile" in flags and "--no-lr-batch-scaling" in flags and "--time-budget=90" in flags
    assert f"--run-dir={tmp_path / 'a b'}" in flags and "--wandb=-x" in flags
    assert resolved(command, flags) == config  # the preset's horizon (steps) is cleared by --time-budget


def test_as_flags_writes_lists_and_refuses_unknown_settings():
    assert as_flags(ChatOptions, {"stop": ("User:", "\n\n"), "compile": None}) == ["--stop", "User:", "\n\n"]
    assert as_flags(ChatSuiteOptions, {"tasks": ("arc_easy", "mmlu")}) == ["--tasks=arc_easy,mmlu"]
    with pytest.raises(UserError, match="unknown setting 'warmup'"):
        as_flags(SFTConfig, {"warmup": 3})


def test_chat_serve_and_eval_options_are_declared_with_one_meaning_of_compile():
    for options in (ChatOptions, ServeOptions, ChatSuiteOptions):
        assert declared(options)["compile"].kind is bool and declared(options)["compile"].optional
    assert ServeOptions().compile is None and ChatSuiteOptions().compile is None  # None: where it can run
    assert ChatOptions().compile is None  # a chat: eager at once, the compiled step warmed in the background
    assert main(["serve", "--port", "0", "--print-config"]) == 2
    assert main(["chat", "-p", " ", "--print-config"]) == 2


def test_compile_none_loads_an_engine_that_compiles_where_it_can(tmp_path):
    from test_engine import tiny_gpt, tiny_tokenizer

    from picochat.checkpoint import CheckpointMeta, load_engine, save_checkpoint
    from picochat.runtime import can_compile

    tok = tiny_tokenizer()
    save_checkpoint(tmp_path / "sft", tiny_gpt(tok.vocab_size), CheckpointMeta(step=1), tokenizer=tok)
    engine = load_engine(tmp_path / "sft", None)
    assert engine.compile == can_compile(engine.device)
    assert load_engine(tmp_path / "sft", None, compile=False).compile is False


def test_a_list_of_paths_prints_and_reads_back(tmp_path, capsys):
    from picochat.commands.tokenizer import TrainOptions

    assert main(["tokenizer", "train", "--input", "a b", str(tmp_path), "--print-config"]) == 0
    (tmp_path / "train.toml").write_text(capsys.readouterr().out)
    config = resolve(TrainOptions, [read_config_file(TrainOptions, tmp_path / "train.toml")])
    assert config.input == (Path("a b"), tmp_path)


def test_the_documented_rl_preset_exists():
    """docs/rl.md and the README run `picochat rl --preset cpu-demo`: ten minutes, RL's settings otherwise."""
    config = config_from_args(subparser("rl").parse_args(["--preset", "cpu-demo"]), RLConfig, RL_PRESETS)
    assert config.train.time_budget_s == 600 and config.tasks == RLConfig().tasks
    assert dataclasses.replace(config, train=RLConfig().train) == RLConfig()
