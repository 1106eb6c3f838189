"""`picochat export`: Export a checkpoint to Hugging Face format."""

from picochat.errors import UserError

HELP = "Export a checkpoint to Hugging Face format."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("export", help=HELP, description=HELP)
    parser.set_defaults(func=run)


def run(args) -> int:
    raise UserError("'picochat export' is not built yet")
