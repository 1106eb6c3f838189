"""`picochat chat`: Chat with a trained model in the terminal."""

from picochat.errors import UserError

HELP = "Chat with a trained model in the terminal."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("chat", help=HELP, description=HELP)
    parser.set_defaults(func=run)


def run(args) -> int:
    raise UserError("'picochat chat' is not built yet")
