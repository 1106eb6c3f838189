"""The bad-input probe as a test: a table of command lines over every command, each with the outcome it
must have, run in-process against one small home (a corpus, a tokenizer, a tiny checkpoint, good and bad
files), as root and, in a forked child, as the unprivileged user 65534.

Each outcome is classified:

    ok              the expected outcome: exit 0 for a valid input; for a bad one exit 2 and a message
                    holding the expected phrase (each part of "a|b")
    traceback       a Python traceback was printed, or an exception left `cli.main`
    internal-error  the catch-all in cli.py had to step in (exit 1): an input nobody checked
    silent-accept   a bad input ended in exit 0
    unclear         an error that does not say what the case expects (or a valid input refused)
    data-loss       a file that existed before the case was changed or deleted

The test asserts that every case is ok, and that docs/reliability.md's counts table is the one this suite
measured (`PICOCHAT_WRITE_COUNTS=1 pytest tests/test_bad_input.py` rewrites it).
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from picochat import cli
from picochat.chat_cli import ChatSession
from picochat.checkpoint import GPT, CheckpointMeta, GPTConfig, save_checkpoint
from picochat.data.corpus import write_synthetic_corpus
from picochat.data.shards import iter_documents
from picochat.engine import SamplingParams
from picochat.tokenizer import Tokenizer

NOBODY = 65534
LATIN = os.fsdecode(b"caf\xe9")  # what Python makes of a Latin-1 byte on a UTF-8 command line
BAD_NUMBERS = ["nan", "inf", "-1", "abc"]
# command -> flags whose value must be a finite, non-negative (most: positive) number
NUMERIC = {
    "pretrain --preset cpu-tiny": "--seq-len --device-batch --batch-tokens --steps --embedding-lr --head-lr "
    "--matrix-lr --weight-decay --warmup-steps --warmdown-frac --final-lr-frac --grad-clip --eval-every "
    "--eval-batches --sample-every --log-every --save-every --keep-last --seed --stop-after-steps --depth "
    "--kv-groups --ratio --chat-share --mid-share --mid-frac --time-budget",
    "sft": "--lr-frac --seq-len --steps --keep-last --device-batch",
    "rl --eval-only": "--prompts-per-step --group-size --max-new-tokens --temperature --top-k --kl-coef "
    "--clip-eps --updates-per-batch --eval-problems --lr-frac",
    "chat -p hi": "--temperature --top-k --top-p --min-p --max-tokens --seed",
    "serve": "--port --slots --context --max-queue",
    "eval": "--batches --batch-size",
    "eval base": "--shots --max-per-task --seed --batch-tokens",
    "eval chat": "--batch-size --samples --temperature --timeout --max-per-task --seed",
    "eval contamination": "--conversations --threshold --ngram",
    "tokenizer train --input {text}": "--vocab-size --doc-chars --max-chars",
    "tokenizer eval --input {text}": "--held-out-chars",
    "data synthetic --name fresh": "--docs --seed",
    "data build --no-fetch": "--seed --val-fraction",
    "data fetch": "--shards --workers",
}
NUMERIC_CASES = [
    (f"{command} {flag} {value}", flag)
    for command, flags in NUMERIC.items()
    for flag in flags.split()
    for value in BAD_NUMBERS
]
OK, WARNED = "", "0:"  # the expected outcome of a valid input: exit 0 (and, after "0:", a phrase it prints)
# (command line, phrase the error must hold, or OK), {placeholders} filled in from the world below
CASES = NUMERIC_CASES + [
    # the command line itself
    ("", "usage"),
    ("nosuch", "invalid choice"),
    ("--nosuch", "unrecognized"),
    ("--version", OK),
    ("chat --nosuch 1", "unrecognized"),
    ("tokenizer", "required"),
    ("tokenizer nosuch", "invalid choice"),
    ("tokenizer fetch-reference --x", "unrecognized"),
    ("data", "usage"),
    ("data nosuch", "invalid choice"),
    ("eval nosuch", "invalid choice"),
    ("export", "required"),
    ("export {ckpt}", "required"),
    ("import", "required"),
    ("run --preset nosuch", "invalid choice"),
    ("run --preset", "expected one argument"),
    ("pretrain --preset nosuch", "invalid choice"),
    ("sft --preset nosuch", "invalid choice"),
    # values of the wrong kind or out of their ranges, beyond the numbers above
    ("pretrain --preset cpu-tiny --dtype fp8", "--dtype"),
    ("pretrain --preset cpu-tiny --device cuda:x", "--device"),
    ("pretrain --preset cpu-tiny --schedule nosuch", "--schedule"),
    ("pretrain --preset cpu-tiny --time-budget 0", "--time-budget"),
    ("pretrain --preset cpu-tiny --warmdown-frac 2", "--warmdown-frac"),
    ("pretrain --preset cpu-tiny --seq-len 1e309", "--seq-len"),
    ("pretrain --preset cpu-tiny --steps 99999999999999999999999 --print-config", OK),
    ("pretrain --preset cpu-tiny --batch-tokens 1000", "multiple"),
    ("pretrain --preset cpu-tiny --kv-groups 3", "kv"),
    ("pretrain --preset cpu-tiny --print-config", OK),
    ("pretrain --preset cpu-tiny --run-dir {text}", "text.txt"),
    ("pretrain --preset cpu-tiny --config {missing}", "missing"),
    ("pretrain --preset cpu-tiny --config {dir}", "empty_dir"),
    ("pretrain --preset cpu-tiny --config {bad_toml}", "TOML"),
    ("pretrain --preset cpu-tiny --config {latin_toml}", "latin.toml"),
    ("pretrain --preset cpu-tiny --config {nan_toml}", "seq_len"),
    ("pretrain --preset cpu-tiny --config {unknown_toml}", "unknown setting"),
    ("pretrain --preset cpu-tiny --print-config --run-dir {latin_path}", "not UTF-8"),
    ("pretrain --preset cpu-tiny --print-config --run-dir {outputs}/run", OK),
    ("sft --mix nosuch:1", "nosuch"),
    ("sft --mix arithmetic:-1", "arithmetic"),
    ("sft --base {missing}", "missing"),
    ("sft --base {text}", "text.txt"),
    ("sft --base {nan_ckpt} --steps 1 --mix arithmetic:1 --run-dir {new}", "not finite|embed_tokens.weight"),
    ("sft --base {int8_ckpt} --steps 1 --mix arithmetic:1 --run-dir {new}", "int8|embed_tokens.weight"),
    ("sft --owner {latin} --print-config", "not UTF-8"),
    ("rl --eval-only --batch-tokens 64", "--batch-tokens"),
    ("rl --eval-only --base {missing}", "missing"),
    ("rl --eval-only --base {junk}", "junk"),
    ("rl --eval-only --tool nosuch", "--tool"),
    ("rl --eval-only --group-size 1", "--group-size"),
    ("rl --eval-only --clip-eps 2", "--clip-eps"),
    # chat: a tiny model answers in a few tokens
    ("chat -p hi --max-tokens 2 --tool none", OK),
    ("chat --max-tokens 2 --tool none", OK),  # stdin is empty: the chat ends at once
    ("chat -p '' --tool none", "-p needs"),
    ("chat -p hi --tool nosuch", "--tool"),
    ("chat -p hi --dtype fp8", "--dtype"),
    ("chat -p hi --top-p 0", "--top-p"),
    ("chat -p hi --top-p 1.5", "--top-p"),
    ("chat -p hi --min-p 2", "--min-p"),
    ("chat -p hi --checkpoint {missing}", "missing"),
    ("chat -p hi --checkpoint {text}", "text.txt"),
    ("chat -p hi --checkpoint {junk}", "junk"),
    ("chat -p hi --checkpoint {empty_dir}", "empty_dir"),
    ("chat -p hi --checkpoint {nan_ckpt} --tool none", "not finite|embed_tokens.weight"),
    ("chat -p hi --checkpoint {inf_ckpt} --tool none", "not finite|embed_tokens.weight"),
    ("chat -p hi --checkpoint {int8_ckpt} --tool none", "int8|embed_tokens.weight"),
    ("chat -p hi --checkpoint {latin_meta_ckpt} --tool none", "no complete checkpoint"),
    ("chat -p {latin} --max-tokens 2 --tool none", "not UTF-8"),
    ("chat -p hi --system {latin} --max-tokens 2 --tool none", "not UTF-8"),
    ("chat -p hi --stop {latin} --max-tokens 2 --tool none", "not UTF-8"),
    # serve: uvicorn.run does nothing here, so a valid invocation loads the model and returns
    ("serve --tool none --no-compile", OK),
    ("serve --port 0", "--port"),
    ("serve --port 70000", "--port"),
    ("serve --context 1", "--context"),
    ("serve --tool nosuch", "--tool"),
    ("serve --checkpoint {missing}", "missing"),
    ("serve --checkpoint {nan_ckpt} --tool none --no-compile", "not finite|embed_tokens.weight"),
    ("serve --checkpoint {int8_ckpt} --tool none --no-compile", "int8"),
    ("serve --tool none --no-compile --api-key {latin}", "not UTF-8"),
    # eval
    ("eval --batches 1 --batch-size 1", OK),
    ("eval --list", OK),
    ("eval --batches 0", "--batches"),
    ("eval --batches 1 --batch-size 1 --checkpoint {missing}", "missing"),
    ("eval --batches 1 --batch-size 1 --checkpoint {junk}", "junk"),
    ("eval --batches 1 --batch-size 1 --checkpoint {small_vocab_ckpt}", "vocabulary"),
    ("eval --batches 1 --batch-size 1 --checkpoint {nan_ckpt}", "not finite|embed_tokens.weight"),
    ("eval --batches 1 --batch-size 1 --checkpoint {int8_ckpt}", "int8"),
    ("eval --batches 1 --batch-size 1 --corpus {missing}", "missing"),
    ("eval --batches 1 --batch-size 1 --corpus {empty_dir}", "empty_dir"),
    ("eval --batches 1 --batch-size 1 --corpus {text}", "text.txt"),
    ("eval base --tasks nosuch", "nosuch"),
    ("eval base --tasks arc_easy:-1", "arc_easy"),
    ("eval chat --tasks nosuch", "nosuch"),
    ("eval fetch --tasks nosuch", "nosuch"),
    ("eval contamination", "eval fetch"),
    ("eval contamination --tasks nosuch", "nosuch"),
    ("eval contamination --threshold 2", "--threshold"),
    ("eval chat --timeout 0", "--timeout"),
    # tokenizer
    ("tokenizer show hello", OK),
    ("tokenizer show ''", OK),
    ("tokenizer show {latin}", "not UTF-8"),
    ("tokenizer show hello --tokenizer {missing}", "missing"),
    ("tokenizer show hello --tokenizer {empty_dir}", "empty_dir"),
    ("tokenizer show hello --tokenizer {junk}", "junk"),
    ("tokenizer show hello --tokenizer {text}", "text.txt"),
    ("tokenizer show hello --tokenizer {bad_tokenizer}", "bad_tokenizer"),
    ("tokenizer train --input {text} --vocab-size 300 --output {new}", OK),
    ("tokenizer train --input {good_jsonl} --vocab-size 270 --output {new}", OK),
    ("tokenizer train --input {text} --vocab-size 10 --output {new}", "vocab"),
    ("tokenizer train --input {latin1}  --output {new}", "not UTF-8"),
    ("tokenizer train --input {binary} --output {new}", "binary.bin"),
    ("tokenizer train --input {empty} --output {new}", "give more text"),
    ("tokenizer train --input {missing} --output {new}", "missing"),
    ("tokenizer train --input {empty_dir} --output {new}", "empty_dir"),
    ("tokenizer train --input {fake_parquet} --output {new}", "parquet"),
    ("tokenizer train --input {bad_jsonl} --output {new}", "bad.jsonl"),
    ("tokenizer train --input {text} --vocab-size 300 --output {foreign}", "foreign"),
    ("tokenizer train --input {text} --vocab-size 300 --output {foreign} --force", "foreign"),
    ("tokenizer train --input {text} --output {text}", "text.txt"),
    ("tokenizer train --input {text}", "already exists"),
    ("tokenizer train --output {new}", "required"),
    ("tokenizer eval --input {text}", OK),
    ("tokenizer eval --input {latin1}", WARNED + "not UTF-8"),  # the source is skipped, and the reason said
    ("tokenizer eval --input {missing}", "missing"),
    ("tokenizer eval --input {text} --tokenizer {missing}", "missing"),
    # data
    ("data list", OK),
    ("data stats", OK),
    ("data stats --no-tokens", OK),
    ("data stats --name nosuch", "nosuch"),
    ("data stats --name ../..", "../.."),
    ("data stats --name {latin}", "name"),
    ("data synthetic --name fresh --docs 2", OK),
    ("data synthetic --name default --docs 2", "--force"),
    ("data synthetic --name '' --docs 2", "name"),
    ("data synthetic --name ../escape --docs 2", "name"),
    ("data synthetic --name {long} --docs 2", "name"),
    ("data synthetic --name {latin} --docs 2", "name"),
    ("data synthetic --docs 1", "--docs"),
    ("data synthetic --docs 1e20", "--docs"),
    ("data build --no-fetch --input {good_jsonl} --name mine", OK),
    ("data build --no-fetch --input {missing} --name other", "missing"),
    ("data build --no-fetch --input {binary} --name other", "binary.bin"),
    ("data build --no-fetch --input {latin1} --name other", "not UTF-8"),
    ("data build --no-fetch --input {fake_parquet} --name other", "parquet"),
    ("data build --no-fetch --input {good_jsonl} --name default", "--force"),
    ("data build --no-fetch --input {good_jsonl} --name mine --val-fraction 2", "--val-fraction"),
    ("data build --no-fetch --sources nosuch --name other", "nosuch"),
    ("data fetch nosuch-source", "nosuch-source"),
    # export and import
    ("export {ckpt} {new}", OK),
    ("export {run} {new} --dtype bf16", OK),
    ("export {ckpt} {new} --dtype fp8", "--dtype"),
    ("export {missing} {new}", "missing"),
    ("export {junk} {new}", "junk"),
    ("export {nan_ckpt} {new}", "not finite|embed_tokens.weight"),
    ("export {int8_ckpt} {new}", "int8"),
    ("export {ckpt} {foreign}", "foreign"),
    ("export {ckpt} {text}", "text.txt"),
    ("import {missing}", "missing"),
    ("import {empty_dir}", "empty_dir"),
    ("import {text}", "text.txt"),
    ("import {junk}", "junk"),
    # report
    ("report --no-samples", OK),
    # the environment
    ("data list", OK, {"PICOCHAT_HOME": ""}),
    ("data synthetic --name fresh --docs 2", "text.txt", {"PICOCHAT_HOME": "{text}"}),
    ("data synthetic --name fresh --docs 2", "not UTF-8|caf\\xe9/data", {"PICOCHAT_HOME": "{latin_path}"}),
    ("tokenizer show hello", "no tokenizer", {"PICOCHAT_HOME": "{latin_path}"}),
    ("chat -p hi --max-tokens 2 --tool none", "no trained model", {"PICOCHAT_HOME": "{empty_dir}"}),
    ("serve --tool none --no-compile", OK, {"PICOCHAT_API_KEY": LATIN}),
    ("pretrain --preset cpu-tiny --steps 1 --run-dir {new}", "$WORLD_SIZE", {"WORLD_SIZE": "abc"}),
    ("pretrain --preset cpu-tiny --steps 1 --run-dir {new}", "$WORLD_SIZE", {"WORLD_SIZE": "0"}),
    ("pretrain --preset cpu-tiny --steps 1 --run-dir {new}", "$RANK", {"RANK": "-1", "WORLD_SIZE": "2"}),
    (
        "sft --steps 1 --mix arithmetic:1 --run-dir {new}",
        "$LOCAL_RANK",
        {"LOCAL_RANK": "x", "WORLD_SIZE": "2"},
    ),
]
# unreadable and unwritable files and folders, run as user 65534 (each error names the file and says why)
NOBODY_CASES = [
    ("tokenizer train --input {secret} --output {new}", "secret.txt|permission"),
    ("tokenizer train --input {secret_dir} --output {new}", "secret_dir|permission"),
    ("tokenizer train --input {text} --output {readonly}/tok", "readonly|permission"),
    ("tokenizer eval --input {secret}", "secret.txt|permission"),
    ("tokenizer show hello --tokenizer {locked_tokenizer}", "locked_tokenizer|permission"),
    ("data build --no-fetch --input {secret} --name mine2", "secret.txt|permission"),
    (
        "data synthetic --name fresh --docs 2",
        "readonly_home|permission",
        {"PICOCHAT_HOME": "{readonly_home}"},
    ),
    ("data stats --name locked", "locked|permission"),
    ("eval --batches 1 --batch-size 1 --checkpoint {locked_ckpt}", "model.safetensors|permission"),
    ("eval --batches 1 --batch-size 1 --checkpoint {secret_dir}", "secret_dir|permission"),
    ("eval --batches 1 --batch-size 1 --corpus {locked_corpus}", "locked|permission"),
    ("chat -p hi --tool none --checkpoint {locked_ckpt}", "model.safetensors|permission"),
    ("serve --tool none --no-compile --checkpoint {locked_ckpt}", "model.safetensors|permission"),
    ("export {ckpt} {readonly}/out", "readonly|permission"),
    ("export {locked_ckpt} {new}", "model.safetensors|permission"),
    ("import {secret_dir}", "secret_dir|permission"),
    ("pretrain --preset cpu-tiny --steps 1 --run-dir {readonly}/run", "readonly|permission"),
    ("pretrain --preset cpu-tiny --config {secret}", "secret.txt|permission"),
    ("sft --steps 1 --mix arithmetic:1 --base {locked_ckpt} --run-dir {new}", "model.safetensors|permission"),
    ("report --no-samples", "readonly_home|permission", {"PICOCHAT_HOME": "{readonly_home}"}),
    ("chat -p hi --max-tokens 2 --tool none", OK, {"PICOCHAT_HOME": "{readonly_home}"}),
]
BAD = ("traceback", "internal-error", "silent-accept", "unclear", "data-loss")
COUNTS_START, COUNTS_END = "<!-- counts of tests/test_bad_input.py -->", "<!-- end of counts -->"


def tiny_checkpoint(path: Path, tokenizer, vocab_size: int | None = None, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    vocab = vocab_size or tokenizer.vocab_size
    config = GPTConfig(vocab_size=vocab, seq_len=64, n_layer=1, n_head=1, n_kv_head=1, n_embd=16)
    return save_checkpoint(path, GPT(config), CheckpointMeta(step=1), tokenizer=tokenizer)


def spoil_weights(source: Path, target: Path, how) -> Path:
    """A copy of checkpoint `source` whose first weight tensor went through `how`."""
    shutil.copytree(source, target)
    state = load_file(target / "model.safetensors")
    first = sorted(state)[0]
    state[first] = how(state[first])
    save_file(state, target / "model.safetensors")
    return target


# placeholder -> (file or folder under the inputs, and for a file its bytes)
FILES = {
    "latin1": ("latin1.txt", "café crème\n".encode("latin-1")),
    "binary": ("binary.bin", bytes(range(256)) * 8),
    "empty": ("empty.txt", b""),
    "fake_parquet": ("fake.parquet", b"PAR1" + bytes(64)),
    "bad_jsonl": ("bad.jsonl", b'{"text": "ok"}\n{"text": 3}\n'),
    "good_jsonl": (
        "good.jsonl",
        b"".join(b'{"text": "%d %s"}\n' % (i, b"cats and dogs " * 20) for i in range(30)),
    ),
    "bad_toml": ("bad.toml", b"seq_len = = 3\n"),
    "latin_toml": ("latin.toml", b"owner = 'caf\xe9'\n"),
    "nan_toml": ("nan.toml", b"seq_len = nan\n"),
    "unknown_toml": ("unknown.toml", b"no_such_setting = 1\n"),
    "junk": ("junk/meta.json", b"{not json"),
    "junk_weights": ("junk/model.safetensors", bytes(64)),
    "bad_tokenizer": ("bad_tokenizer/tokenizer.json", b"\xff\xfe"),
    "foreign": ("foreign/thesis.tex", b"years of work"),
    "secret": ("secret.txt", b"a secret"),
    "secret_dir": ("secret_dir/notes.txt", b"notes"),
}
SPOILED = {  # checkpoint placeholder -> what is done to its first tensor
    "nan_ckpt": lambda t: t.index_fill(0, torch.tensor([0]), float("nan")),
    "inf_ckpt": lambda t: t.index_fill(0, torch.tensor([0]), float("inf")),
    "int8_ckpt": lambda t: t.to(torch.int8),
    "latin_meta_ckpt": lambda t: t,  # and a byte in meta.json that is not UTF-8
}


def make_world(root: Path) -> dict[str, str]:
    """A home with a corpus, a tokenizer and base and SFT checkpoints, and good and bad inputs beside it;
    returns the placeholders of the cases."""
    home, inputs = root / "home", root / "inputs"
    corpus = write_synthetic_corpus(home / "data" / "default", n_docs=40, seed=1)
    docs = list(iter_documents(sorted((corpus / "train").glob("*.parquet"))))
    tokenizer = Tokenizer.train(docs, vocab_size=280)
    tokenizer.save(home / "tokenizer")
    ckpt = tiny_checkpoint(home / "checkpoints" / "base", tokenizer)
    tiny_checkpoint(home / "checkpoints" / "sft", tokenizer, seed=1)
    world = {name: str(spoil_weights(ckpt, inputs / name, how)) for name, how in SPOILED.items()}
    meta = inputs / "latin_meta_ckpt" / "meta.json"
    meta.write_bytes(meta.read_bytes().replace(b"{", b"{\xe9", 1))
    for name, (file, data) in FILES.items():
        (inputs / file).parent.mkdir(parents=True, exist_ok=True)
        (inputs / file).write_bytes(data)
        world[name] = str(inputs / file.split("/")[0])
    (inputs / "text.txt").write_text("\n\n".join(docs[:10]))
    (inputs / "empty_dir").mkdir()
    small = tiny_checkpoint(inputs / "small_vocab", tokenizer, vocab_size=300)
    return world | {
        "home": str(home), "ckpt": str(ckpt), "run": str(ckpt.parent), "corpus": str(corpus),
        "small_vocab_ckpt": str(small), "text": str(inputs / "text.txt"), "empty_dir": str(inputs / "empty_dir"),
        "dir": str(inputs / "empty_dir"), "missing": str(inputs / "missing" / "nothing.txt"), "latin": LATIN,
        "long": "x" * 300, "latin_path": str(root / "outputs" / LATIN), "outputs": str(root / "outputs"),
    }  # fmt: skip


def lock_for_nobody(world: dict[str, str]) -> None:
    """Root-owned files and folders user 65534 may not read or write, and a home it owns; the rest readable."""
    inputs, home = Path(world["secret"]).parent, Path(world["home"])
    for path in [inputs.parent, *inputs.parent.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (inputs / "secret.txt").chmod(0o600)
    (inputs / "secret_dir").chmod(0o700)
    (inputs / "readonly").mkdir()
    Path(world["outputs"]).mkdir(exist_ok=True)
    os.chown(world["outputs"], NOBODY, NOBODY)
    locked = shutil.copytree(world["ckpt"], inputs / "locked_ckpt")
    (locked / "model.safetensors").chmod(0o600)
    shutil.copytree(home / "tokenizer", inputs / "locked_tokenizer")
    for file in (inputs / "locked_tokenizer").iterdir():
        file.chmod(0o600)
    shutil.copytree(home, inputs / "readonly_home", symlinks=True)
    for shard in shutil.copytree(world["corpus"], home / "data" / "locked").rglob("*.parquet"):
        shard.chmod(0o600)
    for path in [home, *home.rglob("*")]:
        if "locked" not in path.parts:
            os.chown(path, NOBODY, NOBODY)
    world.update(readonly=str(inputs / "readonly"), locked_ckpt=str(locked),
                 locked_tokenizer=str(inputs / "locked_tokenizer"), readonly_home=str(inputs / "readonly_home"),
                 locked_corpus=str(home / "data" / "locked"))  # fmt: skip


GROWING = {"outputs", "logs", "reports", "chat_history", "writer.lock"}  # what a case may add to or grow


def fingerprints(root: Path, content: bool = False) -> dict[str, tuple]:
    """Every file a case must leave alone: its size, mtime and inode (a rewrite or a replacement changes
    them), or with `content` its sha256 too."""
    found = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in GROWING]
        for path in (Path(folder) / name for name in files if name not in GROWING):
            stat = path.stat()
            found[str(path)] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
            if content and os.access(path, os.R_OK):
                found[str(path)] += (hashlib.sha256(path.read_bytes()).hexdigest(),)
    return found


def run_main(argv: list[str]) -> tuple[int | str, str]:
    """cli.main(argv) with stdout and stderr encoded as a UTF-8 terminal would (stderr with backslash
    escapes, as Python's own); returns (exit status, or "raised", and everything printed)."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exit:  # argparse: usage errors exit 2, --help and --version 0
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None and 2)
        except BaseException:  # noqa: BLE001 - a traceback on a terminal, whatever it was
            code = "raised"
            err.write(traceback.format_exc())
    printed = out.buffer.getvalue() + err.buffer.getvalue()
    return code, printed.decode("utf-8", "backslashreplace")


def classify(code: int | str, printed: str, expect: str) -> str:
    if code == "raised" or "Traceback (most recent call last)" in printed:
        return "traceback"
    if code == cli.EXIT_INTERNAL_ERROR or "internal error" in printed:
        return "internal-error"
    said = all(p.lower() in printed.lower() for p in expect.removeprefix(WARNED).split("|") if p)
    if expect == OK or expect.startswith(WARNED):
        return "unclear" if code != 0 else "ok" if said else "silent-accept"
    if code == 0:
        return "silent-accept"
    return "ok" if code == cli.EXIT_USER_ERROR and said else "unclear"


def run_cases(cases: list[tuple], world: dict[str, str]) -> list[dict]:
    """Each case run in-process; its class, and what it printed where it is not ok."""
    results, root = [], Path(world["home"]).parent
    for number, (line, expect, *env) in enumerate(cases):
        fill = {**world, "new": str(root / "outputs" / f"new_{number}")}
        argv = [part.format(**fill) for part in shlex.split(line)]
        environment = {k: v.format(**fill) for k, v in (env[0] if env else {}).items()}
        before, start = fingerprints(root), time.perf_counter()
        saved = {k: os.environ.get(k) for k in environment}
        os.environ.update(environment)
        try:
            code, printed = run_main(argv)
        finally:
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        kind = classify(code, printed, expect)
        after = fingerprints(root)
        if any(after.get(path) != digest for path, digest in before.items()):
            kind = "data-loss"
        took = time.perf_counter() - start
        results.append({"case": line, "class": kind, "exit": code, "printed": printed[-600:], "s": took})
    return results


def run_as_nobody(cases: list[tuple], world: dict[str, str], timeout_s: float = 120) -> list[dict]:
    """`run_cases` in a forked child that dropped to uid and gid 65534; its results come back over a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            faulthandler.dump_traceback_later(timeout_s, exit=True)  # a stack, not a hang
            with os.fdopen(write_end, "w") as pipe:
                json.dump(run_cases(cases, world), pipe)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and text, f"the unprivileged child failed (status {status})"
    return json.loads(text)


def counts(root_results: list[dict], nobody_results: list[dict]) -> str:
    """The counts table of docs/reliability.md, as this run measured it."""
    rows = [("root", root_results), ("user 65534", nobody_results)]
    header = "| run as | cases | " + " | ".join(BAD) + " |\n|---|---|" + "---|" * len(BAD) + "\n"
    return header + "".join(
        f"| {who} | {len(results)} | "
        + " | ".join(str(sum(r["class"] == kind for r in results)) for kind in BAD)
        + " |\n"
        for who, results in rows
    )


def check_documented_counts(table: str) -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
    text = doc.read_text(encoding="utf-8")
    found = re.search(re.escape(COUNTS_START) + r"\n(.*?)" + re.escape(COUNTS_END), text, re.S)
    assert found, f"{doc} has no counts table between {COUNTS_START} and {COUNTS_END}"
    if os.environ.get("PICOCHAT_WRITE_COUNTS"):
        doc.write_text(text[: found.start(1)] + table + text[found.end(1) :], encoding="utf-8")
    else:
        assert found.group(1) == table, (
            "docs/reliability.md's counts differ; PICOCHAT_WRITE_COUNTS=1 rewrites"
        )


@pytest.fixture(scope="module")
def world():
    root = Path(tempfile.mkdtemp(prefix="picochat-bad-input-"))  # not under pytest's 0700 folders
    try:
        made = make_world(root)
        if os.geteuid() == 0:
            lock_for_nobody(made)
        yield made
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_every_bad_input_is_a_clear_error_and_every_good_one_works(world, monkeypatch):
    monkeypatch.setenv("PICOCHAT_HOME", world["home"])
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: None)  # serve: check, load, return
    monkeypatch.setattr(cli, "build_parser", functools.cache(cli.build_parser))  # the same parser each time
    assert len(CASES) + len(NOBODY_CASES) >= 300
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models run no slower; the forked child inherits no busy thread pool
    before = fingerprints(Path(world["home"]).parent, content=True)
    try:
        results = run_cases(CASES, world)
        nobody = run_as_nobody(NOBODY_CASES, world) if os.geteuid() == 0 else []
    finally:
        torch.set_num_threads(threads)
    after = fingerprints(Path(world["home"]).parent, content=True)
    assert not [path for path, seen in before.items() if after.get(path) != seen], "a case changed a file"
    failed = [r for r in results + nobody if r["class"] != "ok"]
    shown = "\n\n".join(
        f"[{r['class']}] picochat {r['case']} (exit {r['exit']})\n{r['printed']}" for r in failed
    )
    assert not failed, f"{len(failed)} of {len(results) + len(nobody)} cases failed:\n{shown}"
    if os.geteuid() != 0:
        pytest.skip("the unprivileged cases need root to drop to user 65534")
    check_documented_counts(counts(results, nobody))


def test_the_chat_temperature_command_is_checked_like_the_flag():
    session, out = ChatSession(None, SamplingParams(temperature=0.6)), io.StringIO()
    for value in ["nan", "inf", "-1", "hot", "1e309"]:
        session.command(f"/temperature {value}", out)
    assert session.params.temperature == 0.6
    assert out.getvalue().count("expected a finite number ≥ 0") == 5
    session.command("/temperature 0", out)
    assert session.params.temperature == 0


def test_the_crash_log_keeps_bytes_that_are_not_utf8(tmp_path, monkeypatch):
    monkeypatch.setenv("PICOCHAT_HOME", str(tmp_path))
    log = cli.write_crash_log(["tokenizer", "show", LATIN], RuntimeError(LATIN))
    assert log.parent == tmp_path / "logs" and "show caf\\udce9" in log.read_text(encoding="utf-8")
