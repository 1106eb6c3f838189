"""`picochat export`: a checkpoint as a Hugging Face transformers folder (the `nanochat` architecture).

picochat export ~/.cache/picochat/checkpoints/sft out/picochat-sft
picochat export CHECKPOINT OUT_DIR --dtype bf16 --push-to-hub me/picochat-sft

The folder loads with AutoModelForCausalLM / AutoTokenizer.from_pretrained(OUT_DIR); docs/hf.md.
"""

from pathlib import Path

HELP = "Export a checkpoint to a Hugging Face transformers folder (and optionally the Hub)."


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("export", help=HELP, description=HELP)
    parser.add_argument(
        "checkpoint", type=Path, help="a checkpoint directory, or a run directory for its newest"
    )
    parser.add_argument("out_dir", type=Path, help="the folder to write (new or empty)")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="weight precision")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it is not empty")
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO",
        default=None,
        help="also upload the folder to this Hub repository (token from HF_TOKEN, server from HF_ENDPOINT)",
    )
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    parser.set_defaults(func=run)


def run(args) -> int:
    from picochat.hf import export_checkpoint, push_to_hub

    out = export_checkpoint(args.checkpoint, args.out_dir, dtype=args.dtype, overwrite=args.overwrite)
    print(f"exported {args.checkpoint} to {out}")
    if args.push_to_hub:
        print(f"pushed to {push_to_hub(out, args.push_to_hub, private=args.private)}")
    return 0
