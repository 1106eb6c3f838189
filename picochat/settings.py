"""Every setting, declared once (`setting(...)` in a dataclass): flags, config files, presets, `--help`,
`--print-config` and validation all come from the declarations. A configuration is resolved in layers:

    declaration  <  stage defaults  <  preset  <  config file (--config, TOML)  <  flags

A bad value raises UserError naming the flag (or the file's key), the value and what is allowed, before
any work starts. No torch here: `--help` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from picochat.errors import UserError
from picochat.paths import check_writable, checkpoints_dir, data_dir, tokenizer_dir
from picochat.runtime import GPU_PEAKS

# Settings of which a layer (preset, file, flags) sets one: the others are cleared in that layer, so
# `--time-budget 10m` on a preset that trains a fixed number of steps trains for ten minutes.
HORIZON = "horizon"
DTYPES = ("auto", "bf16", "fp32", "fp16")
TOOLS = ("calculator", "python", "none")
SEED_MAX = 2**63 - 1  # torch.manual_seed takes a signed 64-bit integer
COMPILE = "decode through torch.compile (default: where it can run; --no-compile: eager)"
WORDS = {int: "an integer", float: "a finite number", bool: "true or false", Path: "a path", str: "a string"}
RULES = {"min", "max", "above", "choices", "pattern", "flag", "short", "parse", "group", "required"}


def setting(default: Any, help: str, **rules: Any) -> Any:
    """A dataclass field with its help and rules: min, max (inclusive), above (exclusive), choices, pattern,
    flag (if not --name-with-dashes), short (-p), parse (reads the flag's text), group (HORIZON), required.
    A callable default is called when a config is made."""
    if not rules.keys() <= RULES:
        raise TypeError(f"unknown rules {set(rules) - RULES}")
    make = {"default_factory" if callable(default) else "default": default}
    return field(**make, metadata={"help": help, **rules})


def parse_duration(text: str) -> float:
    """'90s', '10m', '1.5h' or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not match:
        raise UserError(f"cannot read the duration {text!r}; write it like 90s, 10m or 1.5h")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


def comma_list(text: str) -> tuple[str, ...]:
    """'arc_easy, mmlu' -> ('arc_easy', 'mmlu')."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


# --- training -----------------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    """The settings every training stage shares; a stage's config holds one as `train`."""

    # batch: tokens per optimizer step = device_batch × seq_len × world size × accumulation steps
    seq_len: int = setting(512, "context length in tokens", min=1)
    device_batch: int = setting(8, "rows per micro-batch on each device", min=1)
    batch_tokens: int = setting(16384, "tokens per optimizer step over all devices and micro-steps", min=1)
    # horizon: --steps, else --time-budget (else a stage's own, like pretraining's --ratio)
    steps: int | None = setting(None, "train for exactly this many optimizer steps", min=1, group=HORIZON)
    time_budget_s: float | None = setting(
        None,
        "wall-clock budget, e.g. 90s, 10m, 1.5h",
        above=0,
        flag="--time-budget",
        parse=parse_duration,
        group=HORIZON,
    )
    # optimisation (docs/training.md): AdamW for the embedding and head, Muon for the hidden matrices
    embedding_lr: float = setting(0.2, "AdamW learning rate of the token embedding (at width 768)", min=0)
    head_lr: float = setting(0.004, "AdamW learning rate of the LM head (at width 768)", min=0)
    matrix_lr: float = setting(0.02, "Muon learning rate of the hidden matrices", min=0)
    weight_decay: float = setting(0.0, "Muon weight decay", min=0)
    muon_momentum: float = setting(0.95, "Muon's momentum once its ramp from 0.85 is done", min=0, max=1)
    muon_ramp_steps: int = setting(300, "steps over which Muon's momentum ramps up from 0.85", min=0)
    ns_steps: int = setting(4, "Newton–Schulz iterations in Muon's orthogonalisation", choices=(3, 4, 5))
    scalar_lr: float = setting(0.05, "AdamW learning rate of the model options' scalars and gates", min=0)
    optimizer: str = setting(
        "muon", "optimizer of the matrices (adamw: to compare)", choices=("muon", "adamw")
    )
    adamw_matrix_lr: float = setting(0.003, "the matrices' rate with --optimizer adamw (at width 768)", min=0)
    lr_batch_scaling: bool = setting(False, "scale learning rates with √(batch tokens / 2^19)")
    schedule: str = setting("wsd", "learning-rate schedule", choices=("wsd", "cosine", "constant"))
    warmup_steps: int = setting(10, "linear warmup steps", min=0)
    warmdown_frac: float = setting(0.4, "share of training spent decaying the rate (wsd)", min=0, max=1)
    final_lr_frac: float = setting(0.0, "final learning rate as a share of the peak", min=0, max=1)
    grad_clip: float = setting(1.0, "clip the gradient norm to this (0: off)", min=0)
    # evaluation, logging, checkpoints
    eval_every: int = setting(0, "evaluate every N steps (0: only at the end)", min=0)
    eval_batches: int = setting(20, "validation batches per evaluation", min=1)
    sample_every: int = setting(0, "print sampled completions every N steps (0: only at the end)", min=0)
    log_every: int = setting(10, "print a progress line every N steps (without a terminal)", min=1)
    save_every: int = setting(0, "checkpoint every N steps (0: only before evals and at the end)", min=0)
    keep_last: int = setting(3, "checkpoints to keep (0: all)", min=0)
    run_dir: Path = setting(Path("run"), "where checkpoints and metrics.jsonl go")
    resume: str = setting("auto", "auto (the latest checkpoint in --run-dir), never, or a checkpoint path")
    restart_schedule: bool = setting(False, "resume the weights only: new optimizer, data and schedule")
    stop_after_steps: int | None = setting(None, "stop after this step as if interrupted (testing)", min=1)
    # machine
    dtype: str = setting("auto", "compute dtype", choices=DTYPES)
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps", pattern=r"auto|cpu|mps|cuda(:\d+)?")
    compile: bool = setting(False, "torch.compile the model")
    textbook: bool = setting(False, "every equation through equations.py, to step through (slow)")
    seed: int = setting(1337, "random seed", min=0, max=SEED_MAX)
    tensorboard: bool = setting(False, "also log to TensorBoard")
    wandb_project: str | None = setting(None, "log to this wandb project (if installed)", flag="--wandb")

    def check(self) -> None:
        """Rules between settings (each value alone is checked against its declaration)."""
        check_writable(self.run_dir, "--run-dir")
        if self.batch_tokens % (self.device_batch * self.seq_len):
            raise UserError(
                f"--batch-tokens {self.batch_tokens} is not a multiple of --device-batch × --seq-len = "
                f"{self.device_batch} × {self.seq_len} = {self.device_batch * self.seq_len}"
            )


TRAIN = {f.name for f in fields(TrainSettings)}


def stage_settings(run: str, **defaults: Any) -> Any:
    """The `train` field of a stage's config: TrainSettings with this stage's defaults, its checkpoints in
    $PICOCHAT_HOME/checkpoints/RUN (a callable default is called when a config is made)."""
    defaults["run_dir"] = lambda: checkpoints_dir() / run
    return field(
        default_factory=lambda: TrainSettings(**{k: v() if callable(v) else v for k, v in defaults.items()})
    )


@dataclass
class PretrainConfig:
    """`picochat pretrain` (picochat/pretrain.py): the shared settings and the base model's own."""

    train: TrainSettings = stage_settings("base")
    depth: int = setting(4, "number of Transformer blocks; width, heads and the rest follow from it", min=1)
    kv_groups: int = setting(1, "query heads per key/value head (grouped-query attention)", min=1)
    # the model's per-token options (docs/model.md): off, the model is transformers' `nanochat`
    value_embeds: bool = setting(False, "value embeddings gated into every other layer's values (no export)")
    resid_scalars: bool = setting(False, "per-layer learned scalars on residual and embedding (no export)")
    smear: bool = setting(False, "mix the previous token's embedding into each position, gated (no export)")
    backout: bool = setting(False, "subtract a learned share of the middle residual at the end (no export)")
    ratio: float | None = setting(20.0, "tokens: ratio × non-embedding parameters", above=0, group=HORIZON)
    corpus: Path = setting(lambda: data_dir() / "default", "corpus directory with train/ and val/ shards")
    tokenizer: Path = setting(tokenizer_dir, "tokenizer directory")
    chat_mix: str = setting("arithmetic:1,spelling:2", "task mixture of the conversation rows (--chat-share)")
    chat_share: float = setting(0.0, "share of rows that are conversations from --chat-mix", min=0, max=0.9)
    mid_share: float | None = setting(None, "mid-training's --chat-share (last --mid-frac)", min=0, max=0.9)
    mid_frac: float = setting(0.0, "mid-training: the last share of the steps, at --mid-share", min=0, max=1)


GPU_NODE = dict(seq_len=2048, device_batch=32, batch_tokens=524288, ratio=20.0, compile=True, warmup_steps=0)
# eval_every, eval_batches: about 8 or more validation points for the report's curve, at under 3 % of the
# steps (an evaluation costs eval_batches / (3 × accumulation) steps; docs/report.md)
GPU_LOGGING = dict(eval_every=400, eval_batches=20, sample_every=1000, log_every=10, save_every=1000)
PRETRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # tests and CI: a couple of layers, a few dozen steps, well under a minute
    "cpu-tiny": dict(depth=2, seq_len=128, device_batch=8, batch_tokens=1024, steps=40, warmup_steps=5,
                     eval_batches=4, log_every=10, matrix_lr=0.03),
    # the README's main job: the best base model ten minutes of a 2-core CPU can buy
    # (bench/results/levers.md has the comparison behind each setting)
    "cpu-demo": dict(depth=4, seq_len=256, device_batch=16, batch_tokens=8192, time_budget_s=600, compile=True,
                     matrix_lr=0.04, embedding_lr=0.4, head_lr=0.008, warmup_steps=0, warmdown_frac=0.65,
                     final_lr_frac=0.05, chat_share=0.25, eval_every=60, eval_batches=8, sample_every=200,
                     log_every=20),
    # an 8-GPU node: d12 (~GPT-2 small width) and d20, Chinchilla-style 20 tokens per parameter
    "gpu-d12": dict(depth=12, **GPU_NODE, **GPU_LOGGING),
    "gpu-d20": dict(depth=20, **GPU_NODE, **GPU_LOGGING),
    # the gpu presets' path on two CPU processes, every cadence due within a few steps (docs/gpu.md)
    "gpu-rehearsal": dict(depth=1, seq_len=64, device_batch=4, batch_tokens=512, steps=4, warmup_steps=0,
                          eval_every=2, eval_batches=2, sample_every=2, log_every=1, save_every=2, device="cpu",
                          dtype="fp32"),
}  # fmt: skip

# SFT and RL start from a trained model: no warmup, the rate decays over the whole run
FINE_TUNING = dict(warmup_steps=0, warmdown_frac=1.0, keep_last=2)

# what SFT trains on, weighted to the skills the chat probes check, and a conversation's parts: small talk,
# questions about others, word problems, second turns (bench/results/levers.md); the checkpoint records it,
# and `picochat eval contamination` samples the mixture recorded
SFT_MIXTURE = "identity:varied:2,arithmetic:stories:4,spelling:4,smalltalk:2,multiturn:2,chitchat:1,gym:1"


def conversation_mix(config: PretrainConfig | SFTConfig) -> str:
    """The task mixture whose conversations a stage trains on ("" if none): what its tasks need fetched."""
    if isinstance(config, PretrainConfig):
        return config.chat_mix if config.chat_share or config.mid_share else ""
    return config.mix


@dataclass
class SFTConfig:
    """`picochat sft` (picochat/sft.py): the shared settings, with SFT's defaults, and SFT's own."""

    train: TrainSettings = stage_settings(
        "sft", batch_tokens=8192, steps=300, eval_batches=8, seed=7, **FINE_TUNING
    )
    base: Path = setting(lambda: checkpoints_dir() / "base", "the pretrained checkpoint or run directory")
    mix: str = setting(SFT_MIXTURE, "task mixture, e.g. identity:2,arithmetic:3,jsonl:PATH:1")
    owner: str = setting("my user", "who trained the model, as the identity conversations say")
    lr_frac: float = setting(0.3, "learning rates as a fraction of pretraining's", above=0)


SFT_PRESETS: dict[str, dict[str, Any]] = {
    "cpu-tiny": dict(mix="identity:2,arithmetic:2,spelling:1", seq_len=128, device_batch=8, batch_tokens=1024,
                     steps=30, log_every=10),
    # four minutes after cpu-demo's pretraining, at its full learning rates
    "cpu-demo": dict(seq_len=256, device_batch=16, batch_tokens=4096, time_budget_s=240, compile=True,
                     log_every=20, lr_frac=1.0),
    "gpu-d12": dict(seq_len=2048, device_batch=16, batch_tokens=262144, steps=300, log_every=10),
    "gpu-d20": dict(seq_len=2048, device_batch=16, batch_tokens=262144, steps=600, log_every=10),
    # without chitchat, whose data comes from PyPI: the rehearsal reaches no server but its stand-in
    "gpu-rehearsal": dict(mix="identity:2,arithmetic:4,spelling:4,gym:1", seq_len=64, device_batch=4,
                          batch_tokens=512, steps=4, log_every=1, device="cpu", dtype="fp32"),
}  # fmt: skip


@dataclass
class RLConfig:
    """`picochat rl` (picochat/rl.py): the shared settings, with RL's defaults, and GRPO's own.

    A step is prompts_per_step × group_size replies (rows) of at most --seq-len tokens: --batch-tokens
    follows from them."""

    train: TrainSettings = stage_settings(
        "rl", device_batch=32, steps=40, log_every=5, save_every=10, seed=11, **FINE_TUNING
    )
    base: Path = setting(lambda: checkpoints_dir() / "sft", "the chat checkpoint or run directory")
    tasks: str = setting(
        "gym:basic_arithmetic:2,arithmetic:worded:1,spelling:1",  # the mix docs/rl.md measures
        "checkable tasks with weights, e.g. arithmetic:2,spelling:1,gym:letter_counting:1",
    )
    prompts_per_step: int = setting(16, "problems per optimizer step, all devices together", min=1)
    group_size: int = setting(8, "replies sampled per problem (G); advantages compare them", min=2)
    max_new_tokens: int = setting(96, "tokens per reply, tool outputs included", min=1)
    temperature: float = setting(0.5, "sampling temperature (tiny models need < 1 to ever be right)", above=0)
    top_k: int | None = setting(None, "sample only from the k most likely tokens", min=1)
    tool: str = setting("calculator", "the tool replies may call", choices=TOOLS)
    kl_coef: float = setting(0.0, "weight of the KL penalty to the starting model (0: off)", min=0)
    clip_eps: float = setting(0.2, "PPO ratio clip (with --updates-per-batch > 1)", above=0, max=1)
    updates_per_batch: int = setting(1, "optimizer steps on each sampled batch", min=1)
    eval_problems: int = setting(50, "held-out problems per task at each evaluation", min=1)
    eval_before: bool = setting(True, "evaluate the starting model before a fresh run")
    lr_frac: float = setting(0.05, "learning rates as a fraction of pretraining's", above=0)
    rollout_compile: bool = setting(True, "sample and evaluate through torch.compile where it can run")

    def __post_init__(self):
        if self.train.batch_tokens != self.rows_per_step * self.train.seq_len:
            self.train = dataclasses.replace(self.train, batch_tokens=self.rows_per_step * self.train.seq_len)

    @property  # replies per optimizer step
    def rows_per_step(self) -> int:
        return self.prompts_per_step * self.group_size

    def check(self) -> None:
        t = self.train
        if t.device_batch % self.group_size:
            raise UserError(
                f"--device-batch {t.device_batch} must be a multiple of --group-size {self.group_size}: "
                "a micro-batch holds whole groups of replies"
            )
        if self.rows_per_step % t.device_batch:
            raise UserError(
                f"--prompts-per-step × --group-size = {self.rows_per_step} replies must be a multiple of "
                f"--device-batch {t.device_batch}"
            )
        if self.max_new_tokens >= t.seq_len:
            raise UserError(
                f"--max-new-tokens {self.max_new_tokens} leaves no room for the prompt in a row of --seq-len {t.seq_len}"
            )


# ten minutes of GRPO on the cpu-demo chat model, the run bench/results/rl.md measures
RL_PRESETS: dict[str, dict[str, Any]] = {"cpu-demo": dict(time_budget_s=600)}


@dataclass(frozen=True)
class RunPreset:
    """`picochat run --preset NAME`: the corpus and tokenizer, then the stages' presets named `stages`."""

    stages: str
    vocab_size: int
    tokenizer_chars: int  # characters of the train split the tokenizer learns from
    corpus: str  # "synthetic" (generated, offline), "default" (built from packages) or a Hub shard set
    shards: int = 0  # a Hub shard set: how many of its training shards
    torchrun: bool = False  # train on every visible GPU, one process each
    processes: int = 0  # under torchrun: this many CPU processes instead (0: one per GPU)
    benchmark_problems: int = 0  # per task, for the benchmark subsets at the end (0: skip them)


GPU_RUN = dict(vocab_size=65536, tokenizer_chars=2 * 10**9, corpus="fineweb-edu-100b", torchrun=True)
RUN_PRESETS = {
    "cpu-tiny": RunPreset("cpu-tiny", 512, 2_000_000, "synthetic"),
    "cpu-demo": RunPreset("cpu-demo", 4096, 30_000_000, "default", benchmark_problems=40),
    # an 8-GPU node, nanochat's speedrun in one command: d20 on ~9.5 B FineWeb-Edu tokens (docs/gpu.md)
    "gpu": RunPreset("gpu-d20", shards=240, benchmark_problems=500, **GPU_RUN),
    "gpu-d12": RunPreset("gpu-d12", shards=60, benchmark_problems=500, **GPU_RUN),
    # every stage of `gpu`, in its order, through torchrun with two CPU processes: what CI rehearses
    "gpu-rehearsal": RunPreset(
        "gpu-rehearsal",
        512,
        200_000,
        "fineweb-edu-100b",
        shards=2,
        torchrun=True,
        processes=2,
        benchmark_problems=2,
    ),
}

# --- planning a GPU run (picochat/plan.py) -----------------------------------------------------------


@dataclass(frozen=True)
class GPU:
    memory_bytes: float  # what the datasheet sells (the driver and the allocator's cache keep a little)
    peak_flops: float  # dense bf16


GPUS = {
    "h100": GPU(80e9, GPU_PEAKS["H100"]),
    "h200": GPU(141e9, GPU_PEAKS["H200"]),
    "a100": GPU(80e9, GPU_PEAKS["A100"]),
    "a100-40": GPU(40e9, GPU_PEAKS["A100"]),
    "l40s": GPU(48e9, GPU_PEAKS["L40S"]),
    "a10": GPU(24e9, GPU_PEAKS["A10"]),
    "4090": GPU(24e9, GPU_PEAKS["4090"]),
}


def add_plan_flags(parser) -> None:
    """--plan, --gpu and --gpus: what `picochat pretrain` and `picochat run` share."""
    parser.add_argument("--plan", action="store_true", help="print the memory and time plan and exit")
    parser.add_argument("--gpu", default="h100", choices=list(GPUS), help="the GPU a --plan is for")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs a --plan trains on (default: 8)")


# --- chat, serve, eval --------------------------------------------------------------------------------


@dataclass
class ModelOptions:
    """Which checkpoint a command loads, and its compute dtype."""

    checkpoint: Path | None = setting(None, "checkpoint or run dir (default: SFT, else base; eval: base)")
    dtype: str = setting("auto", "compute dtype", choices=DTYPES)


@dataclass
class DecodeOptions(ModelOptions):
    """What the terminal chat and the server share: how the engine decodes and which tool it runs."""

    compile: bool | None = setting(None, COMPILE)
    tool: str = setting("calculator", "what runs the model's <|python_start|> calls", choices=TOOLS)


@dataclass
class ChatOptions(DecodeOptions):
    """`picochat chat` (picochat/chat_cli.py); `/temperature` in the chat is checked by --temperature's rules."""

    # the first replies must not wait for a compilation: eager at once, the compiled step warmed meanwhile
    compile: bool | None = setting(
        None, "torch.compile the decode step first (default: eager while it compiles in the background)"
    )
    prompt: str | None = setting(None, "answer this one message and exit (for scripts)", short="-p")
    system: str | None = setting(None, "a system prompt that opens the conversation")
    temperature: float = setting(0.6, "0 = always the most likely token", min=0)
    top_k: int = setting(50, "sample among the k most likely tokens", min=1)
    top_p: float | None = setting(None, "sample among the likeliest tokens worth p", above=0, max=1)
    min_p: float | None = setting(None, "drop tokens under min_p × the likeliest one", min=0, max=1)
    stop: tuple[str, ...] = setting((), "end a reply before this text (repeatable)")
    max_tokens: int = setting(512, "longest reply, in tokens", min=1)
    seed: int | None = setting(None, "seed for reproducible sampling", min=0, max=SEED_MAX)
    unsafe_python: bool = setting(False, "--tool python without the sandbox's walls (no Linux namespaces)")
    textbook: bool = setting(False, "every equation through picochat/equations.py (slow; to study)")

    def check(self) -> None:
        if self.prompt is not None and not self.prompt.strip():
            raise UserError('-p needs a non-empty prompt, e.g. -p "What is 2+3?"')


@dataclass
class ServeOptions(DecodeOptions):
    """`picochat serve` (picochat/serve/): the keywords of `serve()`."""

    host: str = setting("127.0.0.1", "address to listen on (default: this machine only)")
    port: int = setting(8000, "port to listen on", min=1, max=65535)
    api_key: str | None = setting(None, "require 'Authorization: Bearer KEY' (default: $PICOCHAT_API_KEY)")
    slots: int = setting(32, "sequences decoded together (in banks of 32; 8 is faster for one user)", min=1)
    context: int | None = setting(None, "longest prompt + reply in tokens (default: the model's)", min=2)
    max_queue: int = setting(64, "requests that may wait for a slot; more get a 503", min=1)
    max_body: int = setting(2**20, "largest request body in bytes; larger get a 413", min=1024)
    cors_origin: tuple[str, ...] = setting((), "web pages from these origins may call the API (*: any)")


@dataclass
class BpbOptions(ModelOptions):
    """`picochat eval`: validation bits per byte of a checkpoint."""

    corpus: Path = setting(lambda: data_dir() / "default", "corpus with a val/ split")
    batches: int = setting(20, "validation batches", min=1, max=100_000)
    batch_size: int = setting(8, "rows per batch", min=1, max=4096)
    probes: bool = setting(False, "also ask the chat probes (for chat models)")


@dataclass
class SuiteOptions(ModelOptions):
    """`picochat eval base|chat` (picochat/evaluation/suite.py): which problems each task asks."""

    tasks: tuple[str, ...] = setting((), "comma-separated tasks (base: name:shots)", parse=comma_list)
    max_per_task: int = setting(500, "problems per task, a seeded sample (0: all)", min=0)
    seed: int = setting(1234, "seed for few-shot examples and the sample", min=0, max=SEED_MAX)
    benchmarks_root: Path | None = None  # not a flag: where the benchmarks are (None: $PICOCHAT_HOME/eval)


@dataclass
class BaseSuiteOptions(SuiteOptions):
    """The base-model suite (log-likelihood, few-shot)."""

    shots: int | None = setting(None, "override every task's shots", min=0)
    rule: str = setting(
        "per-token", "how a choice wins (docs/evaluation.md)", choices=("per-token", "acc", "acc_norm")
    )
    batch_tokens: int | None = setting(None, "rows × longest row per forward (CPU 1024, GPU 65536)", min=1)


@dataclass
class ChatSuiteOptions(SuiteOptions):
    """The chat suite (lettered choices, GSM8K, code, spelling)."""

    batch_size: int = setting(16, "prompts per forward or generate call", min=1)
    samples: int = setting(1, "samples per code problem (pass@k)", min=1)
    temperature: float = setting(0.8, "temperature when --samples > 1", min=0)
    timeout_s: float = setting(10.0, "seconds per program in the sandbox", above=0, flag="--timeout")
    compile: bool | None = setting(None, COMPILE)


@dataclass
class BenchmarkOptions:
    """Fetch and convert the benchmark data."""

    tasks: tuple[str, ...] = setting((), "comma-separated benchmark tasks (default: all)", parse=comma_list)


@dataclass
class ContaminationOptions(BenchmarkOptions):
    """N-gram overlap between SFT's mixture and the fetched benchmarks."""

    mixture: str | None = setting(
        None, "the task mixture to sample (default: the one --checkpoint trained on)"
    )
    checkpoint: Path | None = setting(None, "the SFT checkpoint or run whose mixture to check (default: sft)")
    conversations: int = setting(5000, "conversations to sample", min=1)
    threshold: float = setting(0.01, "largest allowed share of a benchmark's problems", min=0, max=1)
    ngram: int = setting(13, "n-gram length in words", min=1)


# --- the declarations, read ---------------------------------------------------------------------------


class Declared(NamedTuple):
    flag: str  # --seq-len
    kind: type  # int, float, bool, str, Path or tuple
    item: type | None  # a tuple's items: str or Path
    optional: bool  # None is allowed
    meta: Mapping[str, Any]  # help and the rules


@functools.cache
def declared(cls: type) -> dict[str, Declared]:
    """Every setting of an options class by name, a stage's `train` flattened in (fields without help are
    not settings)."""
    out, hints = {}, typing.get_type_hints(cls)
    for f in fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(declared(hints[f.name]))
        elif "help" in f.metadata:
            # (int, NoneType) for int | None; (str, Ellipsis) for tuple[str, ...]
            args = typing.get_args(hints[f.name])
            optional, kind = type(None) in args, typing.get_origin(hints[f.name]) or hints[f.name]
            kind = args[0] if optional else kind
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            out[f.name] = Declared(flag, kind, args[0] if kind is tuple else None, optional, f.metadata)
    return out


def allowed(d: Declared) -> str:
    """What a setting accepts, in words: 'an integer ≥ 1', 'one of wsd, cosine, constant'."""
    m = d.meta
    if "choices" in m or "pattern" in m:
        return (
            "one of " + ", ".join(map(str, m["choices"]))
            if "choices" in m
            else f"a value matching {m['pattern']}"
        )
    text = f"a list of {WORDS[d.item].split()[-1]}s" if d.kind is tuple else WORDS[d.kind]
    bounds = [f"{sign} {m[key]:g}" for key, sign in (("above", ">"), ("min", "≥"), ("max", "≤")) if key in m]
    return " ".join([text, " and ".join(bounds)]).strip() + (" (or unset)" if d.optional else "")


def convert(d: Declared, value: Any) -> Any:
    """`value` (a flag's text, or a value from a file or from Python) as the setting's type; ValueError if
    it is not one. Floats must be finite; booleans are never taken for numbers."""
    kind = d.kind
    if isinstance(value, str) and kind in (int, float):
        value = kind(value)
    elif isinstance(value, str) and kind is bool and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    elif isinstance(value, (str, Path)) and kind is Path and str(value).strip():
        value = Path(value).expanduser()
    elif isinstance(value, (list, tuple)) and kind is tuple:
        value = tuple(convert(d._replace(kind=d.item), v) for v in value)
    if kind is float and type(value) is int:
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"not a {kind.__name__}: {value!r}")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"not finite: {value!r}")
    return value


def check_value(cls: type, name: str, value: Any, label: str | None = None) -> Any:
    """`value` converted to the setting's type and checked against its rules; UserError naming `label`
    (the flag, or the file and key), the value and what is allowed."""
    d = declared(cls)[name]
    label, m = label or d.flag, d.meta
    if value is None and d.optional:
        return None
    try:
        value = m["parse"](value) if isinstance(value, str) and "parse" in m else value
    except UserError as error:
        raise UserError(f"{label} {value!r}: {error}") from None
    try:
        value = convert(d, value)
    except (ValueError, TypeError):
        raise UserError(f"{label} {value!r}: expected {allowed(d)}") from None
    if (
        ("choices" in m and value not in m["choices"])
        or ("pattern" in m and not re.fullmatch(m["pattern"], value))
        or ("above" in m and not value > m["above"])
        or ("min" in m and value < m["min"])
        or ("max" in m and value > m["max"])
    ):
        raise UserError(f"{label} {value!r}: expected {allowed(d)}")
    return value


# --- building and reading configurations --------------------------------------------------------------


def flat(config) -> dict[str, Any]:
    """Every setting of a configuration by name (a stage's shared ones and its own)."""
    shared = TRAIN if hasattr(config, "train") else set()
    return {n: getattr(config.train if n in shared else config, n) for n in declared(type(config))}


def with_settings(config, **values: Any):
    """A copy of `config` with settings replaced by name, shared or own; a layer that sets a horizon setting
    (steps, time budget, ratio) clears the others."""
    names = known(type(config), values)
    groups = {names[k].meta.get("group") for k in values} - {None}
    values = {**{k: None for k, d in names.items() if d.meta.get("group") in groups}, **values}
    shared = {k: v for k, v in values.items() if k in TRAIN and hasattr(config, "train")}
    own = {k: v for k, v in values.items() if k not in shared}
    if shared:
        own["train"] = dataclasses.replace(config.train, **shared)
    return dataclasses.replace(config, **own)


def known(config_cls: type, values: Mapping[str, Any], where: str = "") -> dict[str, Declared]:
    """The declarations of `config_cls`; UserError if `values` names a setting it does not have."""
    names = declared(config_cls)
    for name in values.keys() - names.keys():
        raise UserError(f"{where}unknown setting {name!r}; known: {', '.join(names)}")
    return names


def validate(config) -> None:
    """Check every setting of a config against its declaration, then the rules between settings."""
    for name, value in flat(config).items():
        check_value(type(config), name, value)
    for part in (getattr(config, "train", None), config):
        if hasattr(part, "check"):
            part.check()


def read_config_file(config_cls: type, path: Path) -> dict[str, Any]:
    """A TOML file of settings by name (`seq_len = 256`), checked like flags; unknown keys are errors."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"cannot read the config file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise UserError(
            f"{path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at {error.start})"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path} is not valid TOML: {error}") from None
    known(config_cls, data, where=f"{path}: ")
    return {key: check_value(config_cls, key, value, f"{path}: {key} =") for key, value in data.items()}


def resolve(config_cls: type, layers: list[dict[str, Any]]):
    """The defaults with each layer of settings applied in turn (preset, file, flags), checked."""
    config = config_cls()
    for layer in layers:
        config = with_settings(config, **layer)
    validate(config)
    return config


def from_preset(config_cls: type, presets: dict[str, dict[str, Any]], name: str, **overrides: Any):
    """A stage's config: its defaults, then preset `name`, then `overrides` (from Python), checked."""
    if name not in presets:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(presets)}")
    return resolve(config_cls, [presets[name], overrides])


def recorded(config) -> dict[str, Any]:
    """The resolved configuration as JSON (a path as text, a tuple as a list): what a checkpoint keeps."""
    items = flat(config).items()
    return {
        k: list(map(str, v)) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v
        for k, v in items
    }


def describe(config) -> str:
    """The resolved configuration as TOML that `--config` reads back (unset settings commented out)."""
    items = recorded(config).items()
    lines = [
        f"# {k} = (unset)" if v is None else f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in items
    ]
    return "\n".join(lines).replace("\x7f", "\\u007f") + "\n"  # TOML, unlike JSON, escapes DEL


def changed(saved: dict[str, Any], now: dict[str, Any]):
    """(name, saved value, current value) for each setting that differs between two records."""
    return [(k, saved[k], v) for k, v in now.items() if k in saved and saved[k] != v]


# --- the command line ---------------------------------------------------------------------------------


def add_command(subparsers, name: str, run: Callable | None, cls: type | None = None, help="", **presets):
    """A subcommand `name` that calls `run`, with one flag per setting `cls` declares (`add_flags`); its help
    is `help`, else the first line of `cls`'s docstring."""
    help = help or cls.__doc__.splitlines()[0]
    parser = subparsers.add_parser(name, help=help, description=help)
    if cls is not None:
        add_flags(parser, cls, **presets)
    parser.set_defaults(func=run)
    return parser


def add_flags(parser, cls: type, presets: dict | None = None, default_preset: str | None = None) -> None:
    """One flag per declared setting, its help showing the default and each preset's value; then --preset,
    --config FILE and --print-config. A flag not given sets nothing, so the layers below it stand."""
    unset = argparse.SUPPRESS
    if presets:
        help = f"a set of settings to start from (default: {default_preset}, marked * below)"
        parser.add_argument("--preset", default=default_preset, choices=list(presets), help=help)
    help = "a TOML file of settings by name (seq_len = 256); flags win over it"
    parser.add_argument("--config", type=Path, metavar="FILE", default=unset, help=help)
    help = "print the resolved configuration and exit"
    parser.add_argument("--print-config", action="store_true", default=unset, help=help)
    defaults = flat(cls())
    for name, d in declared(cls).items():
        notes = [] if "default:" in d.meta["help"] else [f"default: {shown(defaults[name])}"]
        marked = {p + "*" * (p == default_preset): v for p, v in (presets or {}).items()}
        notes += [f"{p}: {shown(v[name])}" for p, v in marked.items() if name in v]
        help = d.meta["help"] + f" ({'; '.join(notes)})" * bool(notes)
        flags = [d.meta["short"], d.flag] if "short" in d.meta else [d.flag]
        form = dict(dest=name, default=unset, required="required" in d.meta, **flag_form(d))
        parser.add_argument(*flags, help=help.replace("%", "%%"), **form)
    if "resume" in defaults:
        help = "start fresh even if the run directory holds checkpoints (--resume never)"
        form = dict(dest="resume", action="store_const", const="never", default=unset)
        parser.add_argument("--no-resume", help=help, **form)
    parser.set_defaults(settings=cls, presets=presets)


def shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return "unset" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def flag_form(d: Declared) -> dict[str, Any]:
    """How argparse reads a setting's flag: --x/--no-x for a boolean, one or more values for a list."""
    if d.kind is bool:
        return dict(action=argparse.BooleanOptionalAction)
    if d.kind is tuple and "parse" not in d.meta:
        return dict(nargs="+", action="extend", metavar=d.item.__name__.upper())
    named = {parse_duration: "DURATION", comma_list: "A,B"}.get(d.meta.get("parse"))
    return dict(metavar="|".join(map(str, d.meta.get("choices", ()))) or named or d.kind.__name__.upper())


def config_from_args(args, config_cls: type, presets: dict | None = None):
    """The configuration the command line asks for: preset, then --config FILE, then each flag given."""
    layers = [presets[args.preset]] if presets and args.preset else []
    if getattr(args, "config", None) is not None:
        layers.append(read_config_file(config_cls, args.config))
    layers.append(
        {n: check_value(config_cls, n, getattr(args, n)) for n in declared(config_cls) if hasattr(args, n)}
    )
    return resolve(config_cls, layers)


def as_flags(config_cls: type, values: Mapping[str, Any]) -> list[str]:
    """Settings by name as a child process's flags: {"compile": False, "seq_len": 256} -> ["--no-compile",
    "--seq-len=256"]. None is left out: the default stands, or a horizon setting beside it clears it."""
    names, out = known(config_cls, values), []
    for name, value in values.items():
        d = names[name]
        if d.kind is bool and value is not None:
            out.append(d.flag if value else "--no-" + d.flag[2:])
        elif d.kind is tuple and "parse" not in d.meta:
            out += [d.flag, *map(str, value)]
        elif value is not None:
            out.append(f"{d.flag}={','.join(value) if d.kind is tuple else value}")
    return out
