"""`picochat sft`: supervised fine-tuning on conversations (see picochat/sft.py; settings in picochat/settings.py)."""

from __future__ import annotations

from picochat.settings import SFTConfig, add_flags, config_from_args, describe

HELP = "Supervised fine-tuning on conversations."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("sft", help=HELP, description=HELP)
    add_flags(parser, SFTConfig)
    parser.set_defaults(func=run)


def run(args) -> int:
    config = config_from_args(args, SFTConfig)
    if args.print_config:
        print(describe(config), end="")
        return 0
    from picochat.sft import sft

    sft(config)
    return 0
