"""The fast BPE trainer: rustbpe (compiled Rust, parallel over all cores) behind a small wrapper.

Why rustbpe and not Hugging Face `tokenizers`: on this project's benchmark it trains faster
(bench/results/tokenizer.md), it takes the split regex as is, and its tie-breaking is simple enough for
the plain-Python reference trainer to reproduce merge for merge (see reference_trainer.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from picochat.tokenizer.vocab import BYTE_TOKENS, SPLIT_PATTERN


def spare_merges(num_merges: int) -> int:
    """Extra merges to ask rustbpe for, so that skipping repeated tokens still leaves `num_merges`."""
    return 16 + num_merges // 100


def train_fast(texts: Iterable[str], num_merges: int, pattern: str = SPLIT_PATTERN) -> list[bytes]:
    """Learn up to `num_merges` new tokens with rustbpe; return their bytes in the order they were learned.

    Same result as `train_reference` (rustbpe picks the most frequent pair, ties to the smallest pair).
    rustbpe may learn the same bytes twice through different pairs; those repeats are dropped, which is
    why it is asked for a few spare merges and the list is cut to `num_merges` afterwards.
    """
    import rustbpe  # imported here so that loading a tokenizer does not need the trainer

    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(
        iter(texts), BYTE_TOKENS + num_merges + spare_merges(num_merges), pattern=pattern
    )
    ranked = sorted(trainer.get_mergeable_ranks(), key=lambda token_rank: token_rank[1])
    learned: list[bytes] = []
    seen = {bytes([b]) for b in range(BYTE_TOKENS)}
    for token, _rank in ranked[BYTE_TOKENS:]:
        token = bytes(token)
        if token not in seen:
            seen.add(token)
            learned.append(token)
    return learned[:num_merges]
