"""`picochat rl`: Reinforcement learning (GRPO) on tasks with verifiable rewards."""

from picochat.errors import UserError

HELP = "Reinforcement learning (GRPO) on tasks with verifiable rewards."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("rl", help=HELP, description=HELP)
    parser.set_defaults(func=run)


def run(args) -> int:
    raise UserError("'picochat rl' is not built yet")
