"""Evaluation, outside the core but bpb.py, which the training loop uses (docs/evaluation.md).

bpb.py            bits per byte and perplexity on held-out batches
probe_set.py      the held-out chat probes; probes.py asks them and applies each skill's pass rule
benchmarks.py     benchmark data: fetched from PyPI, converted to JSONL; contamination.py checks SFT data
loglik.py         log-likelihood of continuations; base.py scores the base suite (CORE-like) with it
chat.py           the chat suite: lettered choices, GSM8K with the calculator, code in the sandbox
results.py        accuracy, standard error, the report; suite.py runs a suite across ranks
compression.py    the tokenizer's bytes per token beside the reference tokenizers
"""
