"""`picochat serve`: OpenAI-compatible HTTP server with a web UI."""

from picochat.errors import UserError

HELP = "OpenAI-compatible HTTP server with a web UI."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("serve", help=HELP, description=HELP)
    parser.set_defaults(func=run)


def run(args) -> int:
    raise UserError("'picochat serve' is not built yet")
