"""Corpora and the loaders that feed them to training. This package imports nothing itself, so the core
(pretrain, sft) pulls in only the loader side.

Loader side:  loader.py (shards -> packed token batches), packing.py (best-fit packing), conversations.py
              (SFT's batches of whole conversations), shards.py (the parquet format every corpus uses)
Corpus room:  corpus.py (build, stats, synthetic corpus), sources.py + sources.toml (the registry),
              fetch.py (Hub, HTTP and package downloads), parsers.py (one parser per kind of file)
"""
