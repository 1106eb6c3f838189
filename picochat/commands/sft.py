"""`picochat sft`: Supervised fine-tuning on conversations."""

from picochat.errors import UserError

HELP = "Supervised fine-tuning on conversations."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("sft", help=HELP, description=HELP)
    parser.set_defaults(func=run)


def run(args) -> int:
    raise UserError("'picochat sft' is not built yet")
