"""Evaluation, outside the core but bpb.py, which the training loop uses (docs/evaluation.md): bpb.py
(bits per byte), probe_set.py and probes.py (chat probes), benchmarks.py (data; contamination.py checks
SFT data against it), loglik.py and base.py (the base suite), chat.py (the chat suite), results.py and
suite.py (the report, across ranks), compression.py (the tokenizer's bytes per token).
"""
