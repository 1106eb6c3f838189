"""`picochat chat`: Chat with a trained model in the terminal.

picochat chat                               # interactive, with the newest SFT (else base) model
picochat chat -p "What is 12*7?"            # answer once and exit
picochat chat --checkpoint DIR --system "Be brief." --temperature 0 --tool none
picochat chat --top-p 0.9 --min-p 0.05 --stop "User:" --max-tokens 128 --seed 1
picochat chat --compile                     # faster tokens after a compilation pause (default on a GPU)
picochat chat --no-compile                  # decode eagerly
"""

import argparse
from pathlib import Path

from picochat.errors import UserError

HELP = "Chat with a trained model in the terminal."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("chat", help=HELP, description=HELP)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a checkpoint directory, or a run directory for its newest checkpoint "
        "(default: the newest SFT model, else the newest base model)",
    )
    parser.add_argument("-p", "--prompt", default=None, help="answer this one message and exit (for scripts)")
    parser.add_argument("--system", default=None, help="a system prompt that opens the conversation")
    parser.add_argument("--temperature", type=float, default=0.6, help="0 = always the most likely token")
    parser.add_argument("--top-k", type=int, default=50, help="sample among the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None, help="sample among the likeliest tokens worth p")
    parser.add_argument(
        "--min-p", type=float, default=None, help="drop tokens under min_p × the likeliest one"
    )
    parser.add_argument(
        "--stop", action="append", default=[], help="end a reply before this text (repeatable)"
    )
    parser.add_argument("--max-tokens", type=int, default=512, help="longest reply, in tokens")
    parser.add_argument(
        "--tool",
        choices=["calculator", "python", "none"],
        default="calculator",
        help="what runs the model's <|python_start|> calls: a safe calculator, a sandboxed Python, or nothing",
    )
    parser.add_argument(
        "--unsafe-python",
        action="store_true",
        help="let --tool python run where the sandbox cannot build its walls (no Linux namespaces): only an "
        "in-process guard and resource limits then stand between the model's code and your machine",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    parser.add_argument(
        "--dtype", default="auto", help="auto, bf16 or fp32 (see picochat.runtime.compute_dtype)"
    )
    parser.add_argument(
        "--textbook",
        action="store_true",
        help="run every equation through picochat/equations.py instead of fused kernels (slow; to study)",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decode through torch.compile: 2-3x faster tokens after a one-off compilation pause "
        "(default: on a GPU; --compile on a CPU, where the weights are frozen into the step and compiling "
        "takes 15-40 s; --no-compile: eager)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from picochat.chat_cli import chat
    from picochat.checkpoint import load_engine
    from picochat.engine import SamplingParams

    if args.prompt is not None and not args.prompt.strip():
        raise UserError('-p needs a non-empty prompt, e.g. -p "What is 2+3?"')
    params = SamplingParams(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        stop=tuple(args.stop),
        seed=args.seed,
    )
    from picochat.tools import get_tool

    tool = None if args.tool == "none" else get_tool(args.tool, unsafe=args.unsafe_python)  # refuses early
    engine = load_engine(args.checkpoint, tool, args.dtype, compile=args.compile)
    if args.textbook:  # the plain equations instead of the fused kernels (docs/math.md)
        engine.model.textbook = True
    return chat(engine, params, prompt=args.prompt, system=args.system)
