"""CLI subcommands, one module per pipeline stage, in the order `picochat --help` lists them.

Each module has `HELP` and `add_parser(subparsers)`: its flags come from declared settings
(picochat/settings.py), and its `run` calls the stage's function, importing it there so `--help` stays instant.
"""

from importlib import import_module

NAMES = "run tokenizer data pretrain eval sft rl chat serve export hf_import report".split()
COMMANDS = [import_module(f"picochat.commands.{name}") for name in NAMES]
