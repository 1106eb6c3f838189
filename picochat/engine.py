"""The inference engine: prompts in, new tokens out, with a KV cache, sampling, stop rules and tools.

    prompts ─ prefill: one forward pass over all prompts (right-padded), one DecodeSlots slot each
                │
                ▼
      ┌─► each row picks its next token: the next forced token of a tool output, if any, else a sample
      │   (temperature, top-k, top-p, min-p, from the row's own seeded stream; temperature 0 = argmax)
      │   a row ends at <|assistant_end|> or <|bos|>, at a stop string, or after max_tokens
      └── decode: DecodeSlots.step, the picked tokens into the slots of the rows still running

DecodeSlots is the decoder underneath: a static-shape KV cache of S slots, one (optionally compiled) step
for all of them, slots filled and freed independently; the server's continuous batching drives it too.
A compiled engine decodes `RUN_STEPS` tokens per trip (`DecodeSlots.run`): each step's token is picked on
the device and fed straight to the next step, and the host then hands the run's tokens to the rows one
position at a time, exactly as single steps would have (a row that finishes a tool call inside a run is set
back to that token, and the tool's output is fed next).

Tools: when a row writes <|python_start|>code<|python_end|>, the engine runs the code (the safe calculator
by default, or the Python sandbox) and forces <|output_start|>result<|output_end|> into that row. Forced
tokens go through the model like a prompt but are never sampled; `GenerationResult.mask` marks them 0.

Text is decoded incrementally: the bytes of a character split across tokens wait until the character is
complete, so a stream never shows half a character, and text that could still become a stop string is held
back until it cannot.

    engine = Engine(model, tokenizer)                  # tool="calculator" (default), "python" or None
    results = engine.generate([ids_a, ids_b], SamplingParams(max_tokens=64, temperature=0))
    for delta in engine.stream_chat([{"role": "user", "content": "hi"}], SamplingParams(seed=0)):
        print(delta, end="", flush=True)

Shapes: B rows, T time, V vocab.
"""

from __future__ import annotations

import codecs
import contextlib
import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from picochat.equations import softmax
from picochat.errors import UserError
from picochat.model import KVCache
from picochat.runtime import autocast, can_compile, compute_dtype
from picochat.tools import get_tool

STOP_TOKENS = ("<|assistant_end|>", "<|bos|>")  # the end of a reply; the start of a new document
# decode steps per trip to the device in a compiled engine: the host's work per token (picking, the rows'
# bookkeeping, the compiled call's entry) is done once per 8 tokens; a row that ends inside a run wastes
# at most 7 steps (bench/results/decode.md)
RUN_STEPS = 8
# a compiled engine whose slots' cache for the model's whole context (rope_len positions) fits in this many
# bytes makes them that long at once: a chat that grows past 256, 512, ... tokens then keeps its slots and
# their compiled step, instead of new, longer slots that compile again (attention reads only a window of
# the cache whose size is dynamic, so the longer cache costs no time per step)
WHOLE_CONTEXT_BYTES = 64 * 2**20


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
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(s for s in self.stop if s))
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
    """One row's output.

    tokens: the new ids, forced tool outputs and the final stop token (<|assistant_end|>, <|bos|>) included.
    text: their text, without the stop token, cut before a stop string; tool calls appear with their
        markers, as in "<|python_start|>2+3<|python_end|><|output_start|>5<|output_end|>".
    mask: per token, 1 if the model sampled it, 0 if a tool forced it (as in tokenizer.render_conversation).
    logprobs: per token, the model's log-probability of it (at temperature 1, before any filter).
    finish_reason: "stop" (a stop token), "stop_string", or "length" (max_tokens or the context ran out).
    """

    tokens: list[int]
    text: str
    finish_reason: str
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    tool_calls: int = 0


def sampling_probs(logits: Tensor, params: SamplingParams) -> Tensor:
    """Next-token probabilities (B, V) from logits (B, V): softmax at the temperature, then top-k, top-p
    and min-p, each removing tokens from what the previous one left, then renormalised."""
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
    """A well-mixed 32-bit integer hash (Wellons' "lowbias32") of int64 tensors, element-wise; products
    wrap in int64 but their low 32 bits, all that is kept, are exact."""
    x = x & 0xFFFFFFFF
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & 0xFFFFFFFF
    x = ((x ^ (x >> 15)) * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def sample(probs: Tensor, seeds: Tensor, draws: Tensor) -> Tensor:
    """One token per row from probs (B, V), by the Gumbel-max trick: argmax(log p + G) with G ~ Gumbel(0, 1)
    is distributed as p. The uniforms behind G come from a counter-based hash of (row seed, draw number,
    token id), so every row draws from its own reproducible stream with a few tensor operations for the
    whole batch, on the device, with no per-row generator. seeds (B,) int64 (64-bit row seeds), draws (B,)
    int64 (how many tokens the row has drawn before)."""
    key = hash32(seeds ^ hash32((seeds >> 32) ^ hash32(draws)))  # (B,)
    bits = hash32(key.unsqueeze(1) ^ hash32(torch.arange(probs.size(-1), device=probs.device)))  # (B, V)
    uniform = ((bits >> 8).float() + 0.5) / 2**24  # in (0, 1)
    gumbel = -torch.log(-torch.log(uniform))
    return torch.argmax(torch.log(probs) + gumbel, dim=-1)


class Scored(NamedTuple):
    """Logits with what every pick needs: the greedy token and log p(t) = logits[t] − logsumexp."""

    logits: Tensor  # (S, V) fp32
    best: Tensor  # (S,) argmax
    logsumexp: Tensor  # (S,)


def scored(logits: Tensor) -> Scored:
    return Scored(logits, logits.argmax(dim=-1), torch.logsumexp(logits, dim=-1))


def attention_window(length: int, max_len: int, smallest: int = 64) -> int:
    """The static attention window for rows up to `length` tokens: the next power of two (at least
    `smallest`), capped at `max_len`. Few distinct windows mean few compiled graphs (or CUDA graphs)."""
    window = smallest
    while window < length:
        window *= 2
    return min(window, max_len)


class DecodeSlots:
    """`num_slots` sequences decoded side by side over one static-shape KV cache.

        slots = DecodeSlots(model, num_slots=8, max_len=1024)
        logits = slots.prefill(0, prompt_ids)          # (V,) after the prompt; slot 0 now holds it
        logits = slots.step(tokens, active)            # (S, V): one token into every active slot
        slots.free(0)                                  # slot 0 is empty again

    Every step runs all `num_slots` rows with the same shapes (inactive rows compute and are ignored; their
    lengths do not move), and attention reads a window of the cache that only grows in powers of two, so a
    compiled step (`compile=True`: `torch.compile`, CUDA graphs on a GPU) is reused from step to step.
    A row's logits do not depend on what the other slots hold. Lengths are tracked on the host as well, so
    no step waits for the device to say where the rows are.
    """

    def __init__(
        self,
        model,
        num_slots: int,
        max_len: int,
        dtype: torch.dtype | None = None,
        compile: bool = False,
        freeze: bool = False,
    ):
        if num_slots < 1:
            raise UserError(f"num_slots must be at least 1, got {num_slots}")
        rope_len = model.config.rope_len
        if not 1 <= max_len <= rope_len:
            raise UserError(f"max_len must be in [1, {rope_len}] (the model's positions), got {max_len}")
        self.model = model
        self.num_slots, self.max_len = num_slots, max_len
        self.vocab_size = model.config.vocab_size
        self.device = next(model.parameters()).device
        self.dtype = dtype if dtype is not None else default_decode_dtype(self.device)
        self.cache = model.make_kv_cache(num_slots, max_len, dtype=self.dtype)
        self.cache.split_layers(spare_positions=1)
        self.lengths = np.zeros(num_slots, dtype=np.int64)  # the host's copy of cache.lengths
        self._columns = torch.arange(max_len, device=self.device)
        self.compiled = compile and can_compile(self.device)
        # frozen: the weights become constants of the compiled step (a CPU only; see `compile_step`)
        self.frozen = self.compiled and freeze and self.device.type == "cpu"
        self._params = list(model.parameters())
        self._versions = weight_versions(self._params) if self.frozen else None  # what the step froze
        self._decode = (
            compile_step(self._decode_eager, self.device, self.frozen)
            if self.compiled
            else self._decode_eager
        )
        self._cuda_graphs = self.compiled and self.device.type == "cuda"
        if self._cuda_graphs:  # CUDA graphs replay on fixed addresses: the cache is updated where it lies
            for t in (*self.cache.k, *self.cache.v, self.cache.lengths, self._columns):
                torch._dynamo.mark_static_address(t)

    def length(self, slot: int) -> int:
        return int(self.lengths[self._check_slot(slot)])

    def free(self, slot: int) -> None:
        """Empty the slot (its old keys stay in memory, unseen, until overwritten)."""
        self.lengths[self._check_slot(slot)] = 0
        self.cache.lengths[slot] = 0

    def prefill(self, slot: int, ids: list[int]) -> Tensor:
        """Append `ids` to the slot in one forward pass; return the fp32 logits (V,) after the last one."""
        return self.prefill_many([slot], [ids])[0]

    def prefill_many(self, slots: list[int], ids: list[list[int]]) -> Tensor:
        """`prefill` for several distinct slots at once (right-padded into one pass per starting length).
        Returns (N, V) fp32 logits, row i after the last id of `ids[i]`."""
        slots = [self._check_slot(s) for s in slots]
        if len(set(slots)) != len(slots) or len(slots) != len(ids):
            raise UserError("prefill_many needs distinct slots, one list of ids per slot")
        for row in ids:
            if len(row) == 0:
                raise UserError("every prefill needs at least one token")
            if not all(0 <= t < self.vocab_size for t in row):
                raise UserError(
                    f"token ids must be in [0, {self.vocab_size}); encode text with the tokenizer"
                )
        for slot, row in zip(slots, ids):
            if self.lengths[slot] + len(row) > self.max_len:
                raise UserError(
                    f"slot {slot} holds {self.lengths[slot]} tokens; {len(row)} more exceed its "
                    f"{self.max_len} positions"
                )
        logits = torch.empty(len(slots), self.vocab_size, device=self.device)
        by_start: dict[int, list[int]] = {}  # rows that start at the same position pad without overflowing
        for i, slot in enumerate(slots):
            by_start.setdefault(int(self.lengths[slot]), []).append(i)
        for start, group in by_start.items():
            logits[group] = self._prefill_group(start, [slots[i] for i in group], [ids[i] for i in group])
        return logits

    def _prefill_group(self, start: int, slots: list[int], ids: list[list[int]]) -> Tensor:
        lengths = [len(row) for row in ids]
        window = start + max(lengths)
        padded = torch.tensor([row + [0] * (max(lengths) - len(row)) for row in ids], device=self.device)
        last = torch.tensor(lengths, device=self.device) - 1  # (N,) each row's last real position
        c = self.cache
        contiguous = slots == list(range(slots[0], slots[0] + len(slots)))
        if contiguous:  # views: the forward writes straight into the cache
            rows = slice(slots[0], slots[0] + len(slots))
            sub = KVCache.over(
                [k[rows] for k in c.k], [v[rows] for v in c.v], c.lengths[rows], c.max_len, window=window
            )
        else:  # copies of the rows' windows, written back below
            index = torch.tensor(slots, device=self.device)
            sub = KVCache.over(
                [k[index, :, :window] for k in c.k],
                [v[index, :, :window] for v in c.v],
                c.lengths.index_select(0, index),
                window,
                window=window,
            )
        with self._context():
            logits = self.model(padded, kv_cache=sub, logits_at=last)[:, 0]  # (N, V)
            sub.lengths.copy_(last + 1 + start)  # padding beyond a row's end is unseen, overwritten later
            if not contiguous:
                for full, part in zip(c.k + c.v, sub.k + sub.v):
                    full[:, :, :window].index_copy_(0, index, part)
                c.lengths.index_copy_(0, index, sub.lengths)
        for slot, n in zip(slots, lengths):
            self.lengths[slot] = start + n
        return logits.float()

    def step(self, tokens: Tensor, active: Tensor) -> Tensor:
        """Append tokens[s] to every slot s where active[s]; return the (S, V) fp32 logits after them
        (rows of inactive slots are meaningless). Pass `active` as a CPU tensor to spare a device sync."""
        return self.step_scored(tokens, active).logits

    def step_scored(self, tokens: Tensor, active: Tensor) -> Scored:
        """`step`, also returning each row's argmax and logsumexp, computed inside the (compiled) step."""
        columns, active = self._advance(tokens, active, steps=1)
        with self._step_context():
            # a copy made here is an inference tensor, as the tokens a run picks on the device are: the same
            # kind every call (a compiled step guards on it and would otherwise compile a second graph)
            tokens = tokens.to(self.device, torch.long, non_blocking=True, copy=True)
            return self._call(tokens, active, columns)

    def run(self, tokens: Tensor, active: Tensor, steps: int, pick) -> tuple[Tensor, Tensor]:
        """`steps` decode steps in a row with no trip to the host between them: `pick(scored, i)` turns step
        i's outputs into the (S,) tokens that step i + 1 appends. Returns the picks (S, steps) and their
        log-probabilities (S, steps). Every active slot advances `steps` positions; a row that keeps fewer
        of its picks (it finished, or a tool call interrupts it) is set back with `rewind`."""
        columns, active = self._advance(tokens, active, steps)
        picks, logprobs = [], []
        with self._step_context():
            # an inference tensor, as in `step_scored`
            tokens = tokens.to(self.device, torch.long, non_blocking=True, copy=True)
            for i in range(steps):
                out = self._call(tokens, active, columns)
                tokens = pick(out, i)  # (S,)
                logprobs.append(out.logits.gather(1, tokens.unsqueeze(1))[:, 0] - out.logsumexp)
                picks.append(tokens)
        return torch.stack(picks, 1), torch.stack(logprobs, 1)

    def rewind(self, slot: int, length: int) -> None:
        """Set the slot back to its first `length` tokens; the later keys stay, unseen, until overwritten."""
        if not 0 <= length <= self.lengths[self._check_slot(slot)]:
            raise UserError(f"slot {slot} holds {self.lengths[slot]} tokens; cannot rewind it to {length}")
        self.lengths[slot] = length
        self.cache.lengths[slot] = length

    def _advance(self, tokens: Tensor, active: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        """Check a step's inputs, move the host's lengths on by `steps` for the active slots, and return the
        attention window's columns and `active` on the device."""
        if tokens.shape != (self.num_slots,) or active.shape != (self.num_slots,):
            raise UserError(f"step takes tokens and active of shape ({self.num_slots},)")
        if self.frozen and weight_versions(self._params) != self._versions:
            raise UserError(
                "the model's weights changed after this decode step froze them; decode a model that is "
                "still training with freeze=False"
            )
        on_host = active.to("cpu", torch.bool).numpy()
        lengths = self.lengths + steps * on_host
        longest = int(lengths[on_host].max(initial=0))
        if longest == 0:
            raise UserError("step needs at least one active slot")
        if longest > self.max_len:
            full = np.flatnonzero(on_host & (lengths > self.max_len)).tolist()
            raise UserError(f"slots {full} are full ({self.max_len} positions); free them or stop them")
        self.lengths = lengths
        columns = self._columns[: attention_window(longest, self.max_len)]  # (W,) its size is the window
        if self.compiled:
            torch._dynamo.maybe_mark_dynamic(columns, 0)  # one graph for every window, not one each
        return columns, active.to(self.device, torch.long, non_blocking=True)

    def _call(self, tokens: Tensor, active: Tensor, columns: Tensor) -> Scored:
        if not self._cuda_graphs:
            return Scored(*self._decode(tokens, active, columns))
        torch.compiler.cudagraph_mark_step_begin()  # the next replay overwrites the outputs: copy them
        return Scored(*(t.clone() for t in self._decode(tokens, active, columns)))

    def _decode_eager(self, tokens: Tensor, active: Tensor, columns: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.cache.window = columns.size(0)
        before = self.cache.lengths.clone()
        logits = self.model(tokens.unsqueeze(1), kv_cache=self.cache)[:, 0].float()  # (S, V)
        self.cache.lengths.copy_(before + active)  # the forward advanced every row; keep the active ones
        return scored(logits)

    def _check_slot(self, slot: int) -> int:
        if not 0 <= slot < self.num_slots:
            raise UserError(f"slot {slot} does not exist: there are {self.num_slots} slots")
        return slot

    @contextlib.contextmanager
    def _context(self):
        with torch.inference_mode(), autocast(self.device, self.dtype):
            yield

    @contextlib.contextmanager
    def _step_context(self):
        """`_context`, and for a frozen step inductor's `freezing` switched on while it is traced and
        compiled (the compiler reads the switch when it traces, so it is on at every call that may compile)."""
        freezing = torch._inductor.config.patch(freezing=True) if self.frozen else contextlib.nullcontext()
        with freezing, self._context():
            yield


def weight_versions(params: list[Tensor]) -> list[int | None]:
    """Each parameter's version counter, which every in-place update moves (an optimizer step, a copy_).
    Tensors made in inference mode keep no counter: None, so a model built in inference mode goes unchecked."""
    return [None if p.is_inference() else p._version for p in params]


def default_decode_dtype(device: torch.device) -> torch.dtype:
    """fp32 on a CPU (autocast re-casts every weight at every step there, slower than fp32: see
    bench/results/decode.md), else the machine's compute dtype."""
    return torch.float32 if device.type == "cpu" else compute_dtype(device)


def auto_compile(compile: bool | None, device: torch.device) -> bool:
    """What a --compile / --no-compile flag means: None (the default, "auto") compiles where it can."""
    return can_compile(device) if compile is None else bool(compile)


def compile_step(fn, device: torch.device, frozen: bool = False):
    """The decode step compiled: CUDA graphs on a GPU (one launch per step); on a CPU, C++ kernels called
    from a C++ wrapper (a Python wrapper costs about 8 % of a small model's step).

    `frozen` (a CPU): the weights become constants of the step, packed once into blocks, and every matrix
    product runs inductor's own C++ GEMM kernel over them instead of the BLAS library's, whose path for a
    few rows costs twice a single row's (bench/results/decode.md). The step is 1.4-1.8x faster and takes
    longer to compile (depth 6: 38-40 s against 23-28 s); the weights must then stay as they are
    (`DecodeSlots` checks)."""
    if device.type == "cuda":
        return torch.compile(fn, mode="reduce-overhead", fullgraph=True)
    options = {"cpp_wrapper": True}
    if frozen:
        # `freezing` itself is switched on by the caller while the step is traced (`DecodeSlots._step_context`):
        # dynamo reads it then, and given here alone it freezes nothing
        options.update(max_autotune_gemm=True, max_autotune_gemm_backends="CPP")
    return torch.compile(fn, fullgraph=True, options=options)


class Engine:
    """Generates from a GPT: batched, KV-cached, with sampling, stop rules, tools and UTF-8-safe streaming."""

    def __init__(
        self,
        model,
        tokenizer,
        tool: str | None = "calculator",
        dtype: str | None = None,
        compile: bool | None = False,
        run_steps: int | None = None,
        freeze: bool = False,
    ):
        """`compile`: decode through the compiled step (DecodeSlots); None compiles where it can
        (`can_compile`); the default False decodes eagerly, the reference the compiled step is tested against.
        `freeze`: on a CPU, compile the weights into the step as constants (`compile_step`): faster, but only
        for a model whose weights no longer change (not one that RL is training).
        `run_steps`: decode steps per trip to the device, the tokens picked there (`DecodeSlots.run`);
        None: `RUN_STEPS` when compiled, else 1 (one step at a time, the reference)."""
        if model.config.vocab_size < tokenizer.vocab_size:
            raise UserError(
                f"the model has {model.config.vocab_size} token ids but the tokenizer {tokenizer.vocab_size}; "
                "they do not belong together: load the tokenizer saved with the model's checkpoint"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.tool = get_tool(tool) if tool not in (None, "none") else None
        self.device = next(model.parameters()).device
        # On a CPU, autocast re-casts every weight at every decode step, which made bf16 decoding slower than
        # fp32 here (bench/results/decode.md); so CPUs decode in fp32 unless asked otherwise.
        if dtype in (None, "auto") and self.device.type == "cpu":
            dtype = "fp32"
        self.dtype = compute_dtype(self.device, dtype)
        self.compile = auto_compile(compile, self.device)
        self.freeze = freeze
        self.run_steps = run_steps if run_steps is not None else (RUN_STEPS if self.compile else 1)
        if self.run_steps < 1:
            raise UserError(f"run_steps must be at least 1, got {run_steps}")
        self._slots: DecodeSlots | None = None  # kept between calls: a compiled step is reused
        self.stop_ids = {tokenizer.special_id(name) for name in STOP_TOKENS}
        self.python_start = tokenizer.special_id("<|python_start|>")
        self.python_end = tokenizer.special_id("<|python_end|>")
        self.output_start = tokenizer.special_id("<|output_start|>")
        self.output_end = tokenizer.special_id("<|output_end|>")

    # ---- the public API ------------------------------------------------------------------------------

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[GenerationResult]:
        """Continue every prompt (lengths may differ); rows are sampled independently."""
        *_, rows = self._steps(prompts, params)  # run to the end; every step yields the same rows
        return [row.result() for row in rows]

    def stream(self, prompt: list[int], params: SamplingParams) -> Iterator[str]:
        """Text deltas of one continuation as they are generated, tool calls and outputs included.

        Every delta is whole characters. The generator's return value (StopIteration.value, or the value of
        `result = yield from engine.stream(...)`) is the GenerationResult.
        """
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

    # ---- the decoding loop ---------------------------------------------------------------------------

    def _steps(self, prompts: list[list[int]], params: SamplingParams) -> Iterator[list[_Row]]:
        """Prefill, then decode one token per running row per step (`run_steps` of them per trip to the
        device); yield all rows after every step."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise UserError("every prompt needs at least one token (start it with tokenizer.bos_id)")
        vocab_size = self.model.config.vocab_size
        if any(not 0 <= t < vocab_size for p in prompts for t in p):
            raise UserError(
                f"prompts must hold token ids in [0, {vocab_size}); encode text with the tokenizer"
            )
        lengths = [len(p) for p in prompts]
        rope_len = self.model.config.rope_len
        if max(lengths) >= rope_len:
            raise UserError(
                f"a prompt of {max(lengths)} tokens leaves no room to generate: the model has {rope_len} "
                "positions; shorten the prompt (in a chat, start a new conversation)"
            )
        max_len = min(max(lengths) + params.max_tokens, rope_len)
        base_seed = params.seed if params.seed is not None else secrets.randbits(63)
        rows = [
            _Row(self, params, min(params.max_tokens, max_len - n), row_seed(base_seed, b))
            for b, n in enumerate(lengths)
        ]

        slots = self._decode_slots(len(prompts), max_len)
        out = scored(slots.prefill_many(list(range(len(prompts))), prompts))
        running = list(range(len(prompts)))  # the rows still generating, which are the active slots
        self._pick_tokens(out, running, rows, params)
        yield rows
        active = torch.arange(slots.num_slots) < len(prompts)  # (S,) slots past the rows stay empty
        tokens = [0] * slots.num_slots  # the next input of every slot
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
                out = slots.step_scored(torch.tensor(tokens), active)  # finished rows' outputs are ignored
                self._pick_tokens(out, running, rows, params)
                yield rows
            else:
                yield from self._run(slots, torch.tensor(tokens), active, steps, running, rows, params)

    def _run_length(self, slots: DecodeSlots, running: list[int], rows: list[_Row]) -> int:
        """How many steps the next trip to the device takes: `run_steps`, fewer if a row would outgrow its
        slot or every row ends sooner, one while a tool's output is being fed."""
        if self.run_steps == 1 or any(rows[b].forced for b in running):
            return 1
        room = min(slots.max_len - slots.length(b) for b in running)
        remaining = max(rows[b].max_tokens - len(rows[b].tokens) for b in running)
        return max(1, min(self.run_steps, room, remaining))

    def _run(self, slots, tokens, active, steps, running, rows, params) -> Iterator[list[_Row]]:
        """`steps` tokens per running row in one `DecodeSlots.run`, each picked on the device from the step
        before; then handed to the rows one position at a time, as single steps would have. A row that
        stops keeps nothing after its stop; one that finishes a tool call is set back to that token, so that
        the tool's output comes next."""
        if params.temperature == 0:
            pick = lambda out, i: out.best  # noqa: E731
        else:
            seeds = torch.tensor([rows[b].seed if b < len(rows) else 0 for b in range(slots.num_slots)])
            draws = torch.tensor(
                [len(rows[b].tokens) if b < len(rows) else 0 for b in range(slots.num_slots)]
            )
            seeds, draws = seeds.to(slots.device), draws.to(slots.device)
            pick = lambda out, i: sample(sampling_probs(out.logits, params), seeds, draws + i)  # noqa: E731
        starts = {b: slots.length(b) for b in running}  # where each row's first input of the run goes
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

    def _decode_slots(self, batch_size: int, max_len: int) -> DecodeSlots:
        """Slots for this batch, reusing the last ones when they fit (their compiled step comes along)."""
        # compiled: a power of two of slots, so that batches of 5 to 8 rows share one compiled step
        num_slots = 1 << (batch_size - 1).bit_length() if self.compile else batch_size
        slots = self._slots
        if slots is None or slots.num_slots != num_slots or slots.max_len < max_len:
            # round the length up so that the next, longer turn of a conversation fits the same slots
            config = self.model.config
            rounded = attention_window(max_len, config.rope_len, smallest=256)
            whole = 2 * config.n_layer * num_slots * config.n_kv_head * config.rope_len * config.head_dim
            if self.compile and whole * self.dtype.itemsize <= WHOLE_CONTEXT_BYTES:
                rounded = config.rope_len
            slots = DecodeSlots(
                self.model, num_slots, rounded, dtype=self.dtype, compile=self.compile, freeze=self.freeze
            )
            self._slots = slots
        for slot in range(num_slots):
            slots.free(slot)
        return slots

    def _pick_tokens(self, out: Scored, running: list[int], rows: list[_Row], params: SamplingParams) -> None:
        """Give each running row its next token: a forced one if a tool output is pending, else a sample."""
        if len(running) < out.logits.size(0):
            out = Scored(*(t[running] for t in out))
        rows = [rows[b] for b in running]
        if params.temperature == 0:
            samples = out.best.tolist()
        else:
            probs = sampling_probs(out.logits, params)  # (B, V)
            device = probs.device
            seeds = torch.tensor([row.seed for row in rows], device=device)
            draws = torch.tensor([len(row.tokens) for row in rows], device=device)
            samples = sample(probs, seeds, draws).tolist()
        forced = [bool(row.forced) for row in rows]
        picks = [row.forced.popleft() if f else s for row, f, s in zip(rows, forced, samples)]
        picked = torch.tensor(picks, device=out.logits.device).unsqueeze(1)  # (B, 1)
        logprobs = (out.logits.gather(1, picked)[:, 0] - out.logsumexp).tolist()  # log_softmax at the picks
        for row, token, was_forced, logprob in zip(rows, picks, forced, logprobs):
            row.add(token, sampled=not was_forced, logprob=logprob)

    def run_tool(self, code_ids: list[int]) -> list[int]:
        """Run the code of one tool call and return the tokens to force: <|output_start|>…<|output_end|>."""
        result = self.tool.run(self.tokenizer.decode(code_ids))
        return [self.output_start, *self.tokenizer.encode(result.output), self.output_end]


class _Row:
    """One sequence being generated: its tokens, the tool call it is writing, its text and why it ended."""

    def __init__(self, engine: Engine, params: SamplingParams, max_tokens: int, seed: int):
        self.engine = engine
        self.stops = params.stop
        self.max_tokens = max_tokens
        self.seed = seed - 2**64 if seed >= 2**63 else seed  # the 64-bit row seed as a signed int64
        self.tokens: list[int] = []
        self.mask: list[int] = []
        self.logprobs: list[float] = []
        self.forced: deque[int] = deque()  # tool output still to be fed
        self.code: list[int] | None = None  # the tool call being written, None outside one
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
            return
        if self.engine.tool is None:
            return
        if token == self.engine.python_start:
            self.code = []
        elif token == self.engine.python_end and self.code is not None:
            self.forced.extend(self.engine.run_tool(self.code))
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
        end = len(self.text)
        if not self.finish_reason:
            end -= self._stop_prefix_length()
        delta = self.text[self.streamed : max(end, self.streamed)]
        self.streamed = max(end, self.streamed)
        return delta

    def _stop_prefix_length(self) -> int:
        """Length of the longest end of the text that is the start of a stop string."""
        for length in range(min(max((len(s) for s in self.stops), default=1) - 1, len(self.text)), 0, -1):
            if any(s.startswith(self.text[-length:]) for s in self.stops):
                return length
        return 0

    def result(self) -> GenerationResult:
        return GenerationResult(
            tokens=self.tokens,
            text=self.text,
            finish_reason=self.finish_reason or "length",
            mask=self.mask,
            logprobs=self.logprobs,
            tool_calls=self.tool_calls,
        )
