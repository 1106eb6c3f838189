"""`picochat pretrain`: Pretrain the base model."""

from picochat.errors import UserError

HELP = "Pretrain the base model."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("pretrain", help=HELP, description=HELP)
    parser.set_defaults(func=run)


def run(args) -> int:
    raise UserError("'picochat pretrain' is not built yet")
