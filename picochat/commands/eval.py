"""`picochat eval`: Evaluate a checkpoint: bits per byte, perplexity, task suites."""

from picochat.errors import UserError

HELP = "Evaluate a checkpoint: bits per byte, perplexity, task suites."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("eval", help=HELP, description=HELP)
    parser.set_defaults(func=run)


def run(args) -> int:
    raise UserError("'picochat eval' is not built yet")
