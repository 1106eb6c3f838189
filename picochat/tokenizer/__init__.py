"""The tokenizer stage: byte-level BPE that turns text into the integers the model reads.

Read tokenizer.py (encode, decode, train, save, load), training.py (the fast trainer) and chat.py
(conversations -> ids and a loss mask); vocab.py, storage.py and corpus.py support them. reference.py
(BPE in plain Python, GPT-2's and GPT-4's ranks) is what the tests compare them with.
"""

from picochat.tokenizer.tokenizer import Tokenizer
from picochat.tokenizer.vocab import SPECIAL_TOKENS, SPLIT_PATTERN

__all__ = ["SPECIAL_TOKENS", "SPLIT_PATTERN", "Tokenizer"]
