"""`picochat rl`: reinforcement learning (GRPO) on tasks with checkable answers (picochat/rl.py)."""

from picochat.errors import UserError
from picochat.settings import RL_PRESETS, RLConfig, add_command

HELP = "Reinforcement learning (GRPO) on tasks with checkable answers."


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, "rl", run, RLConfig, HELP, presets=RL_PRESETS)
    help = "print the held-out pass@1 of --base on --tasks, and train nothing"
    parser.add_argument("--eval-only", action="store_true", help=help)
    parser.set_defaults(check=refuse_unused)


def refuse_unused(config, args) -> None:
    """The shared settings RL sets itself (--batch-tokens) or does not use."""
    if hasattr(args, "batch_tokens"):
        raise UserError(
            "RL sets --batch-tokens itself (--prompts-per-step × --group-size × --seq-len); size the step with "
            "--prompts-per-step and --group-size"
        )
    for name, instead in (("eval_batches", "--eval-problems"), ("sample_every", "--eval-only")):
        if hasattr(args, name):
            raise UserError(f"--{name.replace('_', '-')} does not apply to RL; see {instead}")


def run(config, args) -> None:
    from picochat.rl import rl
    from picochat.tools.sandbox import get_tool

    rl(config, eval_only=args.eval_only, tool=get_tool(config.tool))
