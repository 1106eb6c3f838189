"""`picochat export CHECKPOINT OUT_DIR`: a checkpoint as a Hugging Face transformers folder (the
`nanochat` architecture) that AutoModelForCausalLM and AutoTokenizer load; docs/hf.md."""

from dataclasses import dataclass
from pathlib import Path

from picochat.settings import add_command, setting

HELP = "Export a checkpoint to a Hugging Face transformers folder (and optionally the Hub)."


@dataclass
class ExportOptions:
    dtype: str = setting("fp32", "weight precision", choices=("fp32", "bf16"))
    overwrite: bool = setting(False, "replace OUT_DIR if it is not empty")
    push_to_hub: str | None = setting(
        None, "also upload to this Hub repository (token: HF_TOKEN, server: HF_ENDPOINT)"
    )
    private: bool = setting(False, "create the Hub repository as private")


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, "export", run, ExportOptions, HELP)
    parser.add_argument(
        "checkpoint", type=Path, help="a checkpoint directory, or a run directory for its newest"
    )
    parser.add_argument("out_dir", type=Path, help="the folder to write (new or empty)")


def run(options: ExportOptions, args) -> None:
    from picochat.hf import export_checkpoint, push_to_hub
    from picochat.paths import check_writable

    check_writable(args.out_dir, "OUT_DIR")
    out = export_checkpoint(args.checkpoint, args.out_dir, dtype=options.dtype, overwrite=options.overwrite)
    print(f"exported {args.checkpoint} to {out}")
    if options.push_to_hub:
        print(f"pushed to {push_to_hub(out, options.push_to_hub, private=options.private)}")
