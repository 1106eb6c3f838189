"""`picochat run`: the whole pipeline on one command, each stage skipped when its output is complete.

    data ─► tokenizer ─► pretrain ─► sft ─► evaluate (val bits per byte, chat probes) ─► how to chat

An interrupted run resumes: finished stages are skipped, an unfinished training stage continues from its
latest checkpoint. The training stages are `picochat pretrain` and `picochat sft` with the run preset's
stage presets. The end writes reports/run.json and the run report (picochat/report.py).
"""

from __future__ import annotations

import time
from contextlib import contextmanager, suppress
from dataclasses import asdict
from pathlib import Path

from picochat import settings
from picochat.atomic import atomic_write_json
from picochat.checkpoint import (
    CheckpointMeta,
    latest_checkpoint,
    load_model,
    read_meta,
    tokenizer_fingerprint,
)
from picochat.data.corpus import build_corpus, fetch_shard_set, write_synthetic_corpus
from picochat.data.fetch import fetch_task_data
from picochat.data.sources import get_source
from picochat.engine import Engine
from picochat.errors import UserError
from picochat.evaluation.base import CORE_TASKS
from picochat.evaluation.benchmarks import fetch_benchmarks
from picochat.evaluation.probes import print_probes, run_chat_probes, summarize
from picochat.evaluation.suite import evaluate_checkpoint
from picochat.launch import torchrun
from picochat.paths import checkpoints_dir, data_dir, reports_dir, tokenizer_dir
from picochat.pretrain import pretrain
from picochat.report import machine_info, write_report
from picochat.runtime import pick_device
from picochat.sft import sft
from picochat.tokenizer import Tokenizer
from picochat.tokenizer.corpus import training_documents

STAGES = {
    "pretrain": (settings.PretrainConfig, settings.PRETRAIN_PRESETS, pretrain),
    "sft": (settings.SFTConfig, settings.SFT_PRESETS, sft),
}

# the chat suite's subset at the end of a run: no code tasks (their sandbox may be unavailable)
RUN_CHAT_TASKS = ("arc_easy", "arc_challenge", "mmlu", "gsm8k", "spelling")

# The run's own evaluations decode eagerly: a few small generate calls win back less than a compilation
# costs (bench/results/eval.md); `picochat eval chat` compiles where it can.
EVALUATIONS_COMPILE = False


def run_pipeline(preset_name: str = "cpu-demo", owner: str | None = None, force: bool = False) -> dict:
    """Run (or resume) every stage; return the summary that is also written to reports/run.json. A tokenizer
    or checkpoints that another preset made are refused, or with `force` replaced: the tokenizer atomically,
    the checkpoints by new runs beside them (the earlier run's move to previous-N/)."""
    if preset_name not in settings.RUN_PRESETS:
        raise UserError(f"unknown preset {preset_name!r}; choose one of {', '.join(settings.RUN_PRESETS)}")
    preset = settings.RUN_PRESETS[preset_name]
    timings: dict[str, float] = {}
    started = time.time()
    with stage("data", timings):
        corpus = build_data(preset)
    with stage("tokenizer", timings):
        tokenizer_path = train_tokenizer(preset, corpus, force)
    base_dir, sft_dir = checkpoints_dir() / "base", checkpoints_dir() / "sft"
    with stage("pretrain", timings):
        inputs = dict(corpus=corpus, tokenizer=tokenizer_path, run_dir=base_dir)
        base = train("pretrain", "base model", preset, force, **inputs)
    with stage("sft", timings):
        owned = {"owner": owner} if owner else {}
        chat = train("sft", "chat model", preset, force, base=base_dir, run_dir=sft_dir, **owned)
    with stage("evaluate", timings):
        model, tokenizer, _ = load_model(sft_dir, device=pick_device())
        probes = run_chat_probes(Engine(model, tokenizer, tool="calculator", compile=EVALUATIONS_COMPILE))
        print_probes(probes)
    benchmarks = {}
    if preset.benchmark_problems:
        with stage("benchmarks", timings):
            benchmarks = run_benchmark_subsets(base_dir, sft_dir, preset.benchmark_problems)
    summary = {
        "preset": preset_name,
        "base_val_bpb": base.last_eval["bpb"] if base else None,
        "base_steps": base.step if base else None,
        "sft_val_bpb": chat.last_eval["bpb"] if chat else None,
        "chat_probes": summarize(probes),
        "benchmarks": benchmarks,
        "chat_probe_replies": [asdict(p) | {"passed": p.passed} for p in probes],
        "stage_seconds": timings,
        "total_seconds": round(time.time() - started, 1),
        "machine": machine_info(),
    }
    atomic_write_json(reports_dir() / "run.json", summary, indent=2)
    report = write_report(samples=False)[0]  # the probes' replies are its sample conversations
    print_summary(summary, report)
    return summary


@contextmanager
def stage(name: str, timings: dict):
    print(f"\n=== {name} ===", flush=True)
    started = time.time()
    yield
    timings[name] = round(time.time() - started, 1)


def build_data(preset: settings.RunPreset) -> Path:
    corpus = data_dir() / preset.corpus
    if (corpus / "manifest.json").exists():
        print(f"corpus {corpus} is built; skipping")
    elif preset.corpus == "synthetic":
        write_synthetic_corpus(corpus, n_docs=600, seed=0)
    elif preset.corpus == "default":
        build_corpus("default")
    else:
        fetch_shard_set(get_source(preset.corpus), preset.shards)
    return corpus


def train_tokenizer(preset: settings.RunPreset, corpus: Path, force: bool = False) -> Path:
    directory, existing = tokenizer_dir(), None
    with suppress(UserError):
        existing = Tokenizer.load(directory)
    if existing is not None and existing.vocab_size == preset.vocab_size:
        print(f"tokenizer {directory} exists (vocab {existing.vocab_size}); skipping")
        return directory
    if existing is not None and not force:
        raise UserError(
            f"{directory} holds a {existing.vocab_size}-token tokenizer (another preset's); this preset needs "
            f"{preset.vocab_size}. Pass --force to replace it and train new models beside the old ones, or "
            "give this preset its own PICOCHAT_HOME"
        )
    started = time.time()
    documents = training_documents([corpus / "train"], doc_chars=10_000, total_chars=preset.tokenizer_chars)
    (tokenizer := Tokenizer.train(documents, vocab_size=preset.vocab_size)).save(directory)
    print(f"trained a {tokenizer.vocab_size}-token tokenizer in {time.time() - started:.1f}s -> {directory}")
    return directory


def train(
    command: str, label: str, preset: settings.RunPreset, force: bool = False, **overrides
) -> CheckpointMeta | None:
    """`picochat COMMAND --preset STAGES` with `overrides`, in this process or under torchrun, unless its run
    directory holds a finished run; the meta of the finished run's last checkpoint."""
    config_cls, presets, train_stage = STAGES[command]
    run_dir = overrides["run_dir"]
    if latest := trained_with_another_tokenizer(run_dir):
        if not force:
            raise UserError(
                f"{latest} holds a {label} trained with another tokenizer (another preset's); pass --force to "
                f"train a new one beside it (the old run moves to {run_dir}/previous-N/), or give this preset "
                "its own PICOCHAT_HOME"
            )
        overrides["resume"] = "never"
    config = settings.from_preset(config_cls, presets, preset.stages, **overrides)
    if "resume" not in overrides and (meta := training_complete(run_dir)):
        print(f"{label} {run_dir} is trained (step {meta.step}); skipping")
        return meta
    fetch_task_data(settings.conversation_mix(config))  # here, not in every torchrun rank
    if preset.torchrun:
        torchrun(
            [command, "--preset", preset.stages, *settings.as_flags(config_cls, overrides)], preset.processes
        )
    else:
        train_stage(config)
    return training_complete(run_dir)


def trained_with_another_tokenizer(run_dir: Path) -> Path | None:
    """The latest checkpoint in `run_dir` if its tokenizer is not the home's (another preset's run)."""
    latest = latest_checkpoint(run_dir, quiet=True)
    recorded = read_meta(latest).tokenizer_sha256 if latest else None
    mismatch = recorded is not None and recorded != tokenizer_fingerprint(Tokenizer.load(tokenizer_dir()))
    return latest if mismatch else None


def training_complete(run_dir: Path) -> CheckpointMeta | None:
    """The meta of a training run's last checkpoint if it reached its horizon, else None."""
    latest = latest_checkpoint(run_dir)
    meta = read_meta(latest) if latest else None
    return meta if meta and meta.total_steps and meta.step >= meta.total_steps and meta.last_eval else None


def run_benchmark_subsets(base_dir: Path, sft_dir: Path, problems: int) -> dict:
    """The base suite on the base model and the chat suite on the chat model, `problems` per task
    (fetching the benchmark data the first time); the headline numbers. A missing benchmark skips them:
    the models are trained, and that must not be undone."""
    try:
        fetch_benchmarks([*CORE_TASKS, *(t for t in RUN_CHAT_TASKS if t != "spelling")])
        base = evaluate_checkpoint("base", base_dir, settings.BaseSuiteOptions(max_per_task=problems))
        options = settings.ChatSuiteOptions(
            tasks=RUN_CHAT_TASKS, max_per_task=problems, compile=EVALUATIONS_COMPILE
        )
        chat = evaluate_checkpoint("chat", sft_dir, options)
    except (UserError, OSError) as exc:
        print(f"benchmarks skipped: {exc}\n(run `picochat eval fetch`, then `picochat eval base` / `chat`)")
        return {"skipped": str(exc)}
    return {
        "problems_per_task": problems,
        "base_core": base["core"],
        "chat_accuracy": {name: task["accuracy"] for name, task in chat["tasks"].items()},
    }


def print_summary(s: dict, report: Path) -> None:
    print("\n=== done ===")
    print(f"base model: validation {s['base_val_bpb']:.4f} bits per byte after {s['base_steps']} steps")
    print(f"chat probes: {s['chat_probes']}")
    if (bench := s["benchmarks"]).get("chat_accuracy"):
        accuracy = ", ".join(f"{name} {value:.3f}" for name, value in bench["chat_accuracy"].items())
        n, core = bench["problems_per_task"], bench["base_core"]
        print(f"benchmarks ({n} problems per task): base CORE {core:.4f}; chat {accuracy}")
    print(f"stage times (s): {s['stage_seconds']}")
    print(
        f'\nChat with your model:\n  picochat chat                 (interactive)\n  picochat chat -p "Who are you?"\n'
        f"(checkpoints in {checkpoints_dir()}, summary in {reports_dir() / 'run.json'}, report in {report})"
    )
