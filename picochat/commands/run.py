"""`picochat run`: the whole pipeline on the default corpus (see picochat/pipeline.py)."""

HELP = "Run the whole pipeline: data, tokenizer, pretrain, SFT, evaluation, report."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("run", help=HELP, description=HELP)
    parser.add_argument(
        "--preset",
        default="cpu-demo",
        help="cpu-demo (about 15 minutes on 2 cores), cpu-tiny, or gpu / gpu-d12 (a GPU node: docs/gpu.md)",
    )
    parser.add_argument("--owner", default="my user", help="who trained the model, as the model will say")
    parser.set_defaults(func=run)


def run(args) -> int:
    from picochat.pipeline import run_pipeline

    run_pipeline(args.preset, owner=args.owner)
    return 0
