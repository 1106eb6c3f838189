"""The Tokenizer: text <-> token ids with byte-level BPE. A tokenizer is its ranks (every token's bytes and
id, vocab.py has the layout); encoding runs in tiktoken, which releases the GIL, so batches use threads.
"""

import os
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import tiktoken

from picochat import paths
from picochat.errors import UserError
from picochat.tokenizer import chat, storage
from picochat.tokenizer.training import train_fast
from picochat.tokenizer.vocab import BYTE_TOKENS, SPECIAL_TOKENS, SPLIT_PATTERN

UNDECODABLE = re.compile("([\udc80-\udcff])")  # a byte that is not UTF-8, as surrogateescape decodes it


class Tokenizer:
    """Byte-level BPE with a GPT-4-style split and picochat's special tokens (ids after the merges)."""

    def __init__(self, ranks: dict[bytes, int], pattern: str = SPLIT_PATTERN, name: str = "picochat"):
        if missing := [b for b in range(BYTE_TOKENS) if bytes([b]) not in ranks]:
            raise UserError(
                f"the vocabulary lacks {len(missing)} single-byte tokens (first: byte {missing[0]}), "
                "so some text could not be encoded; re-train the tokenizer"
            )
        self.ranks, self.pattern, self.name = ranks, pattern, name
        self.special_tokens = {token: len(ranks) + i for i, token in enumerate(SPECIAL_TOKENS)}
        self._encoding = tiktoken.Encoding(
            name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=self.special_tokens
        )
        self._byte_lengths: np.ndarray | None = None

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int, pattern: str = SPLIT_PATTERN, learn: Callable = train_fast
    ) -> "Tokenizer":
        """Learn `vocab_size` tokens in all (256 bytes + merges + specials) from `texts`. `learn` is
        `train_fast` (rustbpe) or `reference.train_reference` (plain Python, the same merges, slower)."""
        smallest = BYTE_TOKENS + len(SPECIAL_TOKENS)
        if vocab_size < smallest:
            raise UserError(
                f"vocab size {vocab_size} is too small: it must be at least {smallest} "
                f"(256 byte tokens + {len(SPECIAL_TOKENS)} special tokens)"
            )
        num_merges = vocab_size - smallest
        learned = learn(texts, num_merges, pattern)
        if len(learned) < num_merges:
            raise UserError(
                f"the training text only supports {len(learned)} merges but vocab size {vocab_size} needs "
                f"{num_merges}: give more text or a vocab size of at most {smallest + len(learned)}"
            )
        tokens = [bytes([b]) for b in range(BYTE_TOKENS)] + learned
        return cls({token: rank for rank, token in enumerate(tokens)}, pattern)

    def save(self, directory: str | Path | None = None) -> Path:
        """Write the tokenizer directory (default: picochat.paths.tokenizer_dir()); return its path."""
        directory = Path(directory) if directory is not None else paths.tokenizer_dir()
        storage.save_directory(directory, self.ranks, self.special_tokens, self.pattern, self.name)
        return directory

    @classmethod
    def load(cls, directory: str | Path | None = None) -> "Tokenizer":
        """Read a tokenizer directory written by `save`. Only parses text and JSON; runs no code."""
        directory = Path(directory).expanduser() if directory is not None else paths.tokenizer_dir()
        ranks, specials, pattern, name = storage.load_directory(directory)
        expected = {token: len(ranks) + i for i, token in enumerate(SPECIAL_TOKENS)}
        if specials != expected:
            raise UserError(
                f"{directory / storage.CONFIG_FILE}: special tokens must be {list(SPECIAL_TOKENS)} with ids "
                f"{len(ranks)}..{len(ranks) + len(SPECIAL_TOKENS) - 1} in that order; found {specials}"
            )
        return cls(ranks, pattern, name)

    @property
    def vocab_size(self) -> int:
        return len(self.ranks) + len(self.special_tokens)

    @property
    def bos_id(self) -> int:
        return self.special_tokens["<|bos|>"]

    def special_id(self, token: str) -> int:
        if token not in self.special_tokens:
            raise UserError(f"{token!r} is not a special token; they are: {', '.join(SPECIAL_TOKENS)}")
        return self.special_tokens[token]

    def token_byte_lengths(self) -> np.ndarray:
        """UTF-8 bytes per token id, shape (V,); 0 for special tokens (bits per byte ignores them)."""
        if self._byte_lengths is None:
            self._byte_lengths = np.zeros(self.vocab_size, dtype=np.int32)
            self._byte_lengths[list(self.ranks.values())] = [len(token) for token in self.ranks]
        return self._byte_lengths

    def encode(
        self, text: str, prepend: int | None = None, allowed_special: Collection[str] | Literal["all"] = ()
    ) -> list[int]:
        """Token ids for `text`, optionally after `prepend` (e.g. bos_id). Special-token strings in `text` are
        ordinary text unless named in `allowed_special` (or it is "all"): user text never forges one."""
        if allowed_special:
            allowed = set(SPECIAL_TOKENS) if allowed_special == "all" else set(allowed_special)
            if unknown := allowed - set(SPECIAL_TOKENS):
                raise UserError(f"allowed_special names unknown tokens {sorted(unknown)}; see SPECIAL_TOKENS")
            ids = self._encoding.encode(text, allowed_special=allowed, disallowed_special=())
        else:
            ids = self._encoding.encode_ordinary(text)
        return ids if prepend is None else [prepend, *ids]

    def encode_bytes(self, data: bytes) -> list[int]:
        """Token ids for arbitrary bytes: valid UTF-8 runs encode as text, other bytes as byte tokens."""
        ids: list[int] = []
        # surrogateescape turns each undecodable byte 0xXY into the lone surrogate U+DCXY
        for piece in UNDECODABLE.split(data.decode("utf-8", errors="surrogateescape")):
            if piece and UNDECODABLE.fullmatch(piece):
                ids.append(self.ranks[piece.encode("utf-8", errors="surrogateescape")])
            elif piece:
                ids.extend(self._encoding.encode_ordinary(piece))
        return ids

    def encode_batch(
        self, texts: list[str], prepend: int | None = None, num_threads: int = 0
    ) -> list[list[int]]:
        """Encode many texts as ordinary text, over `num_threads` threads (0: one per usable core). Thread t
        encodes texts t, t+T, t+2T, ... in one task: one task per text costs too much on short texts."""
        threads = min(num_threads if num_threads > 0 else usable_cores(), max(len(texts), 1))
        encode = self._encoding.encode_ordinary

        def encode_share(share: list[str]) -> list[list[int]]:
            return [encode(text) if prepend is None else [prepend, *encode(text)] for text in share]

        if threads == 1:
            return encode_share(texts)
        batch: list[list[int]] = [[] for _ in texts]
        with ThreadPoolExecutor(threads) as pool:
            shares = pool.map(encode_share, (texts[t::threads] for t in range(threads)))
            for t, encoded in enumerate(shares):
                batch[t::threads] = encoded
        return batch

    def decode(self, ids: Sequence[int]) -> str:
        """Text for `ids`; bytes that are not valid UTF-8 (a split character) become U+FFFD."""
        return self._encoding.decode(list(ids), errors="replace")

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self._encoding.decode_bytes(list(ids))

    def render_conversation(
        self, messages: list[dict], max_tokens: int | None = None
    ) -> tuple[list[int], list[int]]:
        return chat.render_conversation(self, messages, max_tokens)

    def render_for_completion(self, messages: list[dict]) -> list[int]:
        return chat.render_for_completion(self, messages)

    def __repr__(self) -> str:
        return f"Tokenizer(name={self.name!r}, vocab_size={self.vocab_size})"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
