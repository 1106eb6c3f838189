"""The tokenizer stage: byte-level BPE that turns text into the integers the model reads. Read
tokenizer.py, training.py and chat.py; reference.py is what the tests compare them with."""

from picochat.tokenizer.tokenizer import Tokenizer
from picochat.tokenizer.vocab import SPECIAL_TOKENS, SPLIT_PATTERN

__all__ = ["SPECIAL_TOKENS", "SPLIT_PATTERN", "Tokenizer"]
