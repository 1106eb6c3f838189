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


class OneLinePerCommand(argparse.HelpFormatter):
    """`picochat --help` lists each command on one line: names aligned, help text never wrapped."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=24, width=160)

    def add_argument(self, action) -> None:
        super().add_argument(action)
        # argparse measures subcommand names one indent level short, so the longest ("tokenizer") would
        # be put on a line of its own; measure them where they are printed
        for sub in getattr(action, "_get_subactions", list)():
            self._action_max_length = max(
                self._action_max_length,
                len(sub.metavar or sub.dest) + self._current_indent + self._indent_increment,
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="picochat",
        description="Train your own small ChatGPT end to end: tokenizer, data, pretraining, SFT, chat.",
        formatter_class=OneLinePerCommand,
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
