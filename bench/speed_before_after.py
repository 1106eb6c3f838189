"""One tree's speed, to compare two checkouts of picochat run one after the other:

    PYTHONPATH=OLD_TREE python bench/speed_before_after.py old
    PYTHONPATH=NEW_TREE python bench/speed_before_after.py new

Eager fp32 on one thread: the median of 4 training steps (forward, backward, optimizer) of the depth-4 GPT
at 8 x 256 tokens, vocabulary 4096, and the median of 3 greedy generations of 48 tokens (batch 1).
Results: bench/results/architecture.md.
"""

import inspect
import statistics
import sys
import time

import torch

from picochat.engine import Engine, SamplingParams
from picochat.model import GPT, GPTConfig
from picochat.optim import build_optimizer
from picochat.tokenizer import Tokenizer


def optimizer_for(model):
    """The training stages' optimizer, through whichever API the tree has."""
    tokens = inspect.signature(build_optimizer).parameters.get("tokens_per_step")
    if tokens is not None and tokens.default is not inspect.Parameter.empty:
        return build_optimizer(model, tokens_per_step=16 * 256, compile=False)
    from picochat.settings import TrainSettings
    from picochat.training import stage_optimizer

    return stage_optimizer(TrainSettings(), model)


def main(label: str) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = GPT(GPTConfig.from_depth(4, vocab_size=4096))
    optimizer = optimizer_for(model)
    x, y = torch.randint(0, 4096, (8, 256)), torch.randint(0, 4096, (8, 256))
    steps = []
    for _ in range(6):
        started = time.perf_counter()
        model(x, y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        steps.append(time.perf_counter() - started)
    tok = Tokenizer.train(["the cat sat on the mat and the dog ran far away " * 200], vocab_size=280)
    engine = Engine(
        GPT(GPTConfig.from_depth(4, vocab_size=tok.vocab_size)).eval(), tok, tool=None, compile=False
    )
    decodes = []
    for _ in range(3):
        started = time.perf_counter()
        engine.generate([tok.encode("the cat")], SamplingParams(max_tokens=48, temperature=0))
        decodes.append(time.perf_counter() - started)
    print(
        f"{label} train_step_s {statistics.median(steps[2:]):.4f} decode48_s {statistics.median(decodes):.4f}"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "this tree")
