"""`picochat pretrain`: train the base model (see picochat/pretrain.py)."""

from __future__ import annotations

from pathlib import Path

from picochat.commands.training_flags import COMMON_FLAGS, add_training_flags, overrides_from

HELP = "Pretrain the base model."

PRETRAIN_FLAGS = {
    "--depth": ("depth", int, "number of Transformer blocks; width, heads and the rest follow from it"),
    "--kv-groups": ("kv_groups", int, "query heads per key/value head (grouped-query attention)"),
    "--ratio": ("ratio", float, "train for ratio × non-embedding parameters tokens"),
    "--final-lr-frac": ("final_lr_frac", float, "final learning rate as a share of the peak"),
    "--sample-every": ("sample_every", int, "print sampled completions every N steps (0: never)"),
    "--corpus": ("corpus", Path, "corpus directory with train/ and val/ parquet shards"),
    "--tokenizer": ("tokenizer", Path, "tokenizer directory"),
    **COMMON_FLAGS,
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("pretrain", help=HELP, description=HELP)
    parser.add_argument("--preset", default="cpu-demo", help="cpu-tiny, cpu-demo, gpu-d12 or gpu-d20")
    add_training_flags(parser, PRETRAIN_FLAGS)
    parser.set_defaults(func=run)


def run(args) -> int:
    from picochat.pretrain import preset_config, pretrain

    config = preset_config(args.preset, **overrides_from(args, PRETRAIN_FLAGS))
    pretrain(config)
    return 0
