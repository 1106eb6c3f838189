"""`picochat report`: Write the run report with tables and plots."""

from picochat.errors import UserError

HELP = "Write the run report with tables and plots."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("report", help=HELP, description=HELP)
    parser.set_defaults(func=run)


def run(args) -> int:
    raise UserError("'picochat report' is not built yet")
