"""Flags shared by the training subcommands (pretrain, sft): the same flag means the same thing in both."""

from __future__ import annotations

from pathlib import Path

# flag -> (PretrainConfig field, type, help); every flag overrides the preset only when given
COMMON_FLAGS = {
    "--seq-len": ("seq_len", int, "context length in tokens"),
    "--device-batch": ("device_batch", int, "rows per micro-batch on each device"),
    "--batch-tokens": ("batch_tokens", int, "tokens per optimizer step over all devices and micro-steps"),
    "--steps": ("steps", int, "train for exactly this many optimizer steps"),
    "--embedding-lr": ("embedding_lr", float, "AdamW learning rate of the token embedding (at width 768)"),
    "--head-lr": ("head_lr", float, "AdamW learning rate of the LM head (at width 768)"),
    "--matrix-lr": ("matrix_lr", float, "Muon learning rate of the hidden matrices"),
    "--weight-decay": ("weight_decay", float, "Muon weight decay"),
    "--schedule": ("schedule", str, "wsd (warmup-stable-decay), cosine or constant"),
    "--warmup-steps": ("warmup_steps", int, "linear warmup steps"),
    "--warmdown-frac": ("warmdown_frac", float, "share of training spent decaying the rate (wsd)"),
    "--grad-clip": ("grad_clip", float, "clip the gradient norm to this (0: off)"),
    "--eval-every": ("eval_every", int, "validation bits per byte every N steps (0: only at the end)"),
    "--eval-batches": ("eval_batches", int, "validation batches per evaluation"),
    "--log-every": ("log_every", int, "print a progress line every N steps (without a terminal)"),
    "--save-every": ("save_every", int, "checkpoint every N steps (0: only before evals and at the end)"),
    "--keep-last": ("keep_last", int, "checkpoints to keep"),
    "--dtype": ("dtype", str, "compute dtype: auto, bf16, fp32 or fp16"),
    "--device": ("device", str, "auto, cpu, cuda, cuda:1, mps"),
    "--seed": ("seed", int, "random seed"),
    "--run-dir": ("run_dir", Path, "where checkpoints and metrics.jsonl go"),
    "--stop-after-steps": ("stop_after_steps", int, "stop after this step as if interrupted (testing)"),
    "--wandb": ("wandb_project", str, "log to this wandb project (if wandb is installed)"),
}


def add_training_flags(parser, flags: dict) -> None:
    for flag, (dest, kind, help_text) in flags.items():
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=help_text)
    parser.add_argument("--time-budget", dest="time_budget", default=None, help="wall-clock budget, e.g. 10m")
    parser.add_argument("--compile", dest="compile", action="store_true", default=None, help="torch.compile")
    parser.add_argument("--no-resume", dest="resume", action="store_const", const="never", default=None,
                        help="start fresh even if the run directory holds checkpoints")  # fmt: skip
    parser.add_argument("--resume", dest="resume", default=None, metavar="CHECKPOINT",
                        help="resume from this checkpoint (default: the latest in --run-dir)")  # fmt: skip
    parser.add_argument("--restart-schedule", action="store_true", default=None,
                        help="keep only the checkpoint's weights; new optimizer, data and schedule")  # fmt: skip
    parser.add_argument("--tensorboard", action="store_true", default=None, help="also log to TensorBoard")


def overrides_from(args, flags: dict) -> dict:
    from picochat.pretrain import parse_duration

    names = [dest for dest, _, _ in flags.values()] + ["compile", "resume", "restart_schedule", "tensorboard"]
    overrides = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if args.time_budget is not None:
        overrides["time_budget_s"] = parse_duration(args.time_budget)
        overrides.setdefault("steps", None)
    if "steps" in overrides and overrides["steps"] is not None:
        overrides["time_budget_s"] = None
    return overrides
