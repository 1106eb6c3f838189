"""The fast BPE trainer: rustbpe rather than Hugging Face `tokenizers`, as it takes the split regex as is,
trains faster (bench/results/tokenizer.md) and breaks ties simply enough for reference.py to reproduce."""

from collections.abc import Iterable

import rustbpe

from picochat.tokenizer.vocab import BYTE_TOKENS, SPLIT_PATTERN


def train_fast(texts: Iterable[str], num_merges: int, pattern: str = SPLIT_PATTERN) -> list[bytes]:
    """Learn up to `num_merges` new tokens; return their bytes in the order learned. rustbpe may learn the
    same bytes twice ("a"+"bc", "ab"+"c"): repeats are dropped, so it is asked for a few spare merges."""
    trainer = rustbpe.Tokenizer()
    spare = 16 + num_merges // 100
    trainer.train_from_iterator(iter(texts), BYTE_TOKENS + num_merges + spare, pattern=pattern)
    ranked = sorted(trainer.get_mergeable_ranks(), key=lambda token_rank: token_rank[1])
    learned: list[bytes] = []
    seen = {bytes([b]) for b in range(BYTE_TOKENS)}
    for token, _rank in ranked[BYTE_TOKENS:]:
        token = bytes(token)
        if token not in seen:
            seen.add(token)
            learned.append(token)
    return learned[:num_merges]
