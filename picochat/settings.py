"""Training settings, each declared once: its type, default, help and allowed range.

Flags, config files, presets, `--help`, `--print-config` and validation are all derived from the
declarations below; adding a setting means declaring it here (or in a stage's config) and using it.

    TrainSettings     what every training stage shares: batch, horizon, optimiser, schedule, evaluation,
                      checkpoints, machine
    setting(...)      declares one field: default, help and what is allowed (min, max, above, choices)
    stage_settings()  a stage's own defaults for the shared settings (SFT trains 300 steps, say)

A stage's config holds the shared settings as `train` next to its own fields (picochat/pretrain.py):

    @dataclass
    class PretrainConfig:
        train: TrainSettings = stage_settings(run_dir=lambda: checkpoints_dir() / "base")
        depth: int = setting(4, "number of Transformer blocks", min=1)

A configuration is resolved in layers, each overriding the one before by name:

    declaration  <  stage defaults  <  preset  <  config file (--config, TOML)  <  flags

Every value is converted and checked at that boundary: a bad one raises UserError naming the flag (or
the file's key), the value and what is allowed, before any work starts. This module stays free of torch,
so building the command line is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from picochat.errors import UserError
from picochat.paths import checkpoints_dir, data_dir, tokenizer_dir

# Settings of which a layer (preset, file, flags) sets one: the others are cleared in that layer, so
# `--time-budget 10m` on a preset that trains a fixed number of steps trains for ten minutes.
HORIZON = "horizon"


def setting(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
    pattern: str | None = None,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
    group: str | None = None,
) -> Any:
    """A dataclass field with what the command line and the validation need to know about it.

    min/max: inclusive bounds; above: an exclusive lower bound; choices: the allowed strings; pattern: a
    regular expression the string must match; flag: the flag if not --name-with-dashes; parse: reads the
    flag's text (`parse_duration`); group: settings of which one layer sets one (HORIZON).
    """
    meta = {name: value for name, value in locals().items() if name != "default"}  # help, min, max, ...
    if callable(default):  # a default computed when the config is made (paths under $PICOCHAT_HOME)
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def parse_duration(text: str) -> float:
    """'90s', '10m', '1.5h' or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not match:
        raise UserError(f"cannot read the duration {text!r}; write it like 90s, 10m or 1.5h")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


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
    dtype: str = setting("auto", "compute dtype", choices=("auto", "bf16", "fp32", "fp16"))
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps", pattern=r"auto|cpu|mps|cuda(:\d+)?")
    compile: bool = setting(False, "torch.compile the model")
    textbook: bool = setting(False, "every equation through equations.py, to step through (slow)")
    seed: int = setting(1337, "random seed", min=0)
    tensorboard: bool = setting(False, "also log to TensorBoard")
    wandb_project: str | None = setting(None, "log to this wandb project (if installed)", flag="--wandb")

    def check(self) -> None:
        """Rules between settings (each value alone is checked by `check_value`)."""
        if self.batch_tokens % (self.device_batch * self.seq_len):
            raise UserError(
                f"--batch-tokens {self.batch_tokens} is not a multiple of --device-batch × --seq-len = "
                f"{self.device_batch} × {self.seq_len} = {self.device_batch * self.seq_len}"
            )


def stage_settings(**defaults: Any) -> Any:
    """The `train` field of a stage's config: TrainSettings with this stage's defaults (a callable default
    is called when a config is made)."""

    def make() -> TrainSettings:
        return TrainSettings(**{k: v() if callable(v) else v for k, v in defaults.items()})

    return field(default_factory=make)


# --- the stages' configs ------------------------------------------------------------------------------


@dataclass
class PretrainConfig:
    """`picochat pretrain` (picochat/pretrain.py): the shared settings and the base model's own."""

    train: TrainSettings = stage_settings(run_dir=lambda: checkpoints_dir() / "base")
    depth: int = setting(4, "number of Transformer blocks; width, heads and the rest follow from it", min=1)
    kv_groups: int = setting(1, "query heads per key/value head (grouped-query attention)", min=1)
    ratio: float | None = setting(
        20.0,
        "train for ratio × non-embedding parameters tokens (if no --steps or --time-budget)",
        above=0,
        group=HORIZON,
    )
    corpus: Path = setting(lambda: data_dir() / "default", "corpus directory with train/ and val/ shards")
    tokenizer: Path = setting(tokenizer_dir, "tokenizer directory")
    chat_mix: str = setting("arithmetic:1,spelling:2", "task mixture of the conversation rows (--chat-share)")
    chat_share: float = setting(0.0, "share of each batch's rows that are conversations from --chat-mix, "
                                "only the assistant's tokens learned (0: corpus only)", min=0, max=0.9)  # fmt: skip
    mid_share: float | None = setting(None, "mid-training: the share of conversation rows over the last "
                                      "--mid-frac of the steps (default: --chat-share throughout)", min=0,
                                      max=0.9)  # fmt: skip
    mid_frac: float = setting(0.0, "mid-training: the last fraction of the steps that take --mid-share", min=0,
                              max=1)  # fmt: skip


PRETRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # tests and CI: a couple of layers, a few dozen steps, well under a minute
    "cpu-tiny": dict(depth=2, seq_len=128, device_batch=8, batch_tokens=1024, steps=40, warmup_steps=5,
                     eval_batches=4, log_every=10, matrix_lr=0.03),
    # the README's main job: the best base model ten minutes of a 2-core CPU can buy
    # (bench/results/levers.md: each setting measured against the one before)
    "cpu-demo": dict(depth=4, seq_len=256, device_batch=16, batch_tokens=8192, time_budget_s=600, compile=True,
                     matrix_lr=0.04, embedding_lr=0.4, head_lr=0.008, warmup_steps=0, warmdown_frac=0.65,
                     final_lr_frac=0.05, chat_share=0.25, eval_every=200, eval_batches=20, sample_every=200,
                     log_every=20),
    # an 8-GPU node: d12 (~GPT-2 small width) and d20, Chinchilla-style 20 tokens per parameter
    "gpu-d12": dict(depth=12, seq_len=2048, device_batch=32, batch_tokens=524288, ratio=20.0, compile=True,
                    eval_every=250, eval_batches=40, sample_every=1000, log_every=10, save_every=1000,
                    warmup_steps=0),
    "gpu-d20": dict(depth=20, seq_len=2048, device_batch=32, batch_tokens=524288, ratio=20.0, compile=True,
                    eval_every=250, eval_batches=40, sample_every=1000, log_every=10, save_every=1000,
                    warmup_steps=0),
}  # fmt: skip


@dataclass
class SFTConfig:
    """`picochat sft` (picochat/sft.py): the shared settings, with SFT's defaults, and SFT's own."""

    train: TrainSettings = stage_settings(
        batch_tokens=8192,
        steps=300,
        warmup_steps=0,
        warmdown_frac=1.0,
        eval_batches=8,
        keep_last=2,
        seed=7,
        run_dir=lambda: checkpoints_dir() / "sft",
    )
    base: Path = setting(lambda: checkpoints_dir() / "base", "the pretrained checkpoint or run directory")
    mix: str = setting(
        "identity:2,arithmetic:3,spelling:2,chitchat:2,gym:2",
        "task mixture, e.g. identity:2,arithmetic:3,jsonl:PATH:1",
    )
    owner: str = setting("my user", "who trained the model, as the identity conversations say")
    lr_frac: float = setting(0.3, "learning rates as a fraction of pretraining's", above=0)


@dataclass
class RLConfig:
    """`picochat rl` (picochat/rl.py): the shared settings, with RL's defaults, and GRPO's own.

    A step is prompts_per_step × group_size replies; --device-batch counts replies (rows) per micro-step and
    --seq-len caps a row (prompt + reply), so --batch-tokens, a step's capacity, follows from them: RL sets
    it to prompts_per_step × group_size × seq_len whenever the config changes.
    """

    train: TrainSettings = stage_settings(device_batch=32, seq_len=512, batch_tokens=16 * 8 * 512, steps=40,
                                          warmup_steps=0, warmdown_frac=1.0, log_every=5, save_every=10,
                                          keep_last=2, seed=11, run_dir=lambda: checkpoints_dir() / "rl")  # fmt: skip
    base: Path = setting(
        lambda: checkpoints_dir() / "sft", "the chat checkpoint or run directory to start from"
    )
    tasks: str = setting("gym:basic_arithmetic:2,arithmetic:worded:1,spelling:1",  # measured: docs/rl.md
                         "checkable tasks with weights, e.g. arithmetic:2,spelling:1,gym:letter_counting:1")  # fmt: skip
    prompts_per_step: int = setting(16, "problems per optimizer step, all devices together", min=1)
    group_size: int = setting(8, "replies sampled per problem (G); advantages compare them", min=2)
    max_new_tokens: int = setting(96, "tokens per reply, tool outputs included", min=1)
    temperature: float = setting(0.5, "sampling temperature of the replies (tiny models need < 1 to ever be right)",
                                 above=0)  # fmt: skip
    top_k: int | None = setting(None, "sample only from the k most likely tokens", min=1)
    tool: str = setting("calculator", "the tool replies may call", choices=("calculator", "python", "none"))
    kl_coef: float = setting(0.0, "weight of the KL penalty to the starting model (0: off)", min=0)
    clip_eps: float = setting(0.2, "PPO ratio clip when a batch is reused (--updates-per-batch > 1)", above=0,
                              max=1)  # fmt: skip
    updates_per_batch: int = setting(1, "optimizer steps on each sampled batch", min=1)
    eval_problems: int = setting(50, "held-out problems per task at each evaluation", min=1)
    eval_before: bool = setting(True, "evaluate the starting model before a fresh run")
    lr_frac: float = setting(0.05, "learning rates as a fraction of pretraining's", above=0)
    rollout_compile: bool = setting(True, "sample replies and evaluate through the compiled decode step "
                                          "(where torch.compile can run; off: eager)")  # fmt: skip

    def __post_init__(self):
        if self.train.batch_tokens != self.rows_per_step * self.train.seq_len:
            self.train = dataclasses.replace(self.train, batch_tokens=self.rows_per_step * self.train.seq_len)

    @property
    def rows_per_step(self) -> int:
        return self.prompts_per_step * self.group_size

    def check(self) -> None:
        t = self.train
        if t.device_batch % self.group_size:
            raise UserError(f"--device-batch {t.device_batch} must be a multiple of --group-size {self.group_size}: "
                            "a micro-batch holds whole groups of replies")  # fmt: skip
        if self.rows_per_step % t.device_batch:
            raise UserError(f"--prompts-per-step × --group-size = {self.rows_per_step} replies must be a multiple "
                            f"of --device-batch {t.device_batch}")  # fmt: skip
        if self.max_new_tokens >= t.seq_len:
            raise UserError(f"--max-new-tokens {self.max_new_tokens} leaves no room for the prompt in a row of "
                            f"--seq-len {t.seq_len}")  # fmt: skip


# --- the declarations, flattened ---------------------------------------------------------------------


def declared(config_cls: type) -> dict[str, dataclasses.Field]:
    """Every setting of a stage's config by name: the shared TrainSettings first, then the stage's own."""
    out: dict[str, dataclasses.Field] = {}
    for f in fields(config_cls):
        if f.name == "train":
            out.update({g.name: g for g in fields(TrainSettings)})
        else:
            out[f.name] = f
    return out


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def value_type(f: dataclasses.Field, owner: type) -> tuple[type, bool]:
    """(the base type, whether None is allowed) from the annotation: `int | None` -> (int, True)."""
    hint = typing.get_type_hints(owner)[f.name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        base = next(a for a in args if a is not type(None))
        return base, type(None) in args
    return hint, False


def owner_of(config_cls: type, name: str) -> type:
    return TrainSettings if name in {f.name for f in fields(TrainSettings)} else config_cls


def allowed(f: dataclasses.Field, kind: type, optional: bool) -> str:
    """What a setting accepts, in words: 'an integer ≥ 1', 'one of wsd, cosine, constant'."""
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(m["choices"])
    if m.get("pattern"):
        return f"a value matching {m['pattern']}"
    words = {
        int: "an integer",
        float: "a finite number",
        bool: "true or false",
        Path: "a path",
        str: "a string",
    }
    text = words[kind]
    bounds = []
    if m.get("above") is not None:
        bounds.append(f"> {m['above']:g}")
    if m.get("min") is not None:
        bounds.append(f"≥ {m['min']:g}")
    if m.get("max") is not None:
        bounds.append(f"≤ {m['max']:g}")
    if bounds:
        text += " " + " and ".join(bounds)
    return text + (" (or unset)" if optional else "")


def convert(kind: type, value: Any) -> Any:
    """`value` (text from a flag, or a value from a file or from Python) as a `kind`; ValueError if it is
    not one. Floats must be finite; booleans are never taken for numbers."""
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, str):
            return int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        value = float(value) if isinstance(value, str) else value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif kind is Path:
        if isinstance(value, (str, Path)) and str(value).strip():
            return Path(value).expanduser()
    elif isinstance(value, str):
        return value
    raise ValueError(f"not a {kind.__name__}: {value!r}")


def acceptable(meta: Mapping[str, Any], value: Any) -> bool:
    """Whether a converted value lies within the declaration's choices, pattern and bounds."""
    return not (
        (meta.get("choices") and value not in meta["choices"])
        or (meta.get("pattern") and not re.fullmatch(meta["pattern"], value))
        or (meta.get("above") is not None and not value > meta["above"])
        or (meta.get("min") is not None and value < meta["min"])
        or (meta.get("max") is not None and value > meta["max"])
    )


def check_value(config_cls: type, name: str, value: Any, label: str) -> Any:
    """`value` converted to the setting's type and checked against its declaration; UserError naming
    `label` (the flag, or the file and key), the value and what is allowed."""
    f = declared(config_cls)[name]
    kind, optional = value_type(f, owner_of(config_cls, name))
    if value is None and optional:
        return None
    if isinstance(value, str) and f.metadata.get("parse"):
        try:
            value = f.metadata["parse"](value)
        except UserError as error:
            raise UserError(f"{label} {value!r}: {error}") from None
    try:
        converted = convert(kind, value)
    except (ValueError, TypeError):
        converted = None
    if converted is None or not acceptable(f.metadata, converted):
        shown_value = value if converted is None else converted
        raise UserError(f"{label} {shown_value!r}: expected {allowed(f, kind, optional)}")
    return converted


# --- building and reading configs --------------------------------------------------------------------


def flat(config) -> dict[str, Any]:
    """Every setting of a stage's config by name (the shared ones and the stage's own)."""
    values = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "train"}
    return {**dataclasses.asdict(config.train), **values}


def with_settings(config, **values: Any):
    """A copy of `config` with settings replaced by name, wherever they are declared (shared or own).

    A layer that sets some horizon settings (steps, time budget, ratio) clears the others.
    """
    names = declared(type(config))
    unknown = [k for k in values if k not in names]
    if unknown:
        raise UserError(f"unknown setting {unknown[0]!r}; known: {', '.join(names)}")
    groups = {names[k].metadata.get("group") for k in values} - {None}
    cleared = {k: None for k, f in names.items() if f.metadata.get("group") in groups and k not in values}
    values = {**cleared, **values}
    train_names = {f.name for f in fields(TrainSettings)}
    shared = {k: v for k, v in values.items() if k in train_names}
    own = {k: v for k, v in values.items() if k not in train_names}
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **shared), **own)


def validate(config) -> None:
    """Check every setting of a config against its declaration, then the rules between settings."""
    for name, value in flat(config).items():
        f = declared(type(config))[name]
        check_value(type(config), name, value, flag_name(f))
    config.train.check()
    if hasattr(config, "check"):
        config.check()


def read_config_file(config_cls: type, path: Path) -> dict[str, Any]:
    """A TOML file of settings by name (`seq_len = 256`), checked like flags; unknown keys are errors."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"cannot read the config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path} is not valid TOML: {error}") from None
    names = declared(config_cls)
    out = {}
    for key, value in data.items():
        if key not in names:
            raise UserError(f"{path}: unknown setting {key!r}; known: {', '.join(names)}")
        out[key] = check_value(config_cls, key, value, f"{path}: {key} =")
    return out


def resolve(config_cls: type, layers: list[dict[str, Any]]):
    """The stage's defaults with each layer of settings applied in turn (preset, file, flags), checked."""
    config = config_cls()
    for layer in layers:
        config = with_settings(config, **layer)
    validate(config)
    return config


def describe(config) -> str:
    """The resolved configuration as TOML that `--config` reads back (unset settings commented out)."""
    lines = []
    for name, value in flat(config).items():
        if value is None:
            lines.append(f"# {name} = (unset)")
        elif isinstance(value, bool):
            lines.append(f"{name} = {str(value).lower()}")
        elif isinstance(value, (int, float)):
            lines.append(f"{name} = {value!r}")
        else:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{name} = "{escaped}"')
    return "\n".join(lines) + "\n"


def recorded(config) -> dict[str, Any]:
    """The resolved configuration as JSON-ready values: what a checkpoint keeps."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in flat(config).items()}


def changed(saved: dict[str, Any], now: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(name, saved value, current value) for each setting that differs between two records."""
    for name, value in now.items():
        if name in saved and saved[name] != value:
            yield name, saved[name], value


def from_preset(config_cls: type, presets: dict[str, dict[str, Any]], name: str, **overrides: Any):
    """A stage's config: its defaults, then preset `name`, then `overrides` (from Python), checked."""
    if name not in presets:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(presets)}")
    return resolve(config_cls, [presets[name], overrides])


# --- the command line --------------------------------------------------------------------------------


def shown(value: Any) -> str:
    return "unset" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def add_flags(
    parser,
    config_cls: type,
    presets: dict[str, dict[str, Any]] | None = None,
    default_preset: str | None = None,
) -> None:
    """One flag per declared setting, its help showing the default and what each preset changes."""
    presets = presets or {}
    if presets:
        parser.add_argument(
            "--preset",
            default=default_preset,
            choices=list(presets),
            help=f"a set of settings to start from (default: {default_preset}, marked * below)",
        )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a TOML file of settings by name (seq_len = 256); flags win over it",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration and exit"
    )
    defaults = flat(config_cls())
    for name, f in declared(config_cls).items():
        kind, _ = value_type(f, owner_of(config_cls, name))
        notes = [f"default: {shown(defaults[name])}"]
        notes += [
            f"{p}{'*' if p == default_preset else ''}: {shown(values[name])}"
            for p, values in presets.items()
            if name in values
        ]
        help_text = f"{f.metadata['help']} ({'; '.join(notes)})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(
                flag_name(f), dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
            continue
        metavar = "|".join(f.metadata["choices"]) if f.metadata.get("choices") else kind.__name__.upper()
        metavar = "DURATION" if f.metadata.get("parse") is parse_duration else metavar
        parser.add_argument(flag_name(f), dest=name, default=None, metavar=metavar, help=help_text)
    if "resume" in defaults:
        parser.add_argument(
            "--no-resume",
            dest="resume",
            action="store_const",
            const="never",
            help="start fresh even if the run directory holds checkpoints (--resume never)",
        )


def config_from_args(args, config_cls: type, presets: dict[str, dict[str, Any]] | None = None):
    """The configuration the command line asks for: preset, then --config FILE, then each flag given."""
    layers = [presets[args.preset]] if presets else []
    if args.config is not None:
        layers.append(read_config_file(config_cls, args.config))
    given = {}
    for name, f in declared(config_cls).items():
        value = getattr(args, name, None)
        if value is not None:
            given[name] = check_value(config_cls, name, value, flag_name(f))
    layers.append(given)
    return resolve(config_cls, layers)
