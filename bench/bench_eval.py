"""Benchmark the base suite against lm-evaluation-harness: the same exported model, problems and prompts.

    picochat eval fetch                                   # once: the benchmark data
    python3 -m venv /tmp/lmeval && echo $PWD/.venv/lib/python3.11/site-packages > \
        /tmp/lmeval/lib/python3.11/site-packages/main.pth && /tmp/lmeval/bin/pip install lm-eval==0.4.13 accelerate
    flock /tmp/picochat-bench.lock .venv/bin/python bench/bench_eval.py --lm-eval-python /tmp/lmeval/bin/python

lm-eval lives in a venv of its own (which sees this one's torch and transformers), so this project's stays
as it is; this script runs it there as a subprocess (`--lm-eval-side`).

The model: a d4 GPT pretrained here for --pretrain-seconds on picochat's synthetic stories (the `cpu-tiny`
preset, depth 4, 256-token context), with a 4,096-token tokenizer trained on those stories and the Python
sources of the installed torch; cached in --work, then written by `picochat export` (the folder lm-eval
loads with HFLM).

The problems: --problems of each task both harnesses can run (every multiple-choice task and LAMBADA;
WinoGrande's per-option contexts need lm-eval's multiple-input form, so it is left out), the seeded sample
`picochat eval base` takes, zero-shot: "query" + " " + choice in both. lm-eval reads them as local JSONL
files through task YAMLs written here (HF_DATASETS_OFFLINE=1).

Compared, problem by problem: picochat's pick under `--rule acc` and `--rule acc_norm` (picochat's code,
`is_correct`) with lm-eval's `acc` and `acc_norm` of the same document; LAMBADA: greedy agreement (lm-eval's
`acc` of a loglikelihood task). Speed: problems per CPU-second of each process (prompts, tokenizing,
scoring), one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = ("arc_easy", "arc_challenge", "hellaswag", "piqa", "commonsense_qa", "openbookqa", "boolq", "copa")
TASKS += ("sciq", "social_iqa", "lambada")
RULES = ("acc", "acc_norm")


def pretrained_model(work: Path, seconds: float) -> Path:
    """A d4 checkpoint trained for `seconds` on synthetic stories (reused when already there)."""
    from picochat.checkpoint import latest_checkpoint

    run_dir = work / "run"
    if latest_checkpoint(run_dir) is not None:
        return run_dir
    from picochat.data.corpus import write_synthetic_corpus
    from picochat.data.shards import iter_documents
    from picochat.pretrain import preset_config, pretrain
    from picochat.tokenizer import Tokenizer

    corpus = write_synthetic_corpus(work / "corpus", n_docs=4000, seed=0)
    # The stories use few words, so the tokenizer also learns from the English docstrings of torch's sources.
    texts = list(iter_documents(sorted((corpus / "train").glob("*.parquet"))))
    for path in sorted(Path(torch.__file__).parent.rglob("*.py"))[:1500]:
        texts.append(path.read_text(errors="replace"))
    Tokenizer.train(texts, vocab_size=4096).save(work / "tokenizer")
    config = preset_config("cpu-tiny", corpus=corpus, tokenizer=work / "tokenizer", run_dir=run_dir, depth=4,
                           seq_len=256, device_batch=8, batch_tokens=4096, steps=None, ratio=None,
                           time_budget_s=seconds, eval_batches=2, dtype="fp32")  # fmt: skip
    pretrain(config)
    return run_dir


CHOICE_YAML = """task: picochat_{name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: query
doc_to_choice: choices
doc_to_target: answer
target_delimiter: " "
metric_list:
  - metric: acc
  - metric: acc_norm
"""
LM_YAML = """task: picochat_{name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: loglikelihood
doc_to_text: query
doc_to_target: "{{{{choices[0]}}}}"
target_delimiter: " "
metric_list:
  - metric: acc
"""


def lm_eval_side(work: Path, batch_size: int) -> None:
    """Run in lm-eval's venv: every task on the exported folder; per-document scores and CPU seconds."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    torch.set_num_threads(1)
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=str(work / "hf"), batch_size=batch_size, device="cpu", add_bos_token=True)
    manager = TaskManager(include_path=str(work / "lm_eval_tasks"))
    out = {"version": lm_eval.__version__}
    for name in json.loads((work / "tasks.json").read_text()):
        started = time.process_time()
        results = lm_eval.simple_evaluate(model=lm, tasks=[f"picochat_{name}"], task_manager=manager,
                                          num_fewshot=0, log_samples=True)  # fmt: skip
        cpu = time.process_time() - started
        samples = sorted(results["samples"][f"picochat_{name}"], key=lambda s: s["doc_id"])
        out[name] = {"cpu": cpu, **{rule: [s[rule] for s in samples if rule in s] for rule in RULES}}
    (work / "lm_eval.json").write_text(json.dumps(out))


def picochat_side(model, tokenizer, name: str, problems: list[dict]) -> dict:
    """picochat's picks under each rule (its own code) and the CPU seconds of prompts and scoring."""
    from picochat.evaluation.base import BaseTask, is_correct, problem_rows
    from picochat.evaluation.benchmarks import get_benchmark
    from picochat.evaluation.loglik import score_problems

    kind = get_benchmark(name).kind
    started = time.process_time()
    task = BaseTask(name, kind, problems, shots=0)
    built = [problem_rows(tokenizer, task, i, model.config.seq_len)[0] for i in range(len(problems))]
    scores = score_problems(model, built, torch.device("cpu"), torch.float32, batch_tokens=1024)
    cpu = time.process_time() - started
    return {"cpu": cpu} | {rule: [float(is_correct(kind, p, s, rule)) for p, s in zip(problems, scores)]
                           for rule in RULES}  # fmt: skip


def write_tasks(work: Path, problems: dict[str, list[dict]]) -> None:
    folder = work / "lm_eval_tasks"
    folder.mkdir(parents=True, exist_ok=True)
    for name, chosen in problems.items():
        path = folder / f"{name}.jsonl"
        path.write_text(
            "".join(json.dumps({k: p[k] for k in ("query", "choices", "answer")}) + "\n" for p in chosen)
        )
        template = LM_YAML if name == "lambada" else CHOICE_YAML
        (folder / f"picochat_{name}.yaml").write_text(template.format(name=name, path=path))
    (work / "tasks.json").write_text(json.dumps(list(problems)))


def report(args, model, tokenizer, meta, problems, ours, theirs, cpu_name: str) -> str:
    lines = [
        "# Base suite vs lm-evaluation-harness",
        "",
        f"Command: `python bench/bench_eval.py --problems {args.problems} --pretrain-seconds "
        f"{args.pretrain_seconds:g} --lm-eval-python ...` on {cpu_name}, a 2-core VM that other jobs shared;",
        f"fp32, one torch thread per process, torch {torch.__version__}, lm-eval {theirs['version']} (HFLM, batch "
        f"{args.lm_eval_batch}, add_bos_token) in a venv of its own.",
        f"Model: d4 ({model.num_params() / 1e6:.1f} M parameters, vocab {tokenizer.vocab_size}, context "
        f"{model.config.seq_len}), step {meta.step} of a {args.pretrain_seconds:g} s `cpu-tiny`-style pretraining on "
        "synthetic stories, written by `picochat export`; lm-eval loads that folder, picochat the checkpoint.",
        f"Problems: the seeded sample of {args.problems} per task that `picochat eval base` takes, zero-shot.",
        "",
        "| task | problems | picochat `--rule acc` | lm-eval acc | same pick | picochat `--rule acc_norm` | "
        "lm-eval acc_norm | same pick | picochat problems / CPU-s | lm-eval problems / CPU-s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in problems:
        o, t, n = ours[name], theirs[name], len(problems[name])
        cells = []
        for rule in RULES if t["acc_norm"] else RULES[:1]:
            same = sum(a == float(b) for a, b in zip(o[rule], t[rule]))
            cells += [f"{sum(o[rule]) / n:.3f}", f"{sum(t[rule]) / n:.3f}", f"{same}/{n}"]
        cells += ["-"] * (6 - len(cells))  # LAMBADA: greedy, one rule
        lines.append(
            f"| {name} | {n} | " + " | ".join(cells) + f" | {n / o['cpu']:.1f} | {n / t['cpu']:.1f} |"
        )
    n_all = sum(len(p) for p in problems.values())
    cpu_ours, cpu_theirs = (sum(r[name]["cpu"] for name in problems) for r in (ours, theirs))
    lines += ["", f"All {len(problems)} tasks ({n_all} problems): picochat {n_all / cpu_ours:.1f} problems per "
              f"CPU-second, lm-eval {n_all / cpu_theirs:.1f} ({cpu_theirs / cpu_ours:.2f}× the CPU time)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=100, help="problems per task")
    parser.add_argument("--pretrain-seconds", type=float, default=60.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/picochat-bench-eval"))
    parser.add_argument("--lm-eval-python", default="/tmp/lmeval/bin/python", help="python of lm-eval's venv")
    parser.add_argument("--lm-eval-batch", type=int, default=32)
    parser.add_argument("--lm-eval-side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--output", type=Path, help="also write the table here (bench/results/eval.md holds it)"
    )
    args = parser.parse_args()
    if args.lm_eval_side:
        return lm_eval_side(args.work, args.lm_eval_batch)
    torch.set_num_threads(1)
    from picochat.checkpoint import load_model
    from picochat.evaluation.benchmarks import fetch_benchmarks, load_task
    from picochat.evaluation.suite import select_indices
    from picochat.hf import export_checkpoint

    fetch_benchmarks(list(TASKS))
    run_dir = pretrained_model(args.work, args.pretrain_seconds)
    export_checkpoint(run_dir, args.work / "hf", overwrite=True)
    model, tokenizer, meta = load_model(run_dir, "cpu")
    problems = {}
    for name in TASKS:
        everything = load_task(name)
        problems[name] = [everything[i] for i in select_indices(len(everything), args.problems, name, 1234)]
    write_tasks(args.work, problems)
    ours = {name: picochat_side(model, tokenizer, name, problems[name]) for name in TASKS}
    command = [args.lm_eval_python, __file__, "--lm-eval-side", "--work", str(args.work),
               "--lm-eval-batch", str(args.lm_eval_batch)]  # fmt: skip
    subprocess.run(command, check=True)
    theirs = json.loads((args.work / "lm_eval.json").read_text())
    cpu_name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "?")  # fmt: skip
    text = report(args, model, tokenizer, meta, problems, ours, theirs, cpu_name)
    if args.output:
        args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
