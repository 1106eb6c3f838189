"""What a picochat vocabulary is made of: the split pattern, the 256 byte tokens, and the special tokens.

Token ids are laid out as
    0..255                     the raw bytes (id == byte value), so any byte sequence can be encoded
    256..256+merges-1          the learned merges, in the order they were learned (id == rank)
    after that                 the special tokens, in the order of SPECIAL_TOKENS
so `vocab_size` = 256 + number of merges + len(SPECIAL_TOKENS).
"""

# Special tokens, in id order. They never come out of encoding plain text (see Tokenizer.encode).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|bos|>",  # begins every document and every conversation
    "<|system_start|>",
    "<|system_end|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",  # the assistant calls the python tool ...
    "<|python_end|>",
    "<|output_start|>",  # ... and the tool's output comes back
    "<|output_end|>",
)

BYTE_TOKENS = 256

# How many digits at most one pre-token may hold. GPT-4 uses 3; with 2, all 100 digit pairs fit in a small
# vocabulary and numbers compress better at 4k-8k tokens (measured: docs/tokenizer.md).
DIGIT_GROUP = 2


def split_pattern(digit_group: int = DIGIT_GROUP) -> str:
    """The GPT-4 (cl100k) pre-tokenizer regex, with numbers split into runs of at most `digit_group` digits.

    Text is first cut into pre-tokens with this regex and BPE merges never cross a pre-token boundary:
      's 't 're 've 'm 'll 'd         English contractions (any case)
      [^\\r\\n\\p{L}\\p{N}]?+\\p{L}+     a word, with one optional leading non-letter (usually the space)
      \\p{N}{1,digit_group}           a group of digits
       ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*     punctuation, with an optional leading space and trailing newlines
      \\s*[\\r\\n]                     whitespace ending in a newline
      \\s+(?!\\S) and \\s+              other whitespace, leaving one space to lead the next word
    """
    if digit_group < 1:
        raise ValueError(f"digit_group must be at least 1, got {digit_group}")
    return (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,"""
        + str(digit_group)
        + r"""}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
    )


SPLIT_PATTERN = split_pattern()
