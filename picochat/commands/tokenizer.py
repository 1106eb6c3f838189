"""`picochat tokenizer`: Train, evaluate and inspect the byte-level BPE tokenizer."""

from picochat.errors import UserError

HELP = "Train, evaluate and inspect the byte-level BPE tokenizer."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("tokenizer", help=HELP, description=HELP)
    parser.set_defaults(func=run)


def run(args) -> int:
    raise UserError("'picochat tokenizer' is not built yet")
