"""`picochat import`: a Hugging Face `nanochat` folder as a picochat checkpoint.

picochat import out/picochat-sft                       # -> $PICOCHAT_HOME/checkpoints/hf-picochat-sft
picochat import HF_DIR --out ~/.cache/picochat/checkpoints/mine
picochat chat --checkpoint ~/.cache/picochat/checkpoints/hf-picochat-sft

The checkpoint works with chat, eval, sft and serve; docs/hf.md.
"""

from pathlib import Path

HELP = "Import a Hugging Face nanochat folder as a picochat checkpoint."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("import", help=HELP, description=HELP)
    parser.add_argument(
        "hf_dir", type=Path, help="a folder with config.json, model.safetensors, tokenizer.json"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the run directory to write the checkpoint into (default: $PICOCHAT_HOME/checkpoints/hf-<name>)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace checkpoints already in --out")
    parser.set_defaults(func=run)


def run(args) -> int:
    from picochat.hf import import_folder
    from picochat.paths import checkpoints_dir

    out = args.out or checkpoints_dir() / f"hf-{args.hf_dir.resolve().name}"
    path = import_folder(args.hf_dir, out, overwrite=args.overwrite)
    print(f"imported {args.hf_dir} as {path}; try: picochat chat --checkpoint {out}")
    return 0
