"""Checkpoints: written atomically, counted only when complete, loaded without executing code.

A run directory holds `step_000123/` checkpoint directories, each with

    model.safetensors   the weights (safetensors: plain tensors, no pickle)
    optimizer.pt        optimizer state (torch.save; loaded with weights_only=True, so no code runs)
    rng.pt              every RNG state (python, numpy, torch CPU, CUDA)
    tokenizer/          a copy of the tokenizer, so a checkpoint is self-contained
    meta.json           step, model config, training config, loader state, world size — written last

Each checkpoint is assembled in a temporary `.tmp-…` directory and renamed into place
(`atomic.atomic_directory`), so a crash leaves either the whole checkpoint or none of it under its final
name; a directory without a readable meta.json (a half-copied one, say) is skipped by `latest_checkpoint` with a message. The last `keep` survive.
"""

from __future__ import annotations

import json
import os
import random
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
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    run_dir = Path(run_dir)
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
        return torch.load(self.path / "optimizer.pt", map_location="cpu", weights_only=True)

    def rng_state(self) -> dict:
        return torch.load(self.path / "rng.pt", map_location="cpu", weights_only=True)


def open_checkpoint(path: Path) -> Checkpoint:
    path = resolve_checkpoint(path)
    return Checkpoint(path, read_meta(path))


def load_model(path: Path, device="cpu"):
    """Load (model, tokenizer, meta) from a checkpoint or run directory, in eval mode."""
    ckpt = open_checkpoint(path)
    config = GPTConfig(**ckpt.meta["model_config"])
    model = GPT(config)
    model.load_state_dict(ckpt.model_state())
    model.to(device).eval()
    tok_dir = ckpt.path / "tokenizer"
    if not tok_dir.is_dir():
        raise UserError(f"checkpoint {ckpt.path} has no tokenizer/ directory; it was not written by picochat")
    return model, Tokenizer.load(tok_dir), ckpt.meta
