"""The reference BPE trainer: plain Python, short enough to read in one sitting, slow on big inputs.

It learns exactly the same merges as the fast trainer (`picochat.tokenizer.training`, backed by rustbpe),
and tests hold the two together. Use it to learn how BPE training works and for inputs of a few
hundred kilobytes; use the fast trainer for anything real.

The algorithm:
  1. Cut every text into pre-tokens ("chunks") with the split regex and count identical chunks.
  2. Write each chunk as its UTF-8 bytes: token ids 0..255.
  3. Repeat: count every adjacent pair of ids over all chunks (weighted by the chunk's count), pick the
     most frequent pair, give it the next id, and replace the pair left to right in every chunk.

Tie-breaking, which must match rustbpe's: among pairs with the highest count, the smallest pair wins,
comparing (left id, right id) as a tuple of integers. Training stops early when no pair is left.
"""

from collections import Counter
from collections.abc import Iterable

import regex

from picochat.tokenizer.vocab import BYTE_TOKENS, SPLIT_PATTERN


def merge_pair(word: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `word`, scanning left to right (so "aaa" -> [X, a])."""
    merged = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


def train_reference(texts: Iterable[str], num_merges: int, pattern: str = SPLIT_PATTERN) -> list[bytes]:
    """Learn up to `num_merges` new tokens; return their bytes in the order they were learned.

    Two different merges can produce the same bytes (say "a"+"bc" and "ab"+"c"); the repeat is not a new
    token, so it is skipped and training goes on until `num_merges` distinct tokens are learned.
    """
    split = regex.compile(pattern)
    chunk_counts = Counter(chunk for text in texts for chunk in split.findall(text))
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    counts = list(chunk_counts.values())

    token_bytes = [bytes([b]) for b in range(BYTE_TOKENS)]  # id -> bytes, including repeats
    learned: list[bytes] = []
    seen = set(token_bytes)
    while len(learned) < num_merges:
        pair_counts: Counter[tuple[int, int]] = Counter()
        for word, count in zip(words, counts):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += count
        if not pair_counts:
            break  # every chunk is a single token: nothing left to merge
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        new_id = len(token_bytes)
        token_bytes.append(token_bytes[best[0]] + token_bytes[best[1]])
        words = [merge_pair(word, best, new_id) for word in words]
        if token_bytes[new_id] not in seen:
            seen.add(token_bytes[new_id])
            learned.append(token_bytes[new_id])
    return learned
