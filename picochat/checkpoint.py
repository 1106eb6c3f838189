"""Checkpoints: written atomically, counted only when complete, loaded without executing code.
A run directory holds `step_000123/` checkpoint directories, each with

    model.safetensors   the weights (safetensors: plain tensors, no pickle)
    optimizer.pt        optimizer state (loaded with weights_only=True, so no code runs)
    rng.pt              every RNG state (python, numpy, torch CPU, CUDA)
    tokenizer/          a copy of the tokenizer, so a checkpoint is self-contained
    meta.json           `CheckpointMeta`: step, model config, settings, data positions; written last,
                        so a checkpoint without a complete meta.json is skipped
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import re
import shutil
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from picochat.atomic import atomic_directory, atomic_write_bytes, atomic_write_json, fsync_dir, save_tensors
from picochat.engine import Engine
from picochat.errors import UserError
from picochat.model import GPT, MODEL_OPTIONS, GPTConfig
from picochat.paths import checkpoints_dir
from picochat.rundir import process_alive
from picochat.runtime import pick_device
from picochat.tokenizer import Tokenizer

PREFIX = "step_"
META = "meta.json"
STALE_NAME = re.compile(rf"\.(tmp|old)-{PREFIX}\d+-(\d+)")  # the temporaries atomic_directory names
DEFAULT_RUNS = ("sft", "base")  # what chat and serve load when no checkpoint is named, in this order


@dataclass
class CheckpointMeta:
    """meta.json: what a checkpoint records beside its tensors. Only this module reads or writes it."""

    step: int
    model_config: dict = field(default_factory=dict)  # GPTConfig.to_dict(), checked on loading
    tokenizer_sha256: str | None = None  # tokenizer_fingerprint of the tokenizer saved with it
    total_steps: int | None = None  # the run's horizon
    config: dict = field(default_factory=dict)  # the stage's settings (settings.recorded)
    fingerprint: dict = field(default_factory=dict)  # what the data and schedule depend on: resume checks it
    loaders: dict = field(default_factory=dict)  # each data stream's position, by virtual rank
    last_eval: dict = field(default_factory=dict)  # the latest validation: step, bpb, loss
    time_budget: dict | None = None  # what the wall-clock schedule decided so far (TimeBudget.state_dict)
    grad_scaler: dict | None = None  # fp16's loss scale
    imported_from: str | None = None  # the Hugging Face folder an imported checkpoint came from

    def to_json(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None} | {"complete": True}

    @classmethod
    def from_json(cls, recorded) -> CheckpointMeta | None:
        if not (
            isinstance(recorded, dict) and recorded.get("complete") and isinstance(recorded.get("step"), int)
        ):
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in recorded.items() if k in known and v is not None})


def rng_state() -> dict:
    """Every RNG state as tensors, lists and numbers only, so it loads with weights_only=True."""
    version, mt_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    try:
        version, mt_state, gauss = state["python"]
        name, keys, pos, has_gauss, cached = state["numpy"]
        numpy_state = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
        random.setstate((version, tuple(mt_state), gauss))
        np.random.set_state(numpy_state)
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise UserError(
            f"the saved random-number state is damaged ({type(error).__name__}: {error}); resume from an "
            "earlier checkpoint, or pass --restart-schedule to keep only the weights"
        ) from None


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the split pattern, merges and special tokens: what gives a tokenizer's ids their meaning."""
    digest = hashlib.sha256()
    digest.update(tokenizer.pattern.encode("utf-8") + b"\0")
    for token, rank in sorted(tokenizer.ranks.items(), key=lambda item: item[1]):
        digest.update(f"{rank} ".encode() + token.hex().encode() + b"\n")
    digest.update(json.dumps(tokenizer.special_tokens, sort_keys=True).encode())
    return digest.hexdigest()


def check_keep(keep: int | None) -> None:
    """The newest `keep` survive pruning (0 or None: all); a negative count would delete the new one."""
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise UserError(
            f"keep_last must be a whole number of checkpoints, 0 (keep all) or more, got {keep!r}"
        )


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Remove the .tmp-/.old-step_…-PID directories of dead writers (a name ends with its writer's pid)."""
    removed = []
    for path in Path(run_dir).glob(".*"):
        match = STALE_NAME.fullmatch(path.name)
        if match is None or process_alive(int(match[2])):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def set_aside_run(run_dir: Path, earlier_log: int = 0) -> Path | None:
    """Move a run directory's checkpoints and the first `earlier_log` bytes of its metrics.jsonl into a new
    previous-N/ (nothing deleted), so a new run there neither resumes from, prunes nor hides behind them;
    that folder, or None if there were no checkpoints."""
    run_dir, log = Path(run_dir), Path(run_dir) / "metrics.jsonl"
    earlier = [path for path in sorted(run_dir.glob(f"{PREFIX}*")) if path.is_dir()]
    if not earlier:
        return None
    n = next(n for n in itertools.count(1) if not (run_dir / f"previous-{n}").exists())
    (aside := run_dir / f"previous-{n}").mkdir()
    for path in earlier:
        os.replace(path, aside / path.name)
    if earlier_log and log.exists():
        logged = log.read_bytes()
        atomic_write_bytes(aside / log.name, logged[:earlier_log])
        atomic_write_bytes(log, logged[earlier_log:])
    fsync_dir(run_dir)
    return aside


def save_checkpoint(
    run_dir: Path, model: GPT, meta: CheckpointMeta, optimizer=None, tokenizer=None, keep=3
) -> Path:
    check_keep(keep)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir)
    sha256 = tokenizer_fingerprint(tokenizer) if tokenizer is not None else None
    meta = replace(meta, model_config=model.config.to_dict(), tokenizer_sha256=sha256)
    final = run_dir / f"{PREFIX}{meta.step:06d}"
    with atomic_directory(final) as tmp:
        state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
        save_tensors(state, tmp / "model.safetensors", {"format": "pt", "picochat_step": str(meta.step)})
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer")
        for name in ("model.safetensors", "optimizer.pt", "rng.pt"):
            if (tmp / name).exists():
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
        atomic_write_json(tmp / META, meta.to_json())  # last: its presence marks the checkpoint complete
    if keep:
        for old in list_checkpoints(run_dir, quiet=True)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_meta(path: Path) -> CheckpointMeta | None:
    """The checkpoint's meta, or None if meta.json is missing, unreadable or not marked complete."""
    try:
        recorded = json.loads((Path(path) / META).read_text())
    except PermissionError:
        raise unreadable(Path(path) / META) from None
    except (OSError, ValueError):
        return None
    meta = CheckpointMeta.from_json(recorded)
    return meta if meta is not None and (Path(path) / "model.safetensors").exists() else None


def unreadable(path: Path) -> UserError:
    return UserError(
        f"cannot read {path}: permission denied; its owner can share it (chmod -R a+rX on the run directory)"
    )


def update_meta(path: Path, **changes) -> None:
    atomic_write_json(Path(path) / META, replace(read_meta(path), **changes).to_json())


def list_checkpoints(run_dir: Path, quiet: bool = False) -> list[Path]:
    """Complete checkpoints of a run, oldest first. Incomplete ones are reported and skipped."""
    found = []
    for path in sorted(Path(run_dir).glob(f"{PREFIX}*")):
        if not path.is_dir():
            continue
        if read_meta(path) is not None:
            found.append(path)
        elif not quiet:
            print(f"skipping incomplete checkpoint {path} (no complete meta.json)", file=sys.stderr)
    return found


def latest_checkpoint(run_dir: Path, quiet: bool = False) -> Path | None:
    return (list_checkpoints(run_dir, quiet) or [None])[-1]


def resolve_checkpoint(path: Path) -> Path:
    path = Path(path)
    if read_meta(path) is not None:
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise UserError(
            f"no complete checkpoint at {path}; train one first with 'picochat pretrain' (or 'picochat run')"
        )
    return latest


def default_checkpoint() -> Path:
    for name in DEFAULT_RUNS:
        if list_checkpoints(checkpoints_dir() / name, quiet=True):
            if name != DEFAULT_RUNS[0]:
                print(
                    f"no SFT model yet; using the base model in {checkpoints_dir() / name}", file=sys.stderr
                )
            return checkpoints_dir() / name
    raise UserError(
        f"no trained model under {checkpoints_dir()}: train one with 'picochat run' (the whole pipeline) or "
        "'picochat sft' (after 'picochat pretrain'), or point --checkpoint at a checkpoint directory"
    )


@dataclass
class Checkpoint:
    path: Path
    meta: CheckpointMeta

    def model_state(self) -> dict:
        file = self.path / "model.safetensors"
        try:
            open(file, "rb").close()  # safetensors would call an unreadable file "not found"
            state = load_file(file)
        except PermissionError:
            raise unreadable(file) from None
        except Exception as error:  # safetensors raises several types for a damaged file
            raise UserError(f"{file} is damaged ({error}); delete that checkpoint") from error
        check_values(state, file)
        return state

    def optimizer_state(self) -> dict:
        return self._load_torch("optimizer.pt", "optimizer state")

    def rng_state(self) -> dict:
        return self._load_torch("rng.pt", "random-number state")

    def _load_torch(self, name: str, what: str) -> dict:
        path = self.path / name
        if not path.is_file():
            raise UserError(
                f"{path} is missing, so the {what} cannot be restored; pass --restart-schedule to keep only "
                "the weights, or resume from another checkpoint"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for a damaged or foreign file
            reason = f"{type(error).__name__}: {str(error)[:200]}"
        else:
            if isinstance(state, dict):
                return state
            reason = f"it holds a {type(state).__name__}, not a dict"
        raise UserError(
            f"{path} (the {what}) is damaged: {reason}. Resume from an earlier checkpoint, or pass "
            "--restart-schedule to keep only the weights"
        )

    def model_config(self) -> GPTConfig:
        recorded, where = self.meta.model_config, self.path / META
        if not isinstance(recorded, dict) or not recorded:
            raise UserError(f'{where} has no "model_config" object; the checkpoint is damaged')
        known = GPTConfig.__dataclass_fields__
        unknown = sorted(set(recorded) - set(known))
        if unknown:
            raise UserError(f"{where}: model_config has unknown fields {unknown}; known: {sorted(known)}")
        for name, value in recorded.items():
            if isinstance(known[name].default, bool):  # a model option, on or off
                if not isinstance(value, bool):
                    raise UserError(f"{where}: model_config.{name} = {value!r} is not true or false")
                continue
            whole = isinstance(known[name].default, int)
            kind = int if whole else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or not 0 < value < math.inf:
                wanted = "a positive whole number" if whole else "a positive finite number"
                raise UserError(f"{where}: model_config.{name} = {value!r} is not {wanted}")
        try:
            return GPTConfig(**recorded)
        except (TypeError, ValueError) as error:
            raise UserError(f"{where}: model_config does not describe a model ({error})") from None

    def tokenizer(self) -> Tokenizer:
        directory = self.path / "tokenizer"
        if not directory.is_dir():
            raise UserError(
                f"checkpoint {self.path} has no tokenizer/ directory; it was not written by picochat"
            )
        return Tokenizer.load(directory)


def open_checkpoint(path: Path) -> Checkpoint:
    path = resolve_checkpoint(path)
    return Checkpoint(path, read_meta(path))


# The fields that decide what the weights are (seq_len, softcap, rope_base, norm_eps change behaviour, not
# the weights: --restart-schedule may change them; a plain resume refuses them through the settings check).
ARCHITECTURE_FIELDS = ("vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "mlp_ratio", *MODEL_OPTIONS)


def check_compatible(ckpt: Checkpoint, model_config: GPTConfig | None = None, tokenizer=None) -> None:
    """Refuse a checkpoint whose model or tokenizer differs from the run's, listing every difference."""
    differences: dict[str, tuple] = {}
    if model_config is not None:
        saved, current = ckpt.model_config().to_dict(), model_config.to_dict()
        for name in ARCHITECTURE_FIELDS:
            if saved[name] != current[name]:
                differences[f"model_config.{name}"] = (saved[name], current[name])
    if tokenizer is not None:
        # checkpoints written before the fingerprint was recorded: that of the tokenizer saved with them
        saved = ckpt.meta.tokenizer_sha256 or tokenizer_fingerprint(ckpt.tokenizer())
        current = tokenizer_fingerprint(tokenizer)
        if saved != current:  # shown by their first 16 hex digits
            differences["tokenizer (sha256 of pattern, merges, special tokens)"] = (saved[:16], current[:16])
    if differences:
        listed = "\n".join(f"  {name}: checkpoint {a!r}, now {b!r}" for name, (a, b) in differences.items())
        raise UserError(
            f"checkpoint {ckpt.path} does not fit this run:\n{listed}\nUse the model settings and tokenizer "
            "it was trained with, or start a new run in another --run-dir"
        )


def check_values(state: dict[str, torch.Tensor], file: Path) -> None:
    """Refuse weights a model cannot compute with: a tensor that is not floating point (int8: quantised by
    another tool) or holds NaN or infinity (a diverged run), naming the first such tensor."""
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise UserError(
                f"{file}: tensor {name} is {tensor.dtype}, not floating point; it cannot be loaded"
            )
        bad = (~torch.isfinite(tensor)).sum().item()
        if bad:
            raise UserError(
                f"{file}: tensor {name} holds {bad:,} values that are not finite (NaN or infinity): the run "
                "that wrote it diverged or the file is damaged; use an earlier checkpoint"
            )


def check_weights(model: GPT, state: dict, problem: str) -> None:
    """A UserError starting with `problem` unless the tensors are exactly the model's, in its shapes."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    problems = [f"missing {name}" for name in sorted(set(expected) - set(found))]
    problems += [f"unexpected {name}" for name in sorted(set(found) - set(expected))]
    problems += [
        f"{name} has shape {found[name]}, the configuration needs {expected[name]}"
        for name in sorted(set(found) & set(expected))
        if found[name] != expected[name]
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise UserError(f"{problem}: {shown}")


def load_model(path: Path, device="cpu") -> tuple[GPT, Tokenizer, CheckpointMeta]:
    """(model in eval mode, tokenizer, meta), each checked against the others before any weights load."""
    ckpt = open_checkpoint(path)
    config = ckpt.model_config()
    tokenizer = ckpt.tokenizer()
    if tokenizer.vocab_size != config.vocab_size:
        raise UserError(
            f"checkpoint {ckpt.path}: its tokenizer has {tokenizer.vocab_size} tokens but the model's "
            f"vocabulary has {config.vocab_size}; the two were not trained together (the checkpoint is "
            "damaged or assembled by hand)"
        )
    recorded = ckpt.meta.tokenizer_sha256
    if recorded is not None and recorded != tokenizer_fingerprint(tokenizer):
        raise UserError(
            f"checkpoint {ckpt.path}: its tokenizer/ directory is not the tokenizer the model was trained "
            "with (the sha256 recorded in meta.json differs); restore it or use another checkpoint"
        )
    model = GPT(config)
    state = ckpt.model_state()
    check_weights(model, state, f"{ckpt.path / 'model.safetensors'} does not match its model_config")
    model.load_state_dict(state)
    model.to(device).eval()
    return model, tokenizer, ckpt.meta


def load_engine(
    checkpoint: Path | None, tool="calculator", dtype: str | None = None, compile: bool | None = None
) -> Engine:
    """An engine for `checkpoint` (None: `default_checkpoint`); `compile` None compiles the decode step where
    it can run, a compiled step on a CPU with the weights frozen in (a chat never changes them)."""
    path = Path(checkpoint).expanduser() if checkpoint is not None else default_checkpoint()
    model, tokenizer, meta = load_model(path, device=pick_device())
    print(f"loaded {path} (step {meta.step})", file=sys.stderr)
    return Engine(model, tokenizer, tool=tool, dtype=dtype, compile=compile, freeze=True)
