"""`picochat run`: the whole pipeline on the default corpus (see picochat/pipeline.py)."""

from picochat.settings import RUN_PRESETS, add_plan_flags

HELP = "Run the whole pipeline: data, tokenizer, pretrain, SFT, evaluation, report."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("run", help=HELP, description=HELP)
    help = "cpu-demo (about 15 minutes on 2 cores), cpu-tiny, or a GPU node: gpu, gpu-d12 (docs/gpu.md); "
    help += "gpu-rehearsal: the GPU run's stages at toy sizes on 2 CPU processes"
    parser.add_argument("--preset", default="cpu-demo", choices=list(RUN_PRESETS), help=help)
    parser.add_argument(
        "--owner", help="who trained the model, as the model will say (default: SFT's --owner)"
    )
    add_plan_flags(parser)
    help = "replace a tokenizer another preset made, and train new models beside its checkpoints"
    parser.add_argument("--force", action="store_true", help=help)
    parser.set_defaults(func=run)


def run(args) -> None:
    if args.plan:
        from picochat.plan import plan_run

        print(plan_run(args.preset, args.gpu, args.gpus))
        return
    from picochat.pipeline import run_pipeline

    run_pipeline(args.preset, owner=args.owner, force=args.force)
