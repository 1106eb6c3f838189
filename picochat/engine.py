"""The inference engine: prompts in, new tokens out, with a KV cache, sampling, stop rules and tools.

    prompts ─ prefill: one forward pass over all prompts (right-padded), one decode slot each
      ┌─► each row picks its next token (`pick_tokens`): a forced tool-output token, else a seeded sample
      │   (temperature, top-k, top-p, min-p; 0 = argmax); it ends at <|assistant_end|>, <|bos|>, a stop
      │   string or max_tokens
      └── decode: one step appends the picked tokens of the rows still running (`decode.DecodeSlots`)

Tools: a row's <|python_start|>code<|python_end|> is run (calculator or Python sandbox) and
<|output_start|>result<|output_end|> is forced into that row, never sampled (`GenerationResult.mask` 0).
Text is decoded incrementally: split characters and possible stop strings are held back.

    engine = Engine(model, tokenizer)                  # tool="calculator" (default), None or a tool object
    results = engine.generate([ids_a, ids_b], SamplingParams(max_tokens=64, temperature=0))

Shapes: B rows, S slots, V vocab.
"""

from __future__ import annotations

import codecs
import re
import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from picochat.decode import RUN_STEPS, DecodeSlots, Scored, auto_compile, decode_dtype, scored, slots_shape
from picochat.equations import softmax
from picochat.errors import UserError
from picochat.tools import Calculator

STOP_TOKENS = ("<|assistant_end|>", "<|bos|>")  # the end of a reply; the start of a new document
TOOL_MARKERS = ("<|python_start|>", "<|python_end|>", "<|output_start|>", "<|output_end|>")
# a tool call as people read it, "[tool: 2+3 → 5]": the terminal chat and the exported tokenizer's decoder
TOOL_ON_SCREEN = dict(zip(TOOL_MARKERS, ("[tool: ", "", " → ", "]")))
TOOL_MARKER = re.compile("(" + "|".join(re.escape(marker) for marker in TOOL_MARKERS) + ")")
PART_OPENED_BY = {"<|python_start|>": "python", "<|output_start|>": "python_output"}  # assistant_message


class Engine:
    """Generates from a GPT: batched, KV-cached, with sampling, stop rules, tools and UTF-8-safe streaming."""

    def __init__(
        self, model, tokenizer, tool="calculator", dtype=None, compile=False, run_steps=None, freeze=False
    ):
        """`compile`: None compiles where it can; False decodes eagerly (the reference). `freeze` (a CPU):
        weights compiled in as constants. `run_steps`: decode steps per trip to the device (None: `RUN_STEPS`
        when compiled, else 1)."""
        if model.config.vocab_size < tokenizer.vocab_size:
            raise UserError(
                f"the model has {model.config.vocab_size} token ids but the tokenizer {tokenizer.vocab_size}; "
                "they do not belong together: load the tokenizer saved with the model's checkpoint"
            )
        self.model, self.tokenizer, self.tool = model, tokenizer, engine_tool(tool)
        self.device = next(model.parameters()).device
        self.dtype = decode_dtype(self.device, dtype)
        self.compile, self.freeze = auto_compile(compile, self.device), freeze
        self.run_steps = run_steps if run_steps is not None else (RUN_STEPS if self.compile else 1)
        if self.run_steps < 1:
            raise UserError(f"run_steps must be at least 1, got {run_steps}")
        self._slots: DecodeSlots | None = None  # kept between calls: a compiled step is reused
        self.stop_ids = {tokenizer.special_id(name) for name in STOP_TOKENS}
        self.python_start, self.python_end, self.output_start, self.output_end = (
            tokenizer.special_id(marker) for marker in TOOL_MARKERS
        )

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[GenerationResult]:
        """Continue every prompt (lengths may differ); rows are sampled independently."""
        *_, rows = self._steps(prompts, params)  # run to the end; every step yields the same rows
        return [row.result() for row in rows]

    def stream(self, prompt: list[int], params: SamplingParams) -> Iterator[str]:
        """Text deltas (whole characters) of one continuation; returns the GenerationResult."""
        rows = []
        for rows in self._steps([prompt], params):
            delta = rows[0].take_text()
            if delta:
                yield delta
        return rows[0].result()

    def chat(self, messages: list[dict], params: SamplingParams) -> str:
        """The assistant's reply to a conversation that ends with a user message."""
        prompt = self.tokenizer.render_for_completion(messages)
        return self.generate([prompt], params)[0].text

    def stream_chat(self, messages: list[dict], params: SamplingParams) -> Iterator[str]:
        """The assistant's reply as text deltas; returns the GenerationResult like `stream`."""
        return (yield from self.stream(self.tokenizer.render_for_completion(messages), params))

    def _steps(self, prompts: list[list[int]], params: SamplingParams) -> Iterator[list[Row]]:
        """Prefill, then decode one token per running row per step; yield all rows after every step."""
        max_len = self._check_prompts(prompts, params)
        base_seed = params.seed if params.seed is not None else secrets.randbits(63)
        rows = [
            Row(self, params, min(params.max_tokens, max_len - len(p)), row_seed(base_seed, b))
            for b, p in enumerate(prompts)
        ]
        slots = self._decode_slots(len(prompts), max_len)
        running = list(range(len(prompts)))  # the rows still generating, which are the active slots
        add_next_tokens(rows, scored(slots.prefill_many(running, prompts)), params)
        yield rows
        active = torch.arange(slots.num_slots) < len(prompts)  # (S,) slots past the rows stay empty
        tokens = [0] * slots.num_slots
        while True:
            still = [b for b in running if not rows[b].finish_reason]
            if not still:
                return
            if len(still) < len(running):
                active[[b for b in running if rows[b].finish_reason]] = False
                running = still
            for b in running:
                tokens[b] = rows[b].tokens[-1]
            steps = self._run_length(slots, running, rows)
            if steps == 1:
                out = slots.step(torch.tensor(tokens), active)  # finished rows' outputs are ignored
                add_next_tokens([rows[b] for b in running], Scored(*(t[running] for t in out)), params)
                yield rows
            else:
                yield from self._run(slots, torch.tensor(tokens), active, steps, running, rows, params)

    def _check_prompts(self, prompts: list[list[int]], params: SamplingParams) -> int:
        """Refuse prompts that cannot be continued; return the longest row's length when it is done."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise UserError("every prompt needs at least one token (start it with tokenizer.bos_id)")
        vocab_size = self.model.config.vocab_size
        if any(not 0 <= t < vocab_size for p in prompts for t in p):
            raise UserError(
                f"prompts must hold token ids in [0, {vocab_size}); encode text with the tokenizer"
            )
        longest, rope_len = max(len(p) for p in prompts), self.model.config.rope_len
        if longest >= rope_len:
            raise UserError(
                f"a prompt of {longest} tokens leaves no room to generate: the model has {rope_len} "
                "positions; shorten the prompt (in a chat, start a new conversation)"
            )
        return min(longest + params.max_tokens, rope_len)

    def _run_length(self, slots: DecodeSlots, running: list[int], rows: list[Row]) -> int:
        """Steps in the next trip to the device: `run_steps`, fewer if a slot fills or every row ends, one
        while a tool's output is fed."""
        if self.run_steps == 1 or any(rows[b].forced for b in running):
            return 1
        room = min(slots.max_len - slots.length(b) for b in running)
        remaining = max(rows[b].max_tokens - len(rows[b].tokens) for b in running)
        return max(1, min(self.run_steps, room, remaining))

    def _run(self, slots, tokens, active, steps, running, rows, params) -> Iterator[list[Row]]:
        """`steps` tokens per row picked on the device in one `DecodeSlots.run`, then handed to the rows one
        position at a time; a row that ends a tool call is rewound to that token, so the output comes next."""
        seeds, draws = (torch.zeros(slots.num_slots, dtype=torch.long) for _ in range(2))  # (S,) each
        seeds[: len(rows)], draws[: len(rows)] = row_streams(rows)
        seeds, draws = seeds.to(slots.device), draws.to(slots.device)
        pick = lambda out, i: pick_tokens(out.logits, params, seeds, draws + i, out.best)  # noqa: E731
        starts = {b: slots.length(b) for b in running}
        picks, logprobs = (t.tolist() for t in slots.run(tokens, active, steps, pick))
        for i in range(steps):
            for b in running:
                row = rows[b]
                if row.finish_reason or row.forced:
                    continue
                row.add(picks[b][i], sampled=True, logprob=logprobs[b][i])
                if row.forced:  # a tool call ended: its output goes in after this token
                    slots.rewind(b, starts[b] + i + 1)
            yield rows
            if all(rows[b].finish_reason or rows[b].forced for b in running):
                return

    def use_slots(self, slots: DecodeSlots) -> None:
        """Decode one sequence at a time through `slots` from the next call on (compiled ones, warmed on
        another thread: `decode.WarmSlots`)."""
        self._slots, self.compile, self.freeze = slots, slots.compiled, slots.frozen
        self.run_steps = RUN_STEPS if slots.compiled else 1

    def _decode_slots(self, batch_size: int, max_len: int) -> DecodeSlots:
        """Slots for this batch, reusing the last ones when they fit (their compiled step comes along)."""
        num_slots, length = slots_shape(self.model.config, batch_size, max_len, self.dtype, self.compile)
        slots = self._slots
        if slots is None or slots.num_slots != num_slots or slots.max_len < max_len:
            slots = DecodeSlots(self.model, num_slots, length, self.dtype, self.compile, self.freeze)
            self._slots = slots
        for slot in range(num_slots):
            slots.free(slot)
        return slots


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop. temperature 0 is greedy; None switches a filter off."""

    max_tokens: int = 256  # new tokens per row, tool outputs included
    temperature: float = 1.0
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = None  # keep the most likely tokens until their mass reaches p (nucleus)
    min_p: float | None = None  # keep tokens at least min_p times as likely as the most likely one
    seed: int | None = None  # row b samples from a stream seeded with (seed, b); None: fresh entropy
    stop: tuple[str, ...] = ()  # stop strings: the text ends just before the first one that appears

    def __post_init__(self):
        stops = (self.stop,) if isinstance(self.stop, str) else self.stop
        object.__setattr__(self, "stop", tuple(s for s in stops if s))
        if self.max_tokens < 1:
            raise UserError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"top_k must be at least 1 (or None for no limit), got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise UserError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.seed is not None and self.seed < 0:
            raise UserError(f"seed must be a non-negative integer, got {self.seed}")


@dataclass
class GenerationResult:
    """One row's output; the text keeps tool calls with their markers but not the stop token."""

    tokens: list[int]  # the new ids, forced tool outputs and the final stop token included
    text: str
    finish_reason: str  # "stop" (a stop token), "stop_string", or "length" (max_tokens or the context)
    mask: list[int] = field(default_factory=list)  # 1 sampled, 0 forced by a tool
    logprobs: list[float] = field(default_factory=list)  # log p at temperature 1, before any filter
    tool_calls: int = 0


def pick_tokens(logits: Tensor, params, seeds: Tensor, draws: Tensor, best: Tensor | None = None) -> Tensor:
    """The next token of every row (B,) from logits (B, V): the argmax at temperature 0, else row b's draw
    number draws[b] from seed seeds[b] (`sample`), independent of the rows beside it. `params`: one
    SamplingParams for all rows, or a list, one per row. Rows whose probabilities are not finite take the
    argmax, the limit of temperature → 0."""
    best = logits.argmax(dim=-1) if best is None else best  # (B,)
    if isinstance(params, SamplingParams):  # one setting for every row: one batched computation
        if params.temperature == 0:
            return best
        return draw_or_argmax(sampling_probs(logits, params), seeds, draws, best)
    picks = best.clone()
    rows = [b for b, p in enumerate(params) if p.temperature > 0]
    if rows:
        probs = torch.cat([sampling_probs(logits[b : b + 1], params[b]) for b in rows])  # (N, V)
        picks[rows] = draw_or_argmax(probs, seeds[rows], draws[rows], best[rows])
    return picks


def draw_or_argmax(probs: Tensor, seeds: Tensor, draws: Tensor, best: Tensor) -> Tensor:
    """`sample` for every row (B,), or its argmax `best` where its probabilities (B, V) are not finite."""
    drawn = sample(probs, seeds.to(probs.device), draws.to(probs.device))  # (B,)
    return torch.where(torch.isfinite(probs).all(dim=-1), drawn, best)


def sampling_probs(logits: Tensor, params: SamplingParams) -> Tensor:
    """Probabilities (B, V) from logits (B, V): softmax at the temperature, then top-k, top-p and min-p, each
    filtering the tokens the one before it kept, then renormalised."""
    probs = softmax(logits.float(), params.temperature)  # (B, V)
    if params.top_k is not None and params.top_k < probs.size(-1):
        kth_largest = torch.topk(probs, params.top_k, dim=-1).values[:, -1:]  # (B, 1)
        probs = torch.where(probs >= kth_largest, probs, 0.0)
    if params.top_p is not None and params.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
        keep_sorted = mass_before < params.top_p * sorted_probs.sum(dim=-1, keepdim=True)
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)  # back to vocabulary order
        probs = torch.where(keep, probs, 0.0)
    if params.min_p is not None and params.min_p > 0:
        probs = torch.where(probs >= params.min_p * probs.amax(dim=-1, keepdim=True), probs, 0.0)
    return probs / probs.sum(dim=-1, keepdim=True)


def row_seed(seed: int, row: int) -> int:
    """A well-mixed 64-bit seed for row `row` of a batch sampled with `seed` (independent streams)."""
    return int(np.random.SeedSequence([seed, row]).generate_state(1, dtype=np.uint64)[0])


def hash32(x: Tensor) -> Tensor:
    """Wellons' "lowbias32" 32-bit hash of int64 tensors; products wrap, but their low 32 bits are exact."""
    x = x & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & 0xFFFFFFFF
    x = ((x ^ (x >> 15)) * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def sample(probs: Tensor, seeds: Tensor, draws: Tensor) -> Tensor:
    """One token per row from probs (B, V), by the Gumbel-max trick: argmax(log p + G), G ~ Gumbel(0, 1),
    is distributed as p. G's uniforms hash (row seed, draw number, token id): a reproducible stream per row,
    with no per-row generator. seeds (B,) int64 row seeds, draws (B,) int64 tokens drawn before."""
    key = hash32(seeds ^ hash32((seeds >> 32) ^ hash32(draws)))  # (B,)
    bits = hash32(key.unsqueeze(1) ^ hash32(torch.arange(probs.size(-1), device=probs.device)))  # (B, V)
    uniform = ((bits >> 8).float() + 0.5) / 2**24  # in (0, 1)
    gumbel = -torch.log(-torch.log(uniform))
    return torch.argmax(torch.log(probs) + gumbel, dim=-1)


def row_streams(rows: list[Row]) -> tuple[Tensor, Tensor]:
    """Each row's sampling stream for `pick_tokens`: its seed and how many tokens it has drawn, (B,) each."""
    return torch.tensor([row.seed for row in rows]), torch.tensor([len(row.tokens) for row in rows])


def add_next_tokens(rows: list[Row], out: Scored, params: SamplingParams | list[SamplingParams]) -> None:
    """Give each row its next token: a pending tool output's next one, else its pick from `out`."""
    seeds, draws = row_streams(rows)
    picks = pick_tokens(out.logits, params, seeds, draws, out.best).tolist()
    forced = [bool(row.forced) for row in rows]
    picks = [row.forced.popleft() if f else p for row, f, p in zip(rows, forced, picks)]
    picked = torch.tensor(picks, device=out.logits.device).unsqueeze(1)  # (B, 1)
    logprobs = (out.logits.gather(1, picked)[:, 0] - out.logsumexp).tolist()  # log_softmax at the picks
    for row, token, was_forced, logprob in zip(rows, picks, forced, logprobs):
        row.add(token, sampled=not was_forced, logprob=logprob)


class Row:
    """One sequence being generated: its tokens, the tool call it is writing, its text and why it ended."""

    def __init__(self, engine: Engine, params: SamplingParams, max_tokens: int, seed: int):
        self.engine, self.stops, self.max_tokens = engine, params.stop, max_tokens
        self.seed = seed - 2**64 if seed >= 2**63 else seed  # the 64-bit row seed as a signed int64
        self.tokens, self.mask, self.logprobs = [], [], []  # as in GenerationResult
        self.forced: deque[int] = deque()  # tool output still to be fed
        self.code: list[int] | None = None  # the tool call being written
        self.tool_calls = 0
        self.finish_reason: str | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # keeps split characters
        self.text = ""
        self.streamed = 0  # characters of text already handed out by take_text

    def add(self, token: int, sampled: bool, logprob: float) -> None:
        self.tokens.append(token)
        self.mask.append(int(sampled))
        self.logprobs.append(logprob)
        if token in self.engine.stop_ids:
            self.finish("stop")
            return
        self._add_text(self.decoder.decode(self.engine.tokenizer.decode_bytes([token])))
        if self.finish_reason:  # a stop string appeared
            return
        if len(self.tokens) >= self.max_tokens:
            self.finish("length")
        elif self.engine.tool is None:
            return
        elif token == self.engine.python_start:
            self.code = []
        elif token == self.engine.python_end and self.code is not None:
            e = self.engine  # run the call; its output is forced in next
            output = e.tokenizer.encode(e.tool.run(e.tokenizer.decode(self.code)).output)
            self.forced.extend([e.output_start, *output, e.output_end])
            self.tool_calls += 1
            self.code = None
        elif self.code is not None:
            self.code.append(token)

    def _add_text(self, piece: str) -> None:
        """Append decoded text; on a stop string, cut the text before it and finish."""
        if not piece:
            return
        search_from = max(0, len(self.text) - max((len(s) for s in self.stops), default=0) + 1)
        self.text += piece
        found = [i for i in (self.text.find(s, search_from) for s in self.stops) if i >= 0]
        if found:
            self.text = self.text[: min(found)]
            self.finish_reason = "stop_string"

    def finish(self, reason: str) -> None:
        self.finish_reason = reason
        self._add_text(self.decoder.decode(b"", final=True))  # an unfinished character becomes U+FFFD

    def take_text(self) -> str:
        """The text added since the last call, whole characters only, holding back a possible stop string."""
        end = len(self.text) - (0 if self.finish_reason else self._stop_prefix_length())
        start, self.streamed = self.streamed, max(end, self.streamed)
        return self.text[start : self.streamed]

    def _stop_prefix_length(self) -> int:
        """Length of the longest end of the text that is the start of a stop string."""
        for length in range(min(max((len(s) for s in self.stops), default=1) - 1, len(self.text)), 0, -1):
            if any(s.startswith(self.text[-length:]) for s in self.stops):
                return length
        return 0

    def result(self) -> GenerationResult:
        reason = self.finish_reason or "length"
        return GenerationResult(self.tokens, self.text, reason, self.mask, self.logprobs, self.tool_calls)


def assistant_message(reply: str) -> dict | None:
    """A reply as an assistant message, tool calls as python / python_output parts (it renders back into
    the same tokens); None for an empty reply."""
    if not TOOL_MARKER.search(reply):
        return {"role": "assistant", "content": reply} if reply.strip() else None
    parts, kind = [], "text"
    for piece in TOOL_MARKER.split(reply):
        if piece in TOOL_MARKERS:
            kind = PART_OPENED_BY.get(piece, "text")
        elif piece.strip() or (piece and kind == "python_output"):
            parts.append({"type": kind, "text": piece})
    return {"role": "assistant", "content": parts} if parts else None


def engine_tool(tool):
    """ "calculator", None / "none", or a tool object (with .run(code) -> ToolResult)."""
    if tool in (None, "none", "calculator"):
        return Calculator() if tool == "calculator" else None
    if isinstance(tool, str) or not callable(getattr(tool, "run", None)):
        raise UserError(
            f"the engine takes tool='calculator', None or a tool object, not {tool!r} (the Python "
            "sandbox: picochat.tools.sandbox.get_tool('python'))"
        )
    return tool
