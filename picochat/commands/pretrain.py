"""`picochat pretrain`: train the base model (see picochat/pretrain.py; settings in picochat/settings.py)."""

from __future__ import annotations

from picochat.settings import PRETRAIN_PRESETS, PretrainConfig, add_flags, config_from_args, describe

HELP = "Pretrain the base model."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("pretrain", help=HELP, description=HELP)
    add_flags(parser, PretrainConfig, PRETRAIN_PRESETS, default_preset="cpu-demo")
    parser.set_defaults(func=run)


def run(args) -> int:
    from picochat.pretrain import check_config, pretrain

    config = config_from_args(args, PretrainConfig, PRETRAIN_PRESETS)
    check_config(config)
    if args.print_config:
        print(describe(config), end="")
        return 0
    pretrain(config)
    return 0
