"""CLI subcommands, one module per pipeline stage. Each module has `add_parser(subparsers)`.

A module parses flags and calls its stage function; the work itself lives in the stage's own module.
"""

from picochat.commands import (
    chat,
    data,
    eval,
    export,
    hf_import,
    pretrain,
    report,
    rl,
    run,
    serve,
    sft,
    tokenizer,
)

COMMANDS = [run, tokenizer, data, pretrain, eval, sft, rl, chat, serve, export, hf_import, report]
