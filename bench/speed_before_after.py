"""One tree's speed, to compare two checkouts of picochat run one after the other:

    PYTHONPATH=OLD_TREE python bench/speed_before_after.py old
    PYTHONPATH=NEW_TREE python bench/speed_before_after.py new

Eager fp32 on one thread: the median of 4 training steps (forward, backward, optimizer) of the depth-4 GPT
at 8 x 256 tokens, vocabulary 4096, and the median of 3 greedy generations of 48 tokens (batch 1).
Results: bench/results/architecture.md.
"""

import statistics
import sys
import time

import torch

torch.manual_seed(0)
torch.set_num_threads(1)
from picochat.engine import Engine, SamplingParams
from picochat.model import GPT, GPTConfig
from picochat.tokenizer import Tokenizer

cfg = GPTConfig.from_depth(4, vocab_size=4096) if hasattr(GPTConfig, "from_depth") else None
model = GPT(cfg)
import inspect

from picochat.optim import build_optimizer

if (
    "tokens_per_step" in inspect.signature(build_optimizer).parameters
    and inspect.signature(build_optimizer).parameters["tokens_per_step"].default is not inspect._empty
):
    opt = build_optimizer(model, tokens_per_step=16 * 256, compile=False)
else:
    from picochat.settings import TrainSettings
    from picochat.training import stage_optimizer

    opt = stage_optimizer(TrainSettings(), model)
x = torch.randint(0, 4096, (8, 256))
y = torch.randint(0, 4096, (8, 256))
times = []
for i in range(6):
    t = time.perf_counter()
    loss = model(x, y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - t)
step = statistics.median(times[2:])
tok = Tokenizer.train(["the cat sat on the mat and the dog ran far away " * 200], vocab_size=280)
torch.manual_seed(0)
small = GPT(GPTConfig.from_depth(4, vocab_size=tok.vocab_size)).eval()
eng = Engine(small, tok, tool=None, compile=False)
prompt = tok.encode("the cat")
dts = []
for i in range(3):
    t = time.perf_counter()
    eng.generate([prompt], SamplingParams(max_tokens=48, temperature=0))
    dts.append(time.perf_counter() - t)
print(f"{sys.argv[1]} train_step_s {step:.4f} decode48_s {statistics.median(dts):.4f}")
