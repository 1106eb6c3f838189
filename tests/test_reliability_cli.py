"""Every command, driven with generated flag values, ends in a result or a clear error, never a traceback,
and never destroys a file the command was not asked to replace.

For each command, hypothesis picks a few of its flags and gives each a hostile value: 0, negatives, nan,
inf, huge numbers, words where numbers go, and missing, empty, binary or corrupt files and directories.
`cli.main(argv)` runs in-process. The properties:

1. No "Traceback" on stderr.
2. The exit status is 0 (a valid result) or 2 (a clear error, from argparse or a UserError); 1 means the
   catch-all in cli.py had to step in, i.e. an input nobody checked.
3. Every file that existed before, in $PICOCHAT_HOME and among the inputs, is still there with the same
   bytes, unless the command's job is to replace it (an output it was pointed at, or --force).

Training flags (pretrain, sft) get their range checks from the shared settings declaration, like the
others.

Values that are valid but expensive (a billion documents, a million-token vocabulary) are left out: they
are correct requests, just slow ones.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from picochat import cli
from picochat.checkpoint import GPT, CheckpointMeta, GPTConfig, save_checkpoint
from picochat.data.corpus import write_synthetic_corpus
from picochat.data.shards import iter_documents
from picochat.tokenizer import Tokenizer

NUMBERS = ["0", "-1", "-7", "1", "2", "nan", "inf", "-inf", "1e3", "3.5", "abc", "", " ", "0x10", "１",
           "10000000000000000000000000000000", "-99999999999999999999", "1e309", "-0"]  # fmt: skip
WORDS = ["", "x", "nosuch", "../../etc", "a b", "-", "ü", "auto", "cpu", "bf16", "fp32", "\x7f", "x" * 300]
BAD_PRESETS = ["", "nosuch", "cpu", "CPU-TINY", "../cpu-tiny", "gpu-d99"]
FILE_KINDS = ["text", "latin1", "binary", "empty", "missing", "dir", "junk_dir", "fake_parquet", "bad_jsonl",
              "good_jsonl", "corpus"]  # fmt: skip
OUTPUT_KINDS = ["new", "file", "foreign_dir", "tokenizer_dir"]
CHECKPOINT_KINDS = ["missing", "file", "junk_dir", "checkpoint", "run_dir", "small_vocab_checkpoint"]

# command -> (fixed arguments, {flag: kind}); kinds: number, word, switch, input, output, checkpoint, preset
TRAINING = ["--seq-len", "--device-batch", "--batch-tokens", "--steps", "--embedding-lr", "--head-lr",
            "--matrix-lr", "--weight-decay", "--warmup-steps", "--warmdown-frac", "--grad-clip", "--eval-every",
            "--eval-batches", "--log-every", "--save-every", "--keep-last", "--seed", "--stop-after-steps"]  # fmt: skip
TINY_TRAINING = ["--depth", "1", "--seq-len", "16", "--device-batch", "1", "--batch-tokens", "32",
                 "--steps", "1", "--eval-batches", "1", "--log-every", "1"]  # fmt: skip
SPECS: dict[str, tuple[list[str], dict[str, str]]] = {
    "tokenizer train": (
        ["--input", "@text"],
        {
            "--input": "input",
            "--vocab-size": "number",
            "--doc-chars": "number",
            "--max-chars": "number",
            "--output": "output",
            "--force": "switch",
        },
    ),  # fmt: skip
    "tokenizer eval": (
        ["--input", "@text"],
        {"--input": "input", "--tokenizer": "checkpoint", "--held-out-chars": "number"},
    ),
    "tokenizer show": (["hello"], {"--tokenizer": "checkpoint"}),
    "data list": ([], {}),
    "data stats": ([], {"--name": "word", "--no-tokens": "switch"}),
    "data synthetic": (
        ["--name", "fresh"],
        {"--docs": "number", "--seed": "number", "--name": "word", "--force": "switch"},
    ),
    "data build": (
        ["--no-fetch"],
        {
            "--name": "word",
            "--sources": "word",
            "--input": "input",
            "--seed": "number",
            "--val-fraction": "number",
            "--force": "switch",
        },
    ),  # fmt: skip
    "data fetch": (["nosuch-source"], {"--shards": "number", "--workers": "number", "--name": "word"}),
    "eval": (
        ["--batches", "1", "--batch-size", "1"],
        {
            "--checkpoint": "checkpoint",
            "--corpus": "input",
            "--batches": "number",
            "--batch-size": "number",
            "--dtype": "word",
        },
    ),  # fmt: skip
    "chat": (
        ["-p", "hi", "--max-tokens", "4", "--tool", "none"],
        {
            "--checkpoint": "checkpoint",
            "--temperature": "number",
            "--top-k": "number",
            "--max-tokens": "number",
            "--seed": "number",
            "--dtype": "word",
            "-p": "word",
            "--system": "word",
        },
    ),  # fmt: skip
    "run": (["--preset", "nosuch"], {"--preset": "preset", "--owner": "word"}),
    "pretrain": (
        ["--preset", "cpu-tiny", *TINY_TRAINING],
        {
            **dict.fromkeys(TRAINING, "number"),
            "--depth": "number",
            "--kv-groups": "number",
            "--ratio": "number",
            "--run-dir": "output",
            "--corpus": "input",
            "--tokenizer": "checkpoint",
            "--time-budget": "word",
            "--schedule": "word",
            "--dtype": "word",
            "--device": "word",
            "--preset": "preset",
        },
    ),  # fmt: skip
    "sft": (
        [*TINY_TRAINING[2:], "--seq-len", "64", "--batch-tokens", "64", "--mix", "arithmetic:1"],
        {
            **dict.fromkeys(TRAINING, "number"),
            "--base": "checkpoint",
            "--lr-frac": "number",
            "--mix": "word",
            "--run-dir": "output",
            "--time-budget": "word",
        },
    ),  # fmt: skip
    # serve: uvicorn.run is replaced by a no-op in the test, so a valid invocation returns at once
    "serve": (
        [],
        {
            "--checkpoint": "checkpoint",
            "--port": "number",
            "--slots": "number",
            "--context": "number",
            "--max-queue": "number",
            "--dtype": "word",
            "--tool": "word",
        },
    ),  # fmt: skip
    "export": (["@checkpoint", "@new"], {"--dtype": "word", "--overwrite": "switch"}),
    "report": ([], {"--html": "switch"}),
    "rl": (["--eval-only"], {"--base": "checkpoint", "--seed": "number"}),
}
SLOW = {"serve", "export", "rl"}  # a model loads in every example: fewer of them
TRAINING_STAGES = {"pretrain", "sft"}  # an example builds a model: fewer of them


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A home with a corpus, a tokenizer and a tiny base checkpoint, and a folder of good and bad inputs."""
    root = tmp_path_factory.mktemp("cli_world")
    home, inputs = root / "home", root / "inputs"
    corpus = write_synthetic_corpus(home / "data" / "default", n_docs=40, seed=1)
    docs = list(iter_documents(sorted((corpus / "train").glob("*.parquet"))))
    tokenizer = Tokenizer.train(docs, vocab_size=280)
    tokenizer.save(home / "tokenizer")
    config = GPTConfig(vocab_size=280, seq_len=64, n_layer=1, n_head=1, n_kv_head=1, n_embd=16)
    save_checkpoint(home / "checkpoints" / "base", GPT(config), CheckpointMeta(step=1), tokenizer=tokenizer)
    small = GPTConfig(**{**config.to_dict(), "vocab_size": 300})
    save_checkpoint(inputs / "small_vocab", GPT(small), CheckpointMeta(step=1), tokenizer=tokenizer)
    inputs.mkdir(exist_ok=True)
    (inputs / "text.txt").write_text("\n\n".join(docs[:10]))
    (inputs / "latin1.txt").write_bytes("café crème\n".encode("latin-1"))
    (inputs / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (inputs / "empty.txt").write_bytes(b"")
    (inputs / "dir").mkdir()
    (inputs / "junk_dir").mkdir()
    (inputs / "junk_dir" / "meta.json").write_text("{not json")
    (inputs / "junk_dir" / "model.safetensors").write_bytes(b"\x00" * 64)
    (inputs / "fake.parquet").write_bytes(b"PAR1" + os.urandom(64))
    (inputs / "bad.jsonl").write_text('{"text": "ok"}\n{"text": 3}\n')
    (inputs / "good.jsonl").write_text("".join(f'{{"text": "document {i} about cats"}}\n' for i in range(30)))
    (inputs / "foreign_dir").mkdir()
    (inputs / "foreign_dir" / "thesis.tex").write_text("years of work")
    shutil.copytree(home / "tokenizer", inputs / "tokenizer_dir")
    shutil.copytree(home, root / "pristine_home")
    return {"root": root, "home": home, "inputs": inputs, "corpus": corpus}


def restore(world) -> None:
    """Every example starts from the same home (what one example builds must not change the next)."""
    shutil.rmtree(world["home"])
    shutil.copytree(world["root"] / "pristine_home", world["home"])
    shutil.rmtree(world["root"] / "outputs", ignore_errors=True)


def path_of(world, kind: str, counter: list[int]) -> str:
    inputs = world["inputs"]
    counter[0] += 1
    return str(
        {
            "text": inputs / "text.txt",
            "latin1": inputs / "latin1.txt",
            "binary": inputs / "binary.bin",
            "empty": inputs / "empty.txt",
            "missing": inputs / "missing" / "nothing.txt",
            "dir": inputs / "dir",
            "junk_dir": inputs / "junk_dir",
            "fake_parquet": inputs / "fake.parquet",
            "bad_jsonl": inputs / "bad.jsonl",
            "good_jsonl": inputs / "good.jsonl",
            "corpus": world["corpus"],
            "new": world["root"] / "outputs" / f"new_{counter[0]}",
            "file": inputs / "text.txt",
            "foreign_dir": inputs / "foreign_dir",
            "tokenizer_dir": inputs / "tokenizer_dir",
            "checkpoint": world["home"] / "checkpoints" / "base" / "step_000001",
            "run_dir": world["home"] / "checkpoints" / "base",
            "small_vocab_checkpoint": inputs / "small_vocab",
        }[kind]
    )


def fingerprints(*roots: Path) -> dict[Path, str]:
    found = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-") and path.name != "writer.lock":
                found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def allowed_to_change(path: Path, command: str, argv: list[str], world) -> bool:
    """A file the command may replace: under an output it was pointed at, or what --force names."""
    outputs = [Path(argv[i + 1]) for i, flag in enumerate(argv[:-1]) if flag in ("--output", "--run-dir")]
    if command == "tokenizer train" and "--force" in argv and not outputs:
        outputs.append(world["home"] / "tokenizer")
    if command in ("data synthetic", "data build") and "--force" in argv:
        names = [argv[i + 1] for i, flag in enumerate(argv[:-1]) if flag == "--name"]
        outputs += [world["home"] / "data" / (names[-1] if names else "default")]
    if command == "pretrain" and not outputs:
        outputs.append(world["home"] / "checkpoints" / "base")  # its job: train (or resume) the base model
    if command == "report":
        outputs.append(world["home"] / "reports")  # its job: write the report
    if command == "sft" and not outputs:
        outputs.append(world["home"] / "checkpoints" / "sft")
    return any(path == out or out in path.parents for out in outputs)


@st.composite
def invocations(draw, command: str, world) -> list[str]:
    fixed, flags = SPECS[command]
    counter = [0]
    argv = [path_of(world, a[1:], counter) if a.startswith("@") else a for a in fixed]
    chosen = draw(st.lists(st.sampled_from(sorted(flags)), max_size=3, unique=True)) if flags else []
    for flag in chosen:
        kind = flags[flag]
        if kind == "switch":
            argv.append(flag)
            continue
        value = {
            "number": lambda: draw(st.sampled_from(NUMBERS)),
            "word": lambda: draw(st.sampled_from(WORDS)),
            "preset": lambda: draw(st.sampled_from(BAD_PRESETS)),
            "input": lambda: path_of(world, draw(st.sampled_from(FILE_KINDS)), counter),
            "output": lambda: path_of(world, draw(st.sampled_from(OUTPUT_KINDS)), counter),
            "checkpoint": lambda: path_of(world, draw(st.sampled_from(CHECKPOINT_KINDS)), counter),
        }[kind]()
        argv += [flag, value]  # a later flag overrides the fixed one of the same name
    return [*command.split(), *argv]


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exit:  # argparse: usage errors exit 2 with a one-line message
        code = exit.code if isinstance(exit.code, int) else 2
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(SPECS))
def test_every_command_gives_a_result_or_a_clear_error(command, world, capsys, monkeypatch):
    monkeypatch.setenv("PICOCHAT_HOME", str(world["home"]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: None)  # serve: check, load, then return
    examples = int(os.environ.get("PICOCHAT_FUZZ_EXAMPLES", 8 if command in TRAINING_STAGES | SLOW else 20))

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=st.data())
    def check(data):
        argv = data.draw(invocations(command, world))
        restore(world)
        before = fingerprints(world["home"], world["inputs"])
        code, err = run_cli(argv, capsys)
        assert "Traceback" not in err, f"picochat {' '.join(argv)}\n{err}"
        for path, digest in before.items():
            if allowed_to_change(path, command, argv, world):
                continue
            assert path.exists(), f"picochat {' '.join(argv)} deleted {path}"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{' '.join(argv)} changed {path}"
        assert code in (0, 2), f"picochat {' '.join(argv)} exited {code}\n{err}"
        if code == 2:
            assert err.strip(), f"picochat {' '.join(argv)} failed without saying why"

    check()
