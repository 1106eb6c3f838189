"""`picochat import HF_DIR`: a Hugging Face `nanochat` folder as a picochat checkpoint (for chat, eval,
sft and serve); docs/hf.md."""

from dataclasses import dataclass
from pathlib import Path

from picochat.settings import add_command, setting

HELP = "Import a Hugging Face nanochat folder as a picochat checkpoint."


@dataclass
class ImportOptions:
    out: Path | None = setting(
        None, "the run directory to write into (default: $PICOCHAT_HOME/checkpoints/hf-<name>)"
    )
    overwrite: bool = setting(False, "replace checkpoints already in --out")


def add_parser(subparsers) -> None:
    parser = add_command(subparsers, "import", run, ImportOptions, HELP)
    parser.add_argument(
        "hf_dir", type=Path, help="a folder with config.json, model.safetensors, tokenizer.json"
    )


def run(options: ImportOptions, args) -> None:
    from picochat.hf import import_folder
    from picochat.paths import checkpoints_dir

    out = options.out or checkpoints_dir() / f"hf-{args.hf_dir.resolve().name}"
    path = import_folder(args.hf_dir, out, overwrite=options.overwrite)
    print(f"imported {args.hf_dir} as {path}; try: picochat chat --checkpoint {out}")
