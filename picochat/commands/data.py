"""`picochat data`: List, fetch and build corpora; show their statistics."""

from picochat.errors import UserError

HELP = "List, fetch and build corpora; show their statistics."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help=HELP, description=HELP)
    parser.set_defaults(func=run)


def run(args) -> int:
    raise UserError("'picochat data' is not built yet")
