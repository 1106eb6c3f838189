#!/usr/bin/env bash
# The first minutes on a GPU node (one GPU is enough; about 8 minutes on one H100), offline:
#   1. the `cuda` tests (tests/test_cuda.py: every CUDA-only path against its plain twin)
#   2. gpu-d12 for 200 steps on one GPU (65,536 tokens a step): tokens/s, MFU, peak memory, compile time,
#      and `--plan`'s estimate of the same step beside the measured peak
#   3. decoding at batch 1 and 32 against transformers `generate` (bench/bench_decode.py on the GPU)
#   4. the server at 32 clients (bench/bench_serve.py)
# Each part's output goes to bench/results/gpu-check/; the figures are appended to bench/results/gpu.md.
#
#   bash bench/gpu_check.sh                 # PYTHON=.venv/bin/python by default
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=bench/results/gpu-check
WORK=$(mktemp -d)
export PICOCHAT_HOME=$WORK/home PYTHONPATH=$PWD OMP_NUM_THREADS=8
mkdir -p "$OUT"
started=$(date +%s)
section() { echo; echo "=== $1 ($(($(date +%s) - started))s) ==="; }

section "1. cuda tests"
timeout 150 "$PYTHON" -m pytest tests/test_cuda.py -m cuda -q -o addopts="" 2>&1 | tee "$OUT/cuda_tests.txt" | tail -5

section "2. gpu-d12, 200 steps"
# data without a network: a synthetic corpus, a 32,768-token tokenizer learned from the installed Python
timeout 120 "$PYTHON" - "$WORK" <<'EOF' 2>&1 | tee "$OUT/data.txt" | tail -2
import sys
from pathlib import Path

import torch

from picochat.data.corpus import write_synthetic_corpus
from picochat.tokenizer import Tokenizer

work = Path(sys.argv[1])
write_synthetic_corpus(work / "corpus", n_docs=20000, seed=0)
sources = sorted(Path(torch.__file__).parent.rglob("*.py"))
texts = (p.read_text(errors="replace")[:20000] for p in sources)
Tokenizer.train(texts, vocab_size=32768).save(work / "tokenizer")
print("data ready")
EOF
# D12_BATCH=16 bash bench/gpu_check.sh: if 32 rows of 2048 tokens do not fit (the plan's eager bound says so)
D12="--preset gpu-d12 --steps 200 --device-batch ${D12_BATCH:-32} --batch-tokens $((${D12_BATCH:-32} * 2048))"
D12="$D12 --eval-every 0 --sample-every 0 --save-every 0"
D12="$D12 --eval-batches 4 --corpus $WORK/corpus --tokenizer $WORK/tokenizer --run-dir $WORK/d12"
timeout 90 "$PYTHON" -m picochat pretrain $D12 --plan --gpu h100 --gpus 1 2>&1 | tee "$OUT/plan.txt"
timeout 240 "$PYTHON" - $D12 <<'EOF' 2>&1 | tee "$OUT/d12.txt" | tail -4
import json, statistics, sys
from pathlib import Path

import torch

from picochat.cli import main

code = main(["pretrain", *sys.argv[1:]])
run_dir = Path(sys.argv[sys.argv.index("--run-dir") + 1])
records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
steps = [r for r in records if "tokens_per_s" in r]
late = steps[len(steps) // 2 :]  # after compilation and warm-up
print(json.dumps({
    "exit": code,
    "first_step_s (compile)": round(steps[0]["step_time_s"], 1),
    "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in late)),
    "mfu": round(statistics.median(r["mfu"] for r in late), 3),
    "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
}))
EOF

section "3. decode, batch 1 and 32, against transformers"
timeout 150 "$PYTHON" - <<'EOF' 2>&1 | tee "$OUT/decode.txt" | tail -12
import runpy, sys

import torch

torch.set_default_device("cuda")  # bench_decode builds both models on the default device
sys.argv = ["bench_decode.py", "--depth", "12", "--batches", "1", "32", "--dtypes", "bf16", "--runs", "3"]
runpy.run_path("bench/bench_decode.py", run_name="__main__")
EOF

section "4. server at 32 clients"
timeout 120 "$PYTHON" bench/bench_serve.py --clients 32 --repeats 1 --max-tokens 64 --out "" 2>&1 \
  | tee "$OUT/serve.txt" | tail -8

section "done"
{
  echo
  echo "## bench/gpu_check.sh on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $(date -u +%F)"
  echo
  for part in cuda_tests plan d12 decode serve; do
    echo "### $part"; echo; echo '```'; tail -25 "$OUT/$part.txt"; echo '```'; echo
  done
  echo "Total: $(($(date +%s) - started)) s."
} >> bench/results/gpu.md
echo "appended to bench/results/gpu.md"
