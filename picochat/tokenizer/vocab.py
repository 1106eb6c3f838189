"""What a picochat vocabulary is made of: the split pattern, the 256 byte tokens, and the special tokens.

Token ids are laid out as (so `vocab_size` = 256 + number of merges + len(SPECIAL_TOKENS))
    0..255                     the raw bytes (id == byte value), so any byte sequence can be encoded
    256..256+merges-1          the learned merges, in the order they were learned (id == rank)
    after that                 the special tokens, in the order of SPECIAL_TOKENS
"""

# Special tokens, in id order; plain text never encodes to one. <|bos|> begins every document, then a start
# and an end token for each span ("python": the assistant's tool call, "output": the tool's output).
SPANS = ("system", "user", "assistant", "python", "output")
SPECIAL_TOKENS = ("<|bos|>", *(f"<|{span}_{edge}|>" for span in SPANS for edge in ("start", "end")))

BYTE_TOKENS = 256

# How many digits at most one pre-token may hold. GPT-4 uses 3; with 2, all 100 digit pairs fit in a small
# vocabulary and numbers compress better at 4k-8k tokens (docs/tokenizer.md).
DIGIT_GROUP = 2


def split_pattern(digit_group: int = DIGIT_GROUP) -> str:
    """The GPT-4 (cl100k) pre-tokenizer regex, numbers cut into runs of at most `digit_group` digits."""
    if digit_group < 1:
        raise ValueError(f"digit_group must be at least 1, got {digit_group}")
    branches = [
        r"'(?i:[sdmt]|ll|ve|re)",  # English contractions: 's 't 're 've 'm 'll 'd, in any case
        r"[^\r\n\p{L}\p{N}]?+\p{L}+",  # a word, with one optional leading non-letter (usually the space)
        rf"\p{{N}}{{1,{digit_group}}}",  # a group of digits
        r" ?[^\s\p{L}\p{N}]++[\r\n]*",  # punctuation, with an optional leading space and trailing newlines
        r"\s*[\r\n]",  # whitespace ending in a newline
        r"\s+(?!\S)",  # other whitespace, leaving one space to lead the next word
        r"\s+",
    ]
    return "|".join(branches)


SPLIT_PATTERN = split_pattern()
