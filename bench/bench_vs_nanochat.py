"""picochat against nanochat at the same shape and the same wall-clock seconds, scored alike.

    python bench/bench_vs_nanochat.py --nanochat-src DIR --corpus CORPUS --seconds 600 [--picochat-flags "--smear"]

1. nanochat at a pinned commit: checked out from DIR (a git directory or checkout; without one, cloned from
   GitHub) into WORKDIR/nanochat, with a virtual environment of its own (torch from the PyTorch CPU index,
   the other dependencies of its pyproject.toml from PyPI).
2. The picochat corpus (CORPUS/{train,val}/shard_*.parquet) in nanochat's layout:
   $NANOCHAT_BASE_DIR/base_data_climbmix/shard_NNNNN.parquet with a `text` column, the last file the
   validation split (all of picochat's validation documents, in order).
3. Each project's tokenizer trained on the training split at --vocab-size.
4. nanochat: a few timed steps, run twice so that the second starts with warm compile caches as the
   timed run does, give its pace and start-up cost; its --num-iterations fills --seconds.
   `base_train` at picochat's shape (depth, width 64 × depth, head dim 64, window pattern L, seq len,
   device batch, total batch), its own recipe otherwise. picochat: `pretrain --preset cpu-demo
   --time-budget S` at the same shape, plus --picochat-flags, where S is nanochat's measured wall time
   when that came in under SECONDS (a pace estimated from a few noisy steps can leave nanochat short).
5. Both final models scored by vs_nanochat_score.py on the first --val-docs validation documents;
   a section appended to bench/results/vs_nanochat.md.
--skip-nanochat reuses nanochat's last result in WORKDIR (its training does not change with picochat's).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from vs_nanochat_score import bits_per_byte, score  # noqa: E402

from picochat.data.shards import iter_documents, list_shards  # noqa: E402
from picochat.settings import PRETRAIN_PRESETS  # noqa: E402

NANOCHAT_URL = "https://github.com/karpathy/nanochat"
NANOCHAT_COMMIT = "92d63d4"
TORCH = "torch==2.13.0"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
DATA_SUBDIR = "base_data_climbmix"  # nanochat/dataset.py: DATA_DIR under $NANOCHAT_BASE_DIR
RESULTS = HERE / "results" / "vs_nanochat.md"
DEMO = PRETRAIN_PRESETS["cpu-demo"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--nanochat-src", type=Path, help=f"a nanochat git dir or checkout (default: clone {NANOCHAT_URL})"
    )
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "picochat-vs-nanochat")
    p.add_argument("--corpus", type=Path, help="a picochat corpus (default: $PICOCHAT_HOME/data/default)")
    p.add_argument("--seconds", type=float, default=600, help="wall-clock budget of each training run")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--depth", type=int, default=DEMO["depth"])
    p.add_argument("--seq-len", type=int, default=DEMO["seq_len"])
    p.add_argument("--device-batch", type=int, default=DEMO["device_batch"])
    p.add_argument("--batch-tokens", type=int, default=DEMO["batch_tokens"])
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="both projects' compute dtype")
    p.add_argument("--picochat-flags", default="", help='extra flags for picochat pretrain, e.g. "--smear"')
    p.add_argument("--val-docs", type=int, default=200, help="validation documents scored")
    p.add_argument("--pace-steps", type=int, default=12, help="nanochat steps timed to set its iterations")
    p.add_argument(
        "--results", type=Path, default=RESULTS, help="the Markdown file the section is appended to"
    )
    p.add_argument("--skip-nanochat", action="store_true", help="reuse nanochat's last result in --workdir")
    return p.parse_args(argv)


def run(cmd: list[str], log: Path, **kwargs) -> tuple[str, float]:
    """Run `cmd` at low priority, its output to `log` too; (output, wall seconds). Fails loudly."""
    start = time.perf_counter()
    proc = subprocess.run(["nice", "-n", "10", *map(str, cmd)], capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        sys.exit(
            f"failed ({proc.returncode}): {shlex.join(map(str, cmd))}\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    return proc.stdout + proc.stderr, seconds


# --- nanochat: source, environment, data ------------------------------------------------------------------


def checkout_nanochat(src: Path | None, work: Path) -> Path:
    """The pinned commit's files in WORK/nanochat (from SRC, else a fresh clone)."""
    dest = work / "nanochat"
    if (dest / "pyproject.toml").is_file():
        return dest
    if src is None:
        src = work / "nanochat-git"
        if not src.exists():
            run(["git", "clone", "--quiet", NANOCHAT_URL, src], work / "clone.log")
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", src, "archive", NANOCHAT_COMMIT], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", dest], input=archive.stdout, check=True)
    return dest


def nanochat_requirements(checkout: Path) -> list[str]:
    """Its pyproject's dependencies, torch pinned to TORCH (installed from the CPU index apart)."""
    import tomllib  # Python 3.11 and later

    deps = tomllib.loads((checkout / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if not re.match(r"torch\b", d)]


def nanochat_venv(checkout: Path, work: Path) -> Path:
    python = work / "venv" / "bin" / "python"
    if not (work / "venv" / ".ready").exists():
        run([sys.executable, "-m", "venv", work / "venv"], work / "venv.log")
        pip = [python, "-m", "pip", "install", "-q"]
        run([*pip, TORCH, "--index-url", TORCH_INDEX], work / "pip-torch.log")
        run([*pip, *nanochat_requirements(checkout)], work / "pip.log")
        (work / "venv" / ".ready").touch()
    return python


def convert_corpus(corpus: Path, data_dir: Path) -> list[Path]:
    """picochat's train shards, one file each in order, then all its validation documents in one last file
    (nanochat reads the last file as its validation split); returns the files written."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob("shard_*.parquet"):
        old.unlink()
    groups = [list(iter_documents([s])) for s in list_shards(corpus, "train")]
    groups.append(list(iter_documents(list_shards(corpus, "val"))))
    written = []
    for i, texts in enumerate(groups):
        path = data_dir / f"shard_{i:05d}.parquet"
        pq.write_table(pa.table({"text": pa.array(texts, type=pa.string())}), path, row_group_size=1024)
        written.append(path)
    return written


# --- training ---------------------------------------------------------------------------------------------


def nanochat_train_cmd(python: Path, args, iterations: int, tag: str) -> list:
    return [python, "-m", "scripts.base_train", f"--depth={args.depth}", "--aspect-ratio=64", "--head-dim=64",
            "--window-pattern=L", f"--max-seq-len={args.seq_len}", f"--device-batch-size={args.device_batch}",
            f"--total-batch-size={args.batch_tokens}", f"--num-iterations={iterations}", "--eval-every=-1",
            "--core-metric-every=-1", "--sample-every=-1", f"--model-tag={tag}"]  # fmt: skip


def step_seconds(output: str) -> list[float]:
    """Each step's time from base_train's progress lines (`| dt: 123.45ms |`)."""
    return [float(ms) / 1000 for ms in re.findall(r"\| dt: ([0-9.]+)ms", output)]


def train_nanochat(args, work: Path) -> dict:
    checkout = checkout_nanochat(args.nanochat_src, work)
    python = nanochat_venv(checkout, work)
    base = work / "nanochat_base"
    env = {**os.environ, "NANOCHAT_BASE_DIR": str(base), "NANOCHAT_DTYPE": NANOCHAT_DTYPES[args.dtype]}
    convert_corpus(args.corpus, base / DATA_SUBDIR)
    tok = [python, "-m", "scripts.tok_train", f"--vocab-size={args.vocab_size}", "--max-chars=1000000000"]
    run(tok, work / "nanochat-tok.log", cwd=checkout, env=env)
    for _ in range(2):  # the second pace run starts with warm compile caches, as the timed run will
        out, wall = run(
            nanochat_train_cmd(python, args, args.pace_steps, "pace"),
            work / "nanochat-pace.log",
            cwd=checkout,
            env=env,
        )
    dts = step_seconds(out)[3:]  # past compilation
    pace = statistics.median(dts)
    overhead = max(0.0, wall - pace * args.pace_steps)  # start-up, compilation, the first steps' extra
    iterations = max(1, int((args.seconds - overhead) / pace))
    out, wall = run(
        nanochat_train_cmd(python, args, iterations, "vs"), work / "nanochat-train.log", cwd=checkout, env=env
    )
    texts_file, scores = work / "val_texts.json", work / "nanochat_scores.json"
    scorer = [python, HERE / "vs_nanochat_score.py", texts_file, scores, args.seq_len, "vs"]
    run(scorer, work / "nanochat-score.log", cwd=checkout, env={**env, "PYTHONPATH": str(checkout)})
    records = json.loads(scores.read_text())
    return dict(steps=iterations, tokens=iterations * args.batch_tokens, wall_s=wall, step_s=pace,
                bpb=bits_per_byte(records), seconds=args.seconds)  # fmt: skip


NANOCHAT_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def picochat_seconds(args, nano: dict) -> float:
    """picochat's budget: --seconds, or nanochat's own wall time if that was shorter, so neither gets more."""
    return min(args.seconds, nano["wall_s"])


def train_picochat(args, work: Path, seconds: float) -> dict:
    from picochat.checkpoint import load_model

    home, tok, run_dir = work / "picochat_home", work / "picochat_tokenizer", work / "picochat_run"
    env = {**os.environ, "PICOCHAT_HOME": str(home)}
    cli = [sys.executable, "-m", "picochat"]
    tok_cmd = [*cli, "tokenizer", "train", "--input", args.corpus / "train", "--vocab-size", args.vocab_size]
    run([*tok_cmd, "--output", tok, "--force"], work / "picochat-tok.log", env=env, cwd=HERE.parent)
    shape = ["--depth", args.depth, "--seq-len", args.seq_len, "--device-batch", args.device_batch,
             "--batch-tokens", args.batch_tokens, "--dtype", args.dtype]  # fmt: skip
    train = [*cli, "pretrain", "--preset", "cpu-demo", "--time-budget", f"{seconds:.0f}s", *shape,
             "--corpus", args.corpus, "--tokenizer", tok, "--run-dir", run_dir, "--resume", "never",
             *shlex.split(args.picochat_flags)]  # fmt: skip
    _, wall = run(train, work / "picochat-train.log", env=env, cwd=HERE.parent)
    model, tokenizer, meta = load_model(run_dir)
    model.eval()
    texts = json.loads((work / "val_texts.json").read_text())
    import torch

    with torch.no_grad():
        records = score(model, lambda t: tokenizer.encode(t, prepend=tokenizer.bos_id), texts, args.seq_len)
    return dict(
        steps=meta.step,
        tokens=meta.step * meta.config["batch_tokens"],  # --picochat-flags may change the batch
        wall_s=wall,
        bpb=bits_per_byte(records),
        seconds=seconds,
    )


# --- the report -------------------------------------------------------------------------------------------


def cpu_description() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?"
    )
    flags = set(
        next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    )
    return (
        f"{model}, {os.cpu_count()} CPUs; avx512_bf16: {'avx512_bf16' in flags}; amx: {'amx_bf16' in flags}"
    )


def report(args, nano: dict, pico: dict) -> str:
    row = "| {} | {:,} | {:,} | {:.0f} | {:.4f} |"
    pico_cmd = f"pretrain --preset cpu-demo --time-budget {pico['seconds']:.0f}s {args.picochat_flags}"
    return "\n".join([
        f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.seconds:.0f} s each\n",
        f"- machine: {cpu_description()}; dtype {args.dtype} both",
        f"- corpus: {args.corpus}; vocabulary {args.vocab_size}; scored on its first {args.val_docs} "
        f"validation documents (bench/vs_nanochat_score.py)",
        f"- shape: depth {args.depth}, head dim 64, seq len {args.seq_len}, device batch {args.device_batch}, "
        f"{args.batch_tokens} tokens per step; nanochat {NANOCHAT_COMMIT}, window pattern L, "
        f"{nano['step_s']:.3f} s per step timed over {args.pace_steps} steps",
        f"- picochat: `{pico_cmd.strip()}`",
        f"- command: `python bench/bench_vs_nanochat.py {shlex.join(sys.argv[1:])}`\n",
        "| | steps | tokens | wall s | val bpb |", "|---|---|---|---|---|",
        row.format("nanochat", nano["steps"], nano["tokens"], nano["wall_s"], nano["bpb"]),
        row.format("picochat", pico["steps"], pico["tokens"], pico["wall_s"], pico["bpb"]),
        f"\npicochat / nanochat bits per byte: {pico['bpb'] / nano['bpb']:.4f} "
        f"({100 * (1 - pico['bpb'] / nano['bpb']):+.1f} % lower for picochat)\n",
        *unequal_time(nano["wall_s"], pico["wall_s"]),
    ])  # fmt: skip


def unequal_time(nano_s: float, pico_s: float) -> list[str]:
    """A warning line when the two runs' wall times differ by more than a tenth: then it is not a fair pair."""
    if abs(nano_s - pico_s) <= 0.1 * max(nano_s, pico_s):
        return []
    return [f"**Not equal wall time** ({nano_s:.0f} s against {pico_s:.0f} s): not a fair comparison.\n"]


def validation_texts(corpus: Path, n: int) -> list[str]:
    """The first n validation documents of at least 20 characters (so every one is a few tokens)."""
    texts = []
    for text in iter_documents(list_shards(corpus, "val")):
        if len(text) >= 20:
            texts.append(text)
            if len(texts) == n:
                break
    return texts


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.corpus is None:
        from picochat.paths import data_dir

        args.corpus = data_dir() / "default"
    args.corpus = args.corpus.resolve()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "val_texts.json").write_text(json.dumps(validation_texts(args.corpus, args.val_docs)))
    last = work / "nanochat_result.json"
    if args.skip_nanochat:
        if not last.exists():
            sys.exit(f"--skip-nanochat: no earlier result at {last}")
        nano = json.loads(last.read_text())
    else:
        nano = train_nanochat(args, work)
        last.write_text(json.dumps(nano))
    pico = train_picochat(args, work, picochat_seconds(args, nano))
    section = report(args, nano, pico)
    if not args.results.exists():
        args.results.write_text(
            "# picochat against nanochat at equal wall time (bench/bench_vs_nanochat.py)\n"
        )
    with args.results.open("a", encoding="utf-8") as f:
        f.write(section)
    print(section)


if __name__ == "__main__":
    main()
