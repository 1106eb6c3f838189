"""The `picochat` command: one subcommand per stage, from `picochat/commands/<stage>.py`.

No input ends in a traceback on the terminal: a `UserError` is one line (exit 2); anything unexpected is one
line naming the file under $PICOCHAT_HOME/logs/ with the trace (exit 1); a closed pipe ends quietly.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import traceback
from pathlib import Path

from picochat import __version__
from picochat.commands import COMMANDS
from picochat.errors import UserError
from picochat.paths import picochat_home
from picochat.runtime import preload_tcmalloc
from picochat.settings import config_from_args, describe

EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED = 2, 1, 141, 130


class OneLinePerCommand(argparse.HelpFormatter):
    """`picochat --help` lists each command on one line: names aligned, help text never wrapped."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=24, width=160)

    def add_argument(self, action) -> None:
        super().add_argument(action)
        # argparse measures subcommand names one indent level short, so the longest ("tokenizer") would
        # be put on a line of its own; measure them where they are printed
        for sub in getattr(action, "_get_subactions", list)():
            length = len(sub.metavar or sub.dest) + self._current_indent + self._indent_increment
            self._action_max_length = max(self._action_max_length, length)


def build_parser() -> argparse.ArgumentParser:
    about = "Train your own small ChatGPT end to end: tokenizer, data, pretraining, SFT, chat."
    parser = argparse.ArgumentParser(prog="picochat", description=about, formatter_class=OneLinePerCommand)
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
        result = dispatch(args)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except UserError as exc:
        print(f"picochat {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # a bug, or an input we failed to check: one line, the trace in a file
        log = write_crash_log(argv, exc)
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        message = message[:297] + "..." if len(message) > 300 else message
        print(
            f"picochat {args.command}: internal error: {message}\n"
            f"The full trace is in {log}; please include it when reporting this.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
    return int(result or 0)


def dispatch(args):
    """Run the command; one with declared settings gets them resolved and checked, or printed."""
    if not hasattr(args, "settings"):
        return args.func(args)
    config = config_from_args(args, args.settings, args.presets)
    if hasattr(args, "check"):
        args.check(config, args)
    if getattr(args, "print_config", False):
        print(describe(config), end="")
        return 0
    return args.func(config, args)


def silence_stdout() -> None:
    """The reader of stdout went away: point it at /dev/null, so the flush at exit does not raise again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a file (e.g. captured by a test)


def write_crash_log(argv: list[str], exc: BaseException) -> Path:
    """Write the command line and full traceback under $PICOCHAT_HOME/logs/ (else the temp dir)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = f"picochat {__version__}, python {sys.version.split()[0]}\ncommand: picochat {' '.join(argv)}\n\n"
    text += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for directory in (picochat_home() / "logs", Path(tempfile.gettempdir())):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"crash-{stamp}-", suffix=".txt", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            return Path(name)
        except OSError:
            continue
    return Path("(could not be written)")
