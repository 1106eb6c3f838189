"""The engine's fast path: decode slots of static shapes, so that one compiled step (CUDA graphs on a GPU)
serves every step, and runs of several steps with the tokens picked on the device.

    slots = DecodeSlots(model, num_slots=8, max_len=1024)
    logits = slots.prefill(0, prompt_ids)          # (V,) after the prompt; slot 0 now holds it
    out = slots.step(tokens, active)               # Scored: (S, V) logits after one token per active slot

The eager step is the reference for the compiled and frozen steps. S slots, W window, V vocab."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from picochat.errors import UserError
from picochat.model import GPTConfig, KVCache
from picochat.runtime import autocast, can_compile, compute_dtype

# decode steps per trip to the device in a compiled engine: the host's work (picking, the rows' bookkeeping,
# entering the compiled call) is paid once per run; a row that ends inside a run wastes at most 7 steps
RUN_STEPS = 8
# a compiled engine whose slots' cache for the whole context fits in this many bytes makes them that long at
# once: a chat growing past 256, 512, ... tokens keeps its slots and compiled step (attention reads a window)
WHOLE_CONTEXT_BYTES = 64 * 2**20
# held by eager steps and by torch.fx's tracer, which patches torch.nn.Module.__call__ for every thread while
# it runs (inductor traces with it as it compiles): an eager step on another thread would run into the patch
STEP_LOCK = threading.RLock()
# positions (rows × padded length) one prefill pass of several prompts may take: bounds its activations
PREFILL_TOKENS = 8192


class DecodeSlots:
    """`num_slots` sequences decoded side by side over one static-shape KV cache. Every step runs all rows
    with the same shapes (inactive rows are ignored) over a window that grows in powers of two, so a compiled
    step is reused; a row's logits never depend on the other slots. Lengths are also kept on the host, so no
    step waits for the device. `freeze`: see `compile_step`."""

    def __init__(self, model, num_slots: int, max_len: int, dtype=None, compile=False, freeze=False):
        if num_slots < 1:
            raise UserError(f"num_slots must be at least 1, got {num_slots}")
        rope_len = model.config.rope_len
        if not 1 <= max_len <= rope_len:
            raise UserError(f"max_len must be in [1, {rope_len}] (the model's positions), got {max_len}")
        self.model, self.num_slots, self.max_len = model, num_slots, max_len
        self.vocab_size = model.config.vocab_size
        self.device = next(model.parameters()).device
        self.dtype = dtype if dtype is not None else decode_dtype(self.device)
        self.cache = StaticKVCache.empty(model.config, num_slots, max_len, self.device, self.dtype)
        self.lengths = np.zeros(num_slots, dtype=np.int64)  # the host's copy of cache.lengths
        self._columns = torch.arange(max_len, device=self.device)
        self.compiled = compile and can_compile(self.device)
        self.frozen = self.compiled and freeze and self.device.type == "cpu"
        self._params = list(model.parameters())
        self._versions = weight_versions(self._params) if self.frozen else None  # what the step froze
        self._decode = self._decode_eager
        if self.compiled:
            self._decode = compile_step(self._decode_eager, self.device, self.frozen)
        self._cuda_graphs = self.compiled and self.device.type == "cuda"
        if self._cuda_graphs:  # CUDA graphs replay on fixed addresses: the cache is updated where it lies
            tokens = () if self.cache.tokens is None else (self.cache.tokens,)
            for t in (*self.cache.k, *self.cache.v, self.cache.lengths, self._columns, *tokens):
                torch._dynamo.mark_static_address(t)

    def length(self, slot: int) -> int:
        return int(self.lengths[self._check_slot(slot)])

    def free(self, slot: int) -> None:
        self.rewind(slot, 0)

    def rewind(self, slot: int, length: int) -> None:
        """Set the slot back to its first `length` tokens (later keys stay, unseen, until overwritten)."""
        if not 0 <= length <= self.lengths[self._check_slot(slot)]:
            raise UserError(f"slot {slot} holds {self.lengths[slot]} tokens; cannot rewind it to {length}")
        self.lengths[slot] = self.cache.lengths[slot] = length

    def prefill(self, slot: int, ids: list[int]) -> Tensor:
        """Append `ids` to the slot in one forward pass; return the fp32 logits (V,) after the last one."""
        return self.prefill_many([slot], [ids])[0]

    def prefill_many(self, slots: list[int], ids: list[list[int]]) -> Tensor:
        """`prefill` for distinct slots, right-padded into one pass per starting length: (N, V) fp32."""
        slots = [self._check_slot(s) for s in slots]
        if len(set(slots)) != len(slots) or len(slots) != len(ids):
            raise UserError("prefill_many needs distinct slots, one list of ids per slot")
        for slot, row in zip(slots, ids):
            if len(row) == 0:
                raise UserError("every prefill needs at least one token")
            if not all(0 <= t < self.vocab_size for t in row):
                raise UserError(
                    f"token ids must be in [0, {self.vocab_size}); encode text with the tokenizer"
                )
            if self.lengths[slot] + len(row) > self.max_len:
                raise UserError(
                    f"slot {slot} holds {self.lengths[slot]} tokens; {len(row)} more exceed its "
                    f"{self.max_len} positions"
                )
        logits = torch.empty(len(slots), self.vocab_size, device=self.device)
        starts = [int(self.lengths[slot]) for slot in slots]
        for group in prefill_passes(starts, [len(row) for row in ids]):
            start = starts[group[0]]
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
            tokens = None if c.tokens is None else c.tokens[rows]
            sub = StaticKVCache(
                [k[rows] for k in c.k], [v[rows] for v in c.v], c.lengths[rows], c.max_len, window, tokens
            )
        else:  # copies of the rows' windows, written back below
            index = torch.tensor(slots, device=self.device)
            k, v = [t[index, :, :window] for t in c.k], [t[index, :, :window] for t in c.v]
            tokens = None if c.tokens is None else c.tokens[index, :window]
            sub = StaticKVCache(k, v, c.lengths.index_select(0, index), window, window, tokens)
        with self._context():
            logits = self.model(padded, kv_cache=sub, logits_at=last)[:, 0]  # (N, V)
            sub.lengths.copy_(last + 1 + start)  # padding beyond a row's end is unseen, overwritten later
            if not contiguous:
                for full, part in zip(c.k + c.v, sub.k + sub.v):
                    full[:, :, :window].index_copy_(0, index, part)
                c.lengths.index_copy_(0, index, sub.lengths)
                if c.tokens is not None:
                    c.tokens[:, :window].index_copy_(0, index, sub.tokens)
        for slot, n in zip(slots, lengths):
            self.lengths[slot] = start + n
        return logits.float()

    def step(self, tokens: Tensor, active: Tensor) -> Scored:
        """Append tokens[s] to every slot s where active[s]; return the (S, V) fp32 logits with argmax and
        logsumexp (inactive rows meaningless). A CPU `active` spares a device sync."""
        columns, active = self._advance(tokens, active, steps=1)
        with self._context():
            return self._call(self._device_tokens(tokens), active, columns)

    def run(self, tokens: Tensor, active: Tensor, steps: int, pick) -> tuple[Tensor, Tensor]:
        """`steps` decode steps with no trip to the host: `pick(scored, i)` gives the (S,) tokens step i + 1
        appends. Returns the picks and their log-probabilities, (S, steps) each; a row that keeps fewer
        picks is set back with `rewind`."""
        columns, active = self._advance(tokens, active, steps)
        picks, logprobs = [], []
        with self._context():
            tokens = self._device_tokens(tokens)
            for i in range(steps):
                out = self._call(tokens, active, columns)
                tokens = pick(out, i)  # (S,)
                logprobs.append(out.logits.gather(1, tokens.unsqueeze(1))[:, 0] - out.logsumexp)
                picks.append(tokens)
        return torch.stack(picks, 1), torch.stack(logprobs, 1)

    def _device_tokens(self, tokens: Tensor) -> Tensor:
        # a copy is an inference tensor, like a run's picks: one kind every call, else a second graph
        return tokens.to(self.device, torch.long, non_blocking=True, copy=True)

    def _advance(self, tokens: Tensor, active: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        """Check a step's inputs, advance the active slots' host lengths; the window's columns, `active`."""
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
        with torch.inference_mode():  # an inference tensor whatever the caller's mode: one graph, not two
            active = active.to(self.device, torch.long, non_blocking=True, copy=True)
        return columns, active

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
        """Inference mode and autocast; for a frozen step, inductor's `freezing` (read when it traces)."""
        freezing = torch._inductor.config.patch(freezing=True) if self.frozen else contextlib.nullcontext()
        alone = contextlib.nullcontext() if self.compiled else STEP_LOCK
        with alone, freezing, torch.inference_mode(), autocast(self.device, self.dtype):
            yield


class StaticKVCache(KVCache):
    """A KV cache of static shapes: attention reads the first `window` positions, masked per row, and
    positions are clamped, so no shape depends on `lengths`. `k`, `v`: one (B, G, S, D) per layer; `tokens`
    (B, S) for a model with smear (`KVCache.previous_tokens`)."""

    def __init__(self, k: list[Tensor], v: list[Tensor], lengths: Tensor, max_len: int, window, tokens=None):
        self.k, self.v, self.lengths, self.max_len, self.window = k, v, lengths, max_len, window
        self.tokens = tokens

    @classmethod
    def empty(cls, config: GPTConfig, batch_size: int, max_len: int, device, dtype) -> StaticKVCache:
        """One tensor per layer, each updated in place by a compiled step (a slice of one shared tensor gets
        copied); a spare position keeps every window a strict slice (else the compiler specialises)."""
        shape = (batch_size, config.n_kv_head, max_len + 1, config.head_dim)
        k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        v = [torch.zeros_like(t) for t in k]
        lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        tokens = (
            torch.zeros(batch_size, max_len + 1, dtype=torch.long, device=device) if config.smear else None
        )
        return cls(k, v, lengths, max_len, window=None, tokens=tokens)

    def positions(self, T: int) -> Tensor:
        return super().positions(T).clamp(max=self.max_len - 1)  # (B, T) a full idle row writes in place

    def store(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.write(layer, k, v, self.positions(k.size(2)), self.window)


class Scored(NamedTuple):
    """Logits with what every pick needs: the greedy token and log p(t) = logits[t] − logsumexp."""

    logits: Tensor  # (S, V) fp32
    best: Tensor  # (S,) argmax
    logsumexp: Tensor  # (S,)


def scored(logits: Tensor) -> Scored:
    return Scored(logits, logits.argmax(dim=-1), torch.logsumexp(logits, dim=-1))


def prefill_passes(starts: list[int], lengths: list[int], budget: int = PREFILL_TOKENS) -> list[list[int]]:
    """Rows (indices) grouped into right-padded passes: one starting position per pass (so no padding runs
    past the cache), each row at least half its pass's longest (padding at most doubles the work), and at
    most `budget` positions a pass unless a row alone is longer."""
    passes: list[list[int]] = []
    for i in sorted(range(len(starts)), key=lambda i: (starts[i], -lengths[i])):
        group = passes[-1] if passes else [i]
        longest = lengths[group[0]]
        fits = starts[group[0]] == starts[i] and 2 * lengths[i] >= longest
        if passes and fits and (len(group) + 1) * longest <= budget:
            group.append(i)
        else:
            passes.append([i])
    return passes


def attention_window(length: int, max_len: int, smallest: int = 64) -> int:
    """The attention window for rows up to `length` tokens: the next power of two (at least `smallest`),
    capped at `max_len`; few windows, few compiled graphs."""
    window = smallest
    while window < length:
        window *= 2
    return min(window, max_len)


def slots_shape(config: GPTConfig, batch_size: int, max_len: int, dtype: torch.dtype, compile: bool):
    """(num_slots, max_len) for a batch: compiled, a power of two of slots (batches of 5 to 8 share a step);
    the length rounded up so a conversation's next turn fits (the whole context if its cache is small)."""
    num_slots = 1 << (batch_size - 1).bit_length() if compile else batch_size
    whole = 2 * config.n_layer * num_slots * config.n_kv_head * config.rope_len * config.head_dim
    if compile and whole * dtype.itemsize <= WHOLE_CONTEXT_BYTES:
        return num_slots, config.rope_len
    return num_slots, attention_window(max_len, config.rope_len, smallest=256)


def warm_up(slots: DecodeSlots) -> list[int]:
    """One step at every attention window the slots use, so a compiled step traces and compiles each shape
    now rather than inside a user's request; the slots are left empty. Returns the windows."""
    windows = sorted({attention_window(n, slots.max_len) for n in range(1, slots.max_len + 1)})
    tokens = torch.zeros(slots.num_slots, dtype=torch.long)  # (S,)
    active = torch.arange(slots.num_slots) == 0  # (S,) only slot 0 reads a window
    for window in windows:
        slots.lengths[0] = slots.cache.lengths[0] = window - 1  # the step writes position window - 1
        slots.step(tokens, active)
    slots.free(0)
    return windows


class WarmSlots:
    """Compiled slots for one sequence over the whole context (weights frozen in on a CPU), built and warmed
    on a thread of their own while the caller goes on decoding eagerly; `take()` gives them once warm."""

    def __init__(self, model, dtype: torch.dtype):
        fx_tracing_takes_step_lock()
        self.slots: DecodeSlots | None = None
        self.error: Exception | None = None
        self.seconds: float | None = None  # how long building and warming took
        self._thread = threading.Thread(target=self._build, args=(model, dtype), name="picochat-warm-up")
        self._thread.daemon = True  # leaving the chat never waits for a compilation
        self._thread.start()

    def _build(self, model, dtype: torch.dtype) -> None:
        num_slots, max_len = slots_shape(model.config, 1, model.config.rope_len, dtype, compile=True)
        start = time.perf_counter()
        with contextlib.suppress(AttributeError, OSError):  # Linux: a thread's own priority; the compiler's
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # workers inherit it
        try:
            slots = DecodeSlots(model, num_slots, max_len, dtype, compile=True, freeze=True)
            warm_up(slots)
            self.slots, self.seconds = slots, time.perf_counter() - start
        except Exception as error:  # the eager step goes on serving; nothing is lost
            self.error = error

    def take(self) -> DecodeSlots | None:
        return None if self._thread.is_alive() else self.slots

    def wait(self, timeout_s: float | None = None) -> DecodeSlots | None:
        self._thread.join(timeout_s)
        return self.take()


def fx_tracing_takes_step_lock() -> None:
    """torch.fx's `Tracer.trace` made to hold STEP_LOCK, so a compilation on one thread pauses eager steps
    on another only while it traces (short), not for the whole compilation."""
    trace = torch.fx.Tracer.trace
    if getattr(trace, "takes_step_lock", False):
        return

    def trace_alone(self, *args, **kwargs):
        with STEP_LOCK:
            return trace(self, *args, **kwargs)

    trace_alone.takes_step_lock = True
    torch.fx.Tracer.trace = trace_alone


def weight_versions(params: list[Tensor]) -> list[int | None]:
    """Each parameter's version counter, moved by every in-place update; None for inference tensors."""
    return [None if p.is_inference() else p._version for p in params]


def decode_dtype(device: torch.device, name: str | None = None) -> torch.dtype:
    """The dtype named, else fp32 on a CPU (autocast's re-casts cost more than bf16 saves:
    bench/results/decode.md), else the machine's compute dtype."""
    if name in (None, "auto") and device.type == "cpu":
        return torch.float32
    return compute_dtype(device, name)


def auto_compile(compile: bool | None, device: torch.device) -> bool:
    """What a --compile / --no-compile flag means: None (the default, "auto") compiles where it can."""
    return can_compile(device) if compile is None else bool(compile)


def compile_step(fn, device: torch.device, frozen: bool = False):
    """The decode step compiled: CUDA graphs on a GPU; on a CPU, C++ kernels behind a C++ wrapper. `frozen`
    (a CPU): the weights become constants and matmuls run inductor's C++ GEMM instead of BLAS, slow for a
    few rows (bench/results/decode.md); the weights must then stay put."""
    if device.type == "cuda":
        return torch.compile(fn, mode="reduce-overhead", fullgraph=True)
    options = {"cpp_wrapper": True}
    if frozen:  # `freezing` itself is switched on while tracing (`DecodeSlots._context`)
        options.update(max_autotune_gemm=True, max_autotune_gemm_backends="CPP")
    return torch.compile(fn, fullgraph=True, options=options)
