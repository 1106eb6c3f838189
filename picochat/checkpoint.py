"""Checkpoints: written atomically, counted only when complete, loaded without executing code.

A run directory holds `step_000123/` checkpoint directories, each with

    model.safetensors   the weights (safetensors: plain tensors, no pickle)
    optimizer.pt        optimizer state (torch.save; loaded with weights_only=True, so no code runs)
    rng.pt              every RNG state (python, numpy, torch CPU, CUDA)
    tokenizer/          a copy of the tokenizer, so a checkpoint is self-contained
    meta.json           step, model config, training config, loader state, world size — written last

Each checkpoint is assembled in a temporary `.tmp-…` directory and renamed into place (`atomic.atomic_directory`), so a crash leaves
either the whole checkpoint or none of it under its final name; a directory without a readable meta.json
(a half-copied one, say) is skipped by `latest_checkpoint` with a message. The last `keep` survive; the
temporary directories of writers that died are removed when the next writer starts (rundir.RunDirLock)
and on every save.

Compatibility is checked before any weights are loaded. meta.json records the model configuration and
the tokenizer's fingerprint (sha256 of its split pattern, merges and special tokens); `check_compatible`
compares them with the model and tokenizer a run is about to use (resume, SFT), and `load_model` checks
that a checkpoint agrees with itself (its tokenizer covers exactly the model's vocabulary, its weights
have the shapes its configuration says). Each check names every difference it finds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from picochat.atomic import atomic_directory, atomic_write_json
from picochat.errors import UserError
from picochat.model import GPT, GPTConfig
from picochat.rundir import process_alive
from picochat.tokenizer import Tokenizer

PREFIX = "step_"
META = "meta.json"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:06d}"


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
    """Restore what `rng_state` saved; a UserError if the saved state is not of that shape."""
    try:
        version, mt_state, gauss = state["python"]
        python_state = (version, tuple(mt_state), gauss)
        name, keys, pos, has_gauss, cached = state["numpy"]
        numpy_state = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
        random.setstate(python_state)
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
    """sha256 of what makes a tokenizer's ids mean what they mean: split pattern, merges, special tokens.

    Two tokenizers of the same size but different merges give different fingerprints."""
    digest = hashlib.sha256()
    digest.update(tokenizer.pattern.encode("utf-8") + b"\0")
    for token, rank in sorted(tokenizer.ranks.items(), key=lambda item: item[1]):
        digest.update(f"{rank} ".encode() + token.hex().encode() + b"\n")
    digest.update(json.dumps(tokenizer.special_tokens, sort_keys=True).encode())
    return digest.hexdigest()


def check_keep(keep: int | None) -> None:
    """The newest `keep` checkpoints survive pruning (0 or None: all of them); a negative count would delete
    the checkpoint just written."""
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise UserError(
            f"keep_last must be a whole number of checkpoints, 0 (keep all) or more, got {keep!r}"
        )


STALE_NAME = re.compile(rf"\.(tmp|old)-{PREFIX}\d+-(\d+)")  # what save_checkpoint names its temporaries


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Remove the temporary checkpoint directories (.tmp-step_…-PID, .old-step_…-PID) of writers that died.

    A temporary directory is its writer's only while that writer runs: its name ends with the writer's pid,
    and it is removed only when no process of that pid is alive. Other files are never touched."""
    removed = []
    for path in Path(run_dir).glob(".*"):
        match = STALE_NAME.fullmatch(path.name)
        if match is None or process_alive(int(match[2])):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: GPT,
    optimizer,
    meta: dict,
    tokenizer=None,
    keep: int | None = 3,
) -> Path:
    """Write `run_dir/step_NNNNNN` atomically and prune all but the newest `keep` checkpoints."""
    check_keep(keep)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir)
    with atomic_directory(run_dir / checkpoint_name(step)) as tmp:
        state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt", "picochat_step": str(step)})
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer")
        for name in ("model.safetensors", "optimizer.pt", "rng.pt"):
            if (tmp / name).exists():
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
        full_meta = {"step": step, "model_config": model.config.to_dict(), **meta, "complete": True}
        if tokenizer is not None:
            full_meta["tokenizer_sha256"] = tokenizer_fingerprint(tokenizer)
        atomic_write_json(tmp / META, full_meta)  # last: its presence marks the checkpoint complete
    final = run_dir / checkpoint_name(step)
    if keep:
        for old in list_checkpoints(run_dir, quiet=True)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def update_meta(path: Path, **changes) -> dict:
    """Rewrite a checkpoint's meta.json with `changes` (the final evaluation, say), atomically."""
    meta = json.loads((Path(path) / META).read_text())
    meta.update(changes)
    atomic_write_json(Path(path) / META, meta)
    return meta


def read_meta(path: Path) -> dict | None:
    """The checkpoint's meta.json, or None if it is missing, unreadable or not marked complete."""
    try:
        meta = json.loads((Path(path) / META).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not meta.get("complete"):
        return None
    if not all((Path(path) / name).exists() for name in ("model.safetensors", META)):
        return None
    return meta


def list_checkpoints(run_dir: Path, quiet: bool = False) -> list[Path]:
    """Complete checkpoints of a run, oldest first. Incomplete ones are reported and skipped."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for path in sorted(run_dir.glob(f"{PREFIX}*")):
        if not path.is_dir():
            continue
        if read_meta(path) is None:
            if not quiet:
                print(f"skipping incomplete checkpoint {path} (no complete meta.json)", file=sys.stderr)
            continue
        found.append(path)
    return found


def latest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory, or the latest complete one inside a run directory."""
    path = Path(path)
    if read_meta(path) is not None:
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise UserError(
            f"no complete checkpoint at {path}; train one first with 'picochat pretrain' (or 'picochat run')"
        )
    return latest


@dataclass
class Checkpoint:
    path: Path
    meta: dict

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    def model_state(self) -> dict:
        try:
            return load_file(self.path / "model.safetensors")
        except Exception as error:  # safetensors raises several types for a damaged file
            raise UserError(
                f"{self.path / 'model.safetensors'} is damaged ({error}); delete that checkpoint"
            ) from error

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
            raise self._damaged(name, what, f"{type(error).__name__}: {str(error)[:200]}") from None
        if not isinstance(state, dict):
            raise self._damaged(name, what, f"it holds a {type(state).__name__}, not a dict")
        return state

    def _damaged(self, name: str, what: str, reason: str) -> UserError:
        return UserError(
            f"{self.path / name} (the {what}) is damaged: {reason}. Resume from an earlier checkpoint, or "
            "pass --restart-schedule to keep only the weights"
        )

    def model_config(self) -> GPTConfig:
        """The model configuration recorded in meta.json, checked to build a model."""
        recorded = self.meta.get("model_config")
        where = f"{self.path / META}"
        if not isinstance(recorded, dict):
            raise UserError(f'{where} has no "model_config" object; the checkpoint is damaged')
        known = set(GPTConfig.__dataclass_fields__)
        unknown = sorted(set(recorded) - known)
        if unknown:
            raise UserError(f"{where}: model_config has unknown fields {unknown}; known: {sorted(known)}")
        for name, value in recorded.items():
            whole = isinstance(GPTConfig.__dataclass_fields__[name].default, int)
            kind = int if whole else (int, float)
            if (
                isinstance(value, bool)
                or not isinstance(value, kind)
                or not math.isfinite(value)
                or value <= 0
            ):
                wanted = "a positive whole number" if whole else "a positive finite number"
                raise UserError(f"{where}: model_config.{name} = {value!r} is not {wanted}")
        try:
            return GPTConfig(**recorded)
        except (TypeError, ValueError) as error:
            raise UserError(f"{where}: model_config does not describe a model ({error})") from None

    def tokenizer(self):
        """The tokenizer saved with the checkpoint."""

        directory = self.path / "tokenizer"
        if not directory.is_dir():
            raise UserError(
                f"checkpoint {self.path} has no tokenizer/ directory; it was not written by picochat"
            )
        return Tokenizer.load(directory)

    def tokenizer_sha256(self) -> str:
        """The fingerprint recorded at save time; for checkpoints written before it was recorded, that of
        the tokenizer saved with the checkpoint."""
        recorded = self.meta.get("tokenizer_sha256")
        return recorded if isinstance(recorded, str) else tokenizer_fingerprint(self.tokenizer())


def open_checkpoint(path: Path) -> Checkpoint:
    path = resolve_checkpoint(path)
    return Checkpoint(path, read_meta(path))


def describe_differences(differences: dict[str, tuple]) -> str:
    return "\n".join(
        f"  {name}: checkpoint {saved!r}, now {current!r}" for name, (saved, current) in differences.items()
    )


# The fields that decide what the weights are: with any of them different, the saved tensors belong to
# another model. (seq_len, softcap, rope_base, norm_eps change behaviour, not the weights: a run may change
# them with --restart-schedule; a plain resume refuses them through the run's settings check.)
ARCHITECTURE_FIELDS = ("vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "mlp_ratio")


def check_compatible(ckpt: Checkpoint, model_config: GPTConfig | dict | None = None, tokenizer=None) -> None:
    """Refuse, before any weights are loaded, a checkpoint whose model or tokenizer differs from the ones a
    run is about to use; the error lists every difference."""
    differences: dict[str, tuple] = {}
    if model_config is not None:
        current = model_config.to_dict() if isinstance(model_config, GPTConfig) else dict(model_config)
        saved = ckpt.model_config().to_dict()
        for name in ARCHITECTURE_FIELDS:
            if saved.get(name) != current.get(name):
                differences[f"model_config.{name}"] = (saved.get(name), current.get(name))
    if tokenizer is not None:
        saved_sha, current_sha = ckpt.tokenizer_sha256(), tokenizer_fingerprint(tokenizer)
        if saved_sha != current_sha:
            differences["tokenizer (sha256 of pattern, merges, special tokens)"] = (
                saved_sha[:16] + "…",
                current_sha[:16] + "…",
            )
    if differences:
        raise UserError(
            f"checkpoint {ckpt.path} does not fit this run:\n{describe_differences(differences)}\nUse the "
            "model settings and tokenizer it was trained with, or start a new run in another --run-dir"
        )


def check_weights(model: GPT, state: dict, path: Path) -> None:
    """The saved tensors are exactly the model's, with the model's shapes (else a UserError naming them)."""
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
        raise UserError(f"{path / 'model.safetensors'} does not match its model_config: {shown}")


def load_model(path: Path, device="cpu"):
    """Load (model, tokenizer, meta) from a checkpoint or run directory, in eval mode.

    Before any weights are loaded: the configuration must build a model, the saved tokenizer must cover
    exactly the model's vocabulary, and every tensor must have the shape the configuration says."""
    ckpt = open_checkpoint(path)
    config = ckpt.model_config()
    tokenizer = ckpt.tokenizer()
    if tokenizer.vocab_size != config.vocab_size:
        raise UserError(
            f"checkpoint {ckpt.path}: its tokenizer has {tokenizer.vocab_size} tokens but the model's "
            f"vocabulary has {config.vocab_size}; the two were not trained together (the checkpoint is "
            "damaged or assembled by hand)"
        )
    if "tokenizer_sha256" in ckpt.meta and ckpt.meta["tokenizer_sha256"] != tokenizer_fingerprint(tokenizer):
        raise UserError(
            f"checkpoint {ckpt.path}: its tokenizer/ directory is not the tokenizer the model was trained "
            "with (the sha256 recorded in meta.json differs); restore it or use another checkpoint"
        )
    model = GPT(config)
    state = ckpt.model_state()
    check_weights(model, state, ckpt.path)
    model.load_state_dict(state)
    model.to(device).eval()
    return model, tokenizer, ckpt.meta
