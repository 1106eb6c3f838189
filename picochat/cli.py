"""The `picochat` command: one subcommand per pipeline stage.

Each stage's flags and entry live in `picochat/commands/<stage>.py`; this file only wires them together.
Heavy imports (torch) happen inside the stage functions, so `picochat --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from picochat import __version__
from picochat.commands import COMMANDS
from picochat.errors import UserError
from picochat.runtime import preload_tcmalloc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="picochat",
        description="Train your own small ChatGPT end to end: tokenizer, data, pretraining, SFT, chat.",
    )
    parser.add_argument("--version", action="version", version=f"picochat {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        preload_tcmalloc()  # re-executes this process once with tcmalloc, when it is installed
        argv = sys.argv[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"picochat {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)
