"""The fast BPE trainer: rustbpe (compiled Rust, parallel over all cores) behind a small wrapper.

rustbpe rather than Hugging Face `tokenizers`: it takes the split regex as is, trains faster
(bench/results/tokenizer.md), and breaks ties simply enough for reference.py to reproduce every merge.
"""

from collections.abc import Iterable

import rustbpe

from picochat.tokenizer.vocab import BYTE_TOKENS, SPLIT_PATTERN


def train_fast(texts: Iterable[str], num_merges: int, pattern: str = SPLIT_PATTERN) -> list[bytes]:
    """Learn up to `num_merges` new tokens with rustbpe; return their bytes in the order they were learned.

    rustbpe may learn the same bytes twice through different pairs ("a"+"bc", "ab"+"c"); the repeat is no
    new token and is dropped, so rustbpe is asked for a few spare merges and the list cut afterwards."""
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
