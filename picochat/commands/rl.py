"""`picochat rl`: reinforcement learning (GRPO) on tasks with checkable answers (see picochat/rl.py;
settings in picochat/settings.py)."""

from __future__ import annotations

from picochat.settings import RLConfig, add_flags, config_from_args, describe

HELP = "Reinforcement learning (GRPO) on tasks with checkable answers."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("rl", help=HELP, description=HELP)
    add_flags(parser, RLConfig)
    parser.add_argument("--eval-only", action="store_true",
                        help="print the held-out pass@1 of --base on --tasks, and train nothing")  # fmt: skip
    parser.set_defaults(func=run)


def run(args) -> int:
    from picochat.errors import UserError

    if args.batch_tokens is not None:
        raise UserError("RL sets --batch-tokens itself (--prompts-per-step × --group-size × --seq-len); "
                        "size the step with --prompts-per-step and --group-size")  # fmt: skip
    for flag, value, instead in (("--eval-batches", args.eval_batches, "--eval-problems"),
                                 ("--sample-every", args.sample_every, "--eval-only")):  # fmt: skip
        if value is not None:
            raise UserError(f"{flag} does not apply to RL; see {instead}")
    config = config_from_args(args, RLConfig)
    if args.print_config:
        print(describe(config), end="")
        return 0
    from picochat.rl import rl

    rl(config, eval_only=args.eval_only)
    return 0
