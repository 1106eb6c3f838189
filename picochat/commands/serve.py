"""`picochat serve`: an OpenAI-compatible HTTP server with continuous batching and a web chat page.

picochat serve                                     # the newest SFT (else base) model, http://127.0.0.1:8000/
picochat serve --checkpoint DIR --port 8080 --api-key secret
picochat serve --no-compile                        # decode eagerly (no compilation pause)
curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
     -d '{"messages": [{"role": "user", "content": "What is 12*7?"}]}'
"""

import argparse
import os
from pathlib import Path

from picochat.errors import UserError

HELP = "OpenAI-compatible HTTP server with a web chat page."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("serve", help=HELP, description=HELP)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a checkpoint directory, or a run directory for its newest checkpoint "
        "(default: the newest SFT model, else the newest base model)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("PICOCHAT_API_KEY"),
        help="require 'Authorization: Bearer KEY' on /v1/ (default: $PICOCHAT_API_KEY, else no key)",
    )
    parser.add_argument(
        "--slots",
        type=int,
        default=32,
        help="sequences decoded together (KV-cache slots, in banks of 32: a step runs a whole bank, so "
        "--slots 8 is faster for one person alone)",
    )
    parser.add_argument(
        "--context",
        type=int,
        default=None,
        help="longest prompt + reply in tokens (default: the model's limit)",
    )
    parser.add_argument("--max-queue", type=int, default=64, help="requests that may wait; more get a 503")
    parser.add_argument(
        "--tool",
        choices=["calculator", "python", "none"],
        default="calculator",
        help="what runs the model's <|python_start|> calls",
    )
    parser.add_argument("--dtype", default="auto", help="auto, bf16 or fp32")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decode through torch.compile (default: wherever it can run: a GPU, or a CPU with a C compiler; "
        "the first requests wait while it compiles; --no-compile: eager)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be in 1..65535, got {args.port}")
    if args.slots < 1:
        raise UserError(f"--slots must be at least 1, got {args.slots}")
    if args.context is not None and args.context < 2:
        raise UserError(f"--context must be at least 2 tokens, got {args.context}")
    if args.max_queue < 1:
        raise UserError(f"--max-queue must be at least 1, got {args.max_queue}")
    from picochat.serve import serve

    serve(
        checkpoint=args.checkpoint,
        host=args.host,
        port=args.port,
        api_key=args.api_key or None,
        slots=args.slots,
        context=args.context,
        max_queue=args.max_queue,
        tool=None if args.tool == "none" else args.tool,
        dtype=args.dtype,
        compile=args.compile,
    )
    return 0
