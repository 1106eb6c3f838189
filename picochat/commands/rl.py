"""`picochat rl`: reinforcement learning (GRPO) on tasks with checkable answers (see picochat/rl.py)."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from picochat.commands.training_flags import COMMON_FLAGS, add_training_flags, overrides_from

HELP = "Reinforcement learning (GRPO) on tasks with checkable answers."

RL_FLAGS = {
    "--base": ("base", Path, "the chat checkpoint or run directory to start from (default: the SFT run)"),
    "--tasks": (
        "tasks",
        str,
        "checkable tasks with weights, e.g. arithmetic:2,spelling:1,gym:letter_counting:1",
    ),
    "--prompts-per-step": ("prompts_per_step", int, "problems per optimizer step, all devices together"),
    "--group-size": ("group_size", int, "replies sampled per problem (G); advantages compare them"),
    "--max-new-tokens": ("max_new_tokens", int, "tokens per reply, tool outputs included"),
    "--temperature": ("temperature", float, "sampling temperature of the replies"),
    "--top-k": ("top_k", int, "sample only from the k most likely tokens"),
    "--tool": ("tool", str, "the tool replies may call: calculator, python or none"),
    "--kl-coef": ("kl_coef", float, "weight of the KL penalty to the starting model (0: off)"),
    "--clip-eps": ("clip_eps", float, "PPO ratio clip when a batch is reused (--updates-per-batch > 1)"),
    "--updates-per-batch": ("updates_per_batch", int, "optimizer steps on each sampled batch"),
    "--eval-problems": ("eval_problems", int, "held-out problems per task at each evaluation"),
    "--lr-frac": ("lr_frac", float, "learning rates as a fraction of pretraining's"),
}


def rl_flags() -> dict:
    """RL's own flags and the shared training flags that apply to it (it has no --seq-len, for one)."""
    from picochat.rl import RLConfig

    names = {f.name for f in fields(RLConfig)}
    return {**RL_FLAGS, **{flag: spec for flag, spec in COMMON_FLAGS.items() if spec[0] in names}}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("rl", help=HELP, description=HELP)
    add_training_flags(parser, {**RL_FLAGS, **COMMON_FLAGS})
    parser.add_argument("--no-eval-before", dest="eval_before", action="store_false", default=None,
                        help="skip evaluating the starting model before training")  # fmt: skip
    parser.add_argument("--eval-only", action="store_true",
                        help="only print the held-out pass@1 of --base on --tasks")  # fmt: skip
    parser.set_defaults(func=run)


def run(args) -> int:
    from picochat.errors import UserError
    from picochat.rl import RLConfig, rl

    flags = rl_flags()
    unused = [
        flag
        for flag, (dest, _, _) in COMMON_FLAGS.items()
        if flag not in flags and getattr(args, dest) is not None
    ]
    if unused:
        raise UserError(f"{', '.join(unused)} do(es) not apply to RL; see picochat rl --help")
    overrides = overrides_from(args, flags)
    if args.eval_before is not None:
        overrides["eval_before"] = args.eval_before
    rl(replace(RLConfig(), **overrides), eval_only=args.eval_only)
    return 0
