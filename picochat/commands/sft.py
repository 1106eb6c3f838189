"""`picochat sft`: supervised fine-tuning on conversations (see picochat/sft.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from picochat.commands.training_flags import COMMON_FLAGS, add_training_flags, overrides_from

HELP = "Supervised fine-tuning on conversations."

SFT_FLAGS = {
    "--base": ("base", Path, "the pretrained checkpoint or run directory to start from"),
    "--mix": (
        "mix",
        str,
        "task mixture, e.g. identity:2,arithmetic:3,spelling:2,chitchat:2,gym:2,jsonl:PATH:1",
    ),
    "--owner": ("owner", str, "who trained the model, as the identity conversations say"),
    "--lr-frac": ("lr_frac", float, "learning rates as a fraction of pretraining's"),
    **COMMON_FLAGS,
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("sft", help=HELP, description=HELP)
    add_training_flags(parser, SFT_FLAGS)
    parser.set_defaults(func=run)


def run(args) -> int:
    from picochat.sft import SFTConfig, sft

    sft(replace(SFTConfig(), **overrides_from(args, SFT_FLAGS)))
    return 0
