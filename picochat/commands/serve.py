"""`picochat serve`: an OpenAI-compatible HTTP server and a web chat page (docs/serve.md)."""

import os
from dataclasses import asdict

from picochat.settings import ServeOptions, add_command

HELP = "OpenAI-compatible HTTP server with a web chat page."


def add_parser(subparsers) -> None:
    add_command(subparsers, "serve", run, ServeOptions, HELP)


def run(options: ServeOptions, args) -> None:
    from picochat.serve import serve

    api_key = options.api_key or os.environ.get("PICOCHAT_API_KEY") or None
    serve(**asdict(options) | {"api_key": api_key, "tool": None if options.tool == "none" else options.tool})
