"""The `picochat` command: one subcommand per stage, from `picochat/commands/<stage>.py`.

No input ends in a traceback on the terminal: a `UserError` is one line (exit 2), and so is a file the user
pointed at that cannot be read or written (the file and the reason) or text that is not UTF-8; anything
unexpected is one line naming the file under $PICOCHAT_HOME/logs/ with the trace (exit 1); a closed pipe
ends quietly.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import os
import pwd
import re
import shlex
import sys
import tempfile
import traceback
from pathlib import Path

from picochat import __version__
from picochat.commands import COMMANDS
from picochat.errors import UserError
from picochat.paths import picochat_home
from picochat.runtime import preload_tcmalloc
from picochat.settings import config_from_args, declared, describe

EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED = 2, 1, 141, 130
# what the file system answers about the user's paths (a missing file is a bug: commands check their inputs)
PATH_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
               errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP}  # fmt: skip


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
        refuse_undecodable(args)
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
        if explained(exc):
            print(f"picochat {args.command}: error: {explained(exc)}", file=sys.stderr)
            return EXIT_USER_ERROR
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


def undecodable(text: str) -> str | None:
    """`text` as the bytes it came from (b'caf\\xe9'), if some were not UTF-8 (Python keeps them as
    surrogates: os.fsdecode), else None."""
    if any("\udc80" <= c <= "\udcff" for c in text):
        return repr(text.encode("utf-8", "surrogateescape"))
    return None


def refuse_undecodable(args) -> None:
    """Text arguments must be UTF-8; paths need not be (a file name is bytes, and Python keeps them)."""
    settings = declared(args.settings) if hasattr(args, "settings") else {}
    paths = {name for name, d in settings.items() if Path in (d.kind, d.item)}
    for name, value in vars(args).items():
        for text in value if isinstance(value, list | tuple) else [value]:
            if isinstance(text, str) and name not in paths and undecodable(text):
                label = settings[name].flag if name in settings else name.upper()
                raise UserError(f"{label} {undecodable(text)} is not UTF-8 text; retype it in UTF-8")


def explained(exc: BaseException) -> str | None:
    """A sentence for an error the user's files or text caused (a path the file system refuses, text that
    is not UTF-8), or None for a bug."""
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM) and exc.filename:
        try:
            user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            user = f"uid {os.geteuid()}"
        return (
            f"permission denied: {exc.filename} cannot be opened by {user}; check its owner and mode (and "
            f"its folders'): ls -ld {shlex.quote(str(exc.filename))}"
        )
    if isinstance(exc, OSError) and exc.errno in PATH_ERRORS and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, UnicodeEncodeError) and undecodable(exc.object[exc.start : exc.end]):
        word = next(w for w in re.finditer(r"\S+", exc.object) if w.start() <= exc.start < w.end())
        return f"{undecodable(word.group())} is not UTF-8 text; use UTF-8 names and text (rename, or retype)"
    return None


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
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as file:
                file.write(text)
            return Path(name)
        except OSError:
            continue
    return Path("(could not be written)")
