"""Constrained decoding: at every step a choice may pick only the tokens its `TokenMask` allows.

`response_format` json_object / json_schema compiles a grammar with llguidance (chosen by measurement:
docs/serve.md, bench/results/serve.md); the mask then allows exactly the tokens that keep the reply a prefix
of JSON that validates, and <|assistant_end|> once it is whole, so a finished reply always parses.
`tool_choice: "none"` is the simplest mask: every token but <|python_start|>.
"""

from __future__ import annotations

import functools
import json

import llguidance
import torch
from torch import Tensor

from picochat.decode import Scored

JSON_OPTIONS = {"whitespace_flexible": False}  # compact JSON: no token is spent on free whitespace


class FormatError(ValueError):
    """A response_format the grammar compiler refuses (the message says why)."""


class Grammar:
    """A request's compiled grammar; `mask()` starts a fresh TokenMask for one choice."""

    def __init__(self, tokenizer, vocab_size: int, stop_ids: list[int], schema: dict):
        ll_tokenizer = _ll_tokenizer(tokenizer, vocab_size, tuple(sorted(stop_ids)))
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_OPTIONS)
        except ValueError as error:
            raise FormatError(f"the JSON schema is not valid: {error}") from error
        self.matcher = llguidance.LLMatcher(ll_tokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise FormatError(f"the JSON schema is not supported: {self.matcher.get_error()}")
        self.vocab_size, self.stop_ids = vocab_size, stop_ids

    def mask(self) -> TokenMask:
        return GrammarMask(self.matcher.deep_copy(), self.vocab_size, self.stop_ids)


@functools.cache
def _ll_tokenizer(tokenizer, vocab_size: int, stop_ids: tuple[int, ...]):
    """llguidance's view of picochat's tiktoken BPE (built once per tokenizer); special tokens never match
    grammar text, and the stop tokens end the grammar."""
    return llguidance.LLTokenizer.from_tiktoken(
        encoder=tokenizer.ranks,
        special_tokens=tokenizer.special_tokens,
        pattern=tokenizer.pattern,
        eos_token=list(stop_ids),
        n_vocab=vocab_size,
    )


class TokenMask:
    """Which tokens a choice may pick next; told every token it took."""

    def allowed(self) -> Tensor:  # (V,) bool
        raise NotImplementedError

    def consume(self, token: int) -> None:
        pass


class GrammarMask(TokenMask):
    def __init__(self, matcher, vocab_size: int, stop_ids: list[int]):
        self.matcher, self.vocab_size, self.stop_ids = matcher, vocab_size, stop_ids

    def allowed(self) -> Tensor:
        words = torch.frombuffer(bytearray(self.matcher.compute_bitmask()), dtype=torch.int32)  # (⌈V/32⌉,)
        bits = (words.unsqueeze(1) >> torch.arange(32)) & 1  # (⌈V/32⌉, 32): bit i of word w is token 32w + i
        allowed = bits.flatten()[: self.vocab_size].bool()  # (V,)
        if not allowed.any():  # the grammar is done (or broken): the reply can only end
            allowed[self.stop_ids] = True
        return allowed

    def consume(self, token: int) -> None:
        self.matcher.consume_token(token)


class Banned(TokenMask):
    """Every token but `banned` (e.g. <|python_start|> when a client says tool_choice "none")."""

    def __init__(self, vocab_size: int, banned: list[int]):
        self.mask = torch.ones(vocab_size, dtype=torch.bool)
        self.mask[banned] = False

    def allowed(self) -> Tensor:
        return self.mask


def apply_masks(out: Scored, masks: list[TokenMask | None]) -> Scored:
    """`out` (R, V) with the disallowed tokens of each masked row at -inf and its argmax among the allowed;
    logsumexp is kept, so a token's reported log p is the model's own."""
    rows = [r for r, mask in enumerate(masks) if mask is not None]
    if not rows:
        return out
    allowed = torch.stack([masks[r].allowed() for r in rows]).to(out.logits.device)  # (M, V)
    logits, best = out.logits.clone(), out.best.clone()
    logits[rows] = logits[rows].masked_fill(~allowed, -torch.inf)
    best[rows] = logits[rows].argmax(dim=-1)
    return Scored(logits, best, out.logsumexp)
