"""`picochat run`: Run the whole pipeline on the default corpus: data, tokenizer, pretrain, SFT, eval."""

from picochat.errors import UserError

HELP = "Run the whole pipeline on the default corpus: data, tokenizer, pretrain, SFT, eval."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("run", help=HELP, description=HELP)
    parser.set_defaults(func=run)


def run(args) -> int:
    raise UserError("'picochat run' is not built yet")
