"""Corpora and the loaders that feed them to training."""
