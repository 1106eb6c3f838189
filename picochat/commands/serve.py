"""`picochat serve`: an OpenAI-compatible HTTP server with continuous batching and a web chat page.

picochat serve                                     # the newest SFT (else base) model, http://127.0.0.1:8000/
picochat serve --checkpoint DIR --port 8080 --api-key secret
picochat serve --no-compile                        # decode eagerly (no compilation pause)
curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
     -d '{"messages": [{"role": "user", "content": "What is 12*7?"}]}'
"""

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
