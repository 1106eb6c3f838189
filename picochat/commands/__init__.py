"""CLI subcommands, one module per stage in `--help`'s order, each with `HELP` and
`add_parser(subparsers)`; its `run` imports the stage's function inside, so `--help` stays instant."""

from importlib import import_module

NAMES = "run tokenizer data pretrain eval sft rl chat serve export hf_import report".split()
COMMANDS = [import_module(f"picochat.commands.{name}") for name in NAMES]
