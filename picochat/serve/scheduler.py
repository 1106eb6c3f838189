"""Continuous batching: one thread owns the model and advances every running request together.

    submit ──► bounded queue ──► admit: prefill the prompts the free slots can take, together (first logits)
                 ┌────────────────►│
                 │  pick: each running sequence takes its next token (`engine.add_next_tokens`); deltas go out
                 │  leave: a finished or cancelled sequence frees its slot at once
                 └── step: one forward pass per bank in use appends the picked tokens of the running slots

A request asks for `n` choices of one prompt, each an `engine.Row` in a slot of its own; it joins between two
steps once `n` slots are free. Choice i is seeded as `Engine.generate` seeds row i, and a slot's steps
never depend on the other slots (`SlotBanks`; the prompts admitted together share padded prefill passes,
which moves the first logits by float rounding at most), so a seeded request gives the same text alone or
beside others. Events reach a request through its `sink` (called on the scheduler thread; it must not block).
A choice may carry a `TokenMask` (structured output: `structured.apply_masks` before the pick) and report
each token's log p with the likeliest alternatives (`TokenLogprob`).
Shapes: S slots, B slots per bank, R running sequences, V vocab.
"""

from __future__ import annotations

import heapq
import math
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from picochat.decode import DecodeSlots, Scored, scored
from picochat.engine import Engine, Row, SamplingParams, add_next_tokens, row_seed
from picochat.serve.structured import TokenMask, apply_masks

BANK_SIZE = 32  # slots per DecodeSlots bank: a step runs only the banks in use
LOWEST_LOGPROB = -9999.0  # what OpenAI reports for a token of probability 0 (JSON has no -inf)


@dataclass(frozen=True)
class TokenLogprob:
    """A token's log p (at temperature 1, before any filter) and the `top` likeliest (token, log p) there."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """New text of choice `index`: whole characters, tool calls with their <|python_start|>… markers; the
    tokens taken since the last delta with their log p, if the request asked."""

    index: int
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Finished:
    """Choice `index` is complete. reason: "stop" (end of reply or a stop string) or "length"."""

    index: int
    reason: str
    completion_tokens: int
    tool_calls: int


@dataclass(frozen=True)
class Failed:
    """The request failed (an error inside the model); no more events follow."""

    message: str


Event = TextDelta | Finished | Failed


class QueueFull(Exception):
    pass


class Request:
    """A prompt to continue `n` times; the scheduler sends its events to `sink`. `top_logprobs`: None, or
    report each token's log p and this many alternatives; `mask`: makes each choice's TokenMask;
    `prompt_logprobs`: the prompt's tokens' log p too, set in `prompt_logprobs` before the first event."""

    def __init__(
        self,
        prompt: list[int],
        params: SamplingParams,
        n: int,
        sink: Callable[[Event], None],
        top_logprobs: int | None = None,
        mask: Callable[[], TokenMask] | None = None,
        prompt_logprobs: bool = False,
    ):
        self.prompt, self.params, self.n, self.sink = prompt, params, n, sink
        self.top_logprobs, self.mask = top_logprobs, mask
        self.prompt_logprobs: list[TokenLogprob | None] | None = [] if prompt_logprobs else None
        self.cancelled = False  # set by any thread; the scheduler drops the request at its next step

    def cancel(self) -> None:
        self.cancelled = True


class _Sequence:
    def __init__(self, request: Request, index: int, slot: int, row: Row):
        self.request, self.index, self.slot, self.row = request, index, slot, row
        self.mask = request.mask() if request.mask else None
        self.logprobs: list[TokenLogprob] = []  # of the tokens whose text is not sent yet


class Scheduler:
    """Owns `engine.model` on a thread of its own; `submit` requests from any thread."""

    def __init__(
        self, engine: Engine, num_slots=32, context: int | None = None, max_queue=64, bank_size=BANK_SIZE
    ):
        rope_len = engine.model.config.rope_len
        self.engine, self.max_queue = engine, max_queue
        self.context = min(context or rope_len, rope_len)  # the longest prompt + reply, in tokens
        model, dtype, compile, freeze = engine.model, engine.dtype, engine.compile, engine.freeze
        self.slots = SlotBanks(model, num_slots, bank_size, self.context, dtype, compile, freeze)
        self.num_slots = num_slots = self.slots.num_slots  # whole banks
        self._queue: deque[Request] = deque()
        self._lock = threading.Condition()
        self._free = list(range(num_slots))  # a heap: the lowest free slot first, so the first banks fill
        self._running: list[_Sequence] = []
        self._out = self.slots.zeros()  # each slot's logits for its next token, with argmax and logsumexp
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="picochat-scheduler", daemon=True)
        self.steps = 0  # decode steps taken (a forward pass per bank in use)
        self.max_batch = 0  # the most sequences one step has advanced together

    def start(self) -> Scheduler:
        if not self._thread.is_alive() and not self._stopping:
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def submit(
        self, prompt: list[int], params: SamplingParams, n: int, sink: Callable[[Event], None], **options
    ) -> Request:
        """Queue a request (`options`: Request's); raise QueueFull when `max_queue` requests already wait for
        a slot (those a free slot takes at the next step do not count: `slots + max_queue` are admitted)."""
        if not 1 <= n <= self.num_slots:
            raise ValueError(f"n={n} choices need n slots; this scheduler has {self.num_slots}")
        if len(prompt) + 1 > self.context:
            raise ValueError(
                f"a prompt of {len(prompt)} tokens leaves no room in a {self.context}-token context"
            )
        request = Request(prompt, params, n, sink, **options)
        with self._lock:
            if len(self._queue) >= self.max_queue + len(self._free):
                raise QueueFull(f"{len(self._queue) - len(self._free)} requests are waiting already")
            self._queue.append(request)
            self._lock.notify()
        return request

    @property
    def active_requests(self) -> int:
        return len({id(seq.request) for seq in list(self._running)})

    @property
    def queued_requests(self) -> int:
        return len(self._queue)

    @torch.inference_mode()  # every tensor the scheduler makes is an inference tensor
    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._running and not self._queue:
                    self._lock.wait()
                if self._stopping:
                    break
            for seq in [seq for seq in self._running if seq.request.cancelled]:
                self._leave(seq)
            self._admit()
            if self._running:
                self._decode()
        for seq in list(self._running):
            self._leave(seq)
        for request in self._queue:
            request.sink(Failed("the server is shutting down"))

    def _admit(self) -> None:
        """Prefill the queued requests (oldest first) that the free slots can take, together; if that fails,
        each alone, so that only a request failing by itself fails."""
        admitted = self._take_admissible()
        if len(admitted) > 1 and self._try_prefill(admitted, report=False):
            return
        for one in admitted:
            self._try_prefill([one], report=True)

    def _take_admissible(self) -> list[tuple[Request, list[int]]]:
        """Pop the queued requests, oldest first, while enough slots are free for all their choices."""
        admitted = []
        with self._lock:
            while self._queue and (self._queue[0].cancelled or len(self._free) >= self._queue[0].n):
                request = self._queue.popleft()
                if not request.cancelled:
                    admitted.append((request, [heapq.heappop(self._free) for _ in range(request.n)]))
        return admitted

    def _try_prefill(self, admitted: list[tuple[Request, list[int]]], report: bool) -> bool:
        try:
            self._prefill(admitted)
            return True
        except Exception as error:  # a bug or an out-of-memory: the server lives
            for request, slots in admitted:
                for slot in slots:
                    self.slots.free(slot)
                self._running = [seq for seq in self._running if seq.request is not request]
                if report:
                    with self._lock:
                        for slot in slots:
                            heapq.heappush(self._free, slot)
                    request.sink(Failed(f"generation failed: {error}"))
            return False

    def _prefill(self, admitted: list[tuple[Request, list[int]]]) -> None:
        """Prefill each request's prompt into each of its slots, in padded passes of several prompts
        (`DecodeSlots.prefill_many`); the first logits depend on the prompt alone, up to float rounding."""
        slots = [slot for _, request_slots in admitted for slot in request_slots]
        prompts = [request.prompt for request, request_slots in admitted for _ in request_slots]
        first = scored(self.slots.prefill_many(slots, prompts))  # (N, V), (N,), (N,)
        for full, rows in zip(self._out, first):
            full[slots] = rows
        for request, request_slots in admitted:
            self._start(request, request_slots)

    def _start(self, request: Request, slots: list[int]) -> None:
        params = request.params
        max_tokens = min(params.max_tokens, self.context - len(request.prompt))
        base_seed = params.seed if params.seed is not None else secrets.randbits(63)
        if request.prompt_logprobs is not None:
            request.prompt_logprobs = self._prompt_logprobs(request.prompt, request.top_logprobs or 0)
        for index, slot in enumerate(slots):
            row = Row(self.engine, params, max_tokens, row_seed(base_seed, index))
            self._running.append(_Sequence(request, index, slot, row))

    def _prompt_logprobs(self, prompt: list[int], k: int) -> list[TokenLogprob | None]:
        """Each prompt token's log p given the tokens before it (None for the first), from one pass."""
        logits = self.engine.model(torch.tensor([prompt], device=self.engine.device))[0].float()  # (T, V)
        logsumexp = torch.logsumexp(logits, dim=-1)  # (T,)
        return [None] + [
            token_logprob(logits[t - 1], logsumexp[t - 1], prompt[t], k) for t in range(1, len(prompt))
        ]

    def _decode(self) -> None:
        """Every running sequence picks its next token; the finished leave; the rest take one step."""
        running = list(self._running)
        try:  # every running sequence takes its next token, under its own request's settings
            index = torch.tensor([seq.slot for seq in running])
            out = Scored(*(t[index] for t in self._out))  # (R, V), (R,), (R,)
            out = apply_masks(out, [seq.mask for seq in running])
            add_next_tokens([seq.row for seq in running], out, [seq.request.params for seq in running])
            for i, seq in enumerate(running):
                self._took(seq, out, i)
        except Exception as error:
            self._fail_running(error)
            return
        for seq in running:
            row = seq.row
            delta = row.take_text()
            if delta or (row.finish_reason and seq.logprobs):
                seq.request.sink(TextDelta(seq.index, delta, tuple(seq.logprobs)))
                seq.logprobs.clear()
            if row.finish_reason:
                self._finish(seq)
        if not self._running:
            return
        tokens = torch.zeros(self.num_slots, dtype=torch.long)  # (S,)
        active = torch.zeros(self.num_slots, dtype=torch.bool)  # (S,)
        for seq in self._running:
            tokens[seq.slot] = seq.row.tokens[-1]
            active[seq.slot] = True
        try:
            self._out = self.slots.step(tokens, active)  # (S, V), (S,), (S,)
        except Exception as error:
            self._fail_running(error)
            return
        self.steps += 1
        self.max_batch = max(self.max_batch, len(self._running))

    def _took(self, seq: _Sequence, out: Scored, i: int) -> None:
        """Tell the sequence's mask its new token; keep its log p if asked (not a final stop token's)."""
        token, k = seq.row.tokens[-1], seq.request.top_logprobs
        if seq.mask is not None:
            seq.mask.consume(token)
        if k is not None and not (seq.row.finish_reason == "stop" and token in self.engine.stop_ids):
            seq.logprobs.append(token_logprob(out.logits[i], out.logsumexp[i], token, k))

    def _finish(self, seq: _Sequence) -> None:
        row = seq.row
        reason = "length" if (row.finish_reason or "length") == "length" else "stop"
        seq.request.sink(Finished(seq.index, reason, len(row.tokens), row.tool_calls))
        self._leave(seq)

    def _leave(self, seq: _Sequence) -> None:
        self._running.remove(seq)
        self.slots.free(seq.slot)
        with self._lock:
            heapq.heappush(self._free, seq.slot)

    def _fail_running(self, error: Exception) -> None:
        failed = {id(seq.request): seq.request for seq in self._running}
        for seq in list(self._running):
            self._leave(seq)
        for request in failed.values():
            request.sink(Failed(f"generation failed: {error}"))


def token_logprob(logits: Tensor, logsumexp: Tensor, token: int, k: int) -> TokenLogprob:
    """log p(token) = logits[token] − logsumexp, and the k likeliest tokens' log p, from logits (V,)."""
    top = torch.topk(logits, k) if k else None
    pairs = zip(top.indices.tolist(), (top.values - logsumexp).tolist()) if top is not None else ()
    logprob = float(logits[token] - logsumexp)
    clamp = lambda lp: max(lp, LOWEST_LOGPROB)  # noqa: E731
    return TokenLogprob(token, clamp(logprob), tuple((t, clamp(lp)) for t, lp in pairs))


class SlotBanks:
    """`num_slots` decoding slots (whole banks of `bank_size` DecodeSlots rows). `DecodeSlots` runs all its
    rows at every step, so a row never depends on the others; one bank of 32 would make a lone user pay for
    32 rows. With banks (the lowest free slot first) a step's cost follows the load."""

    def __init__(self, model, num_slots, bank_size, max_len, dtype=None, compile=False, freeze=False):
        self.bank_size = min(bank_size, num_slots)
        count = math.ceil(num_slots / self.bank_size)
        self.banks = [
            DecodeSlots(model, self.bank_size, max_len, dtype, compile, freeze) for _ in range(count)
        ]
        self.num_slots, self.vocab_size = count * self.bank_size, model.config.vocab_size

    def zeros(self) -> Scored:
        """Logits (S, V) with their argmax (S,) and logsumexp (S,), all 0, on the host."""
        S = self.num_slots
        return Scored(torch.zeros(S, self.vocab_size), torch.zeros(S, dtype=torch.long), torch.zeros(S))

    def prefill(self, slot: int, ids: list[int]) -> Tensor:
        return self.banks[slot // self.bank_size].prefill(slot % self.bank_size, ids)

    def prefill_many(self, slots: list[int], ids: list[list[int]]) -> Tensor:
        """`DecodeSlots.prefill_many` for slots of any banks, a call per bank: (N, V) fp32 on the host."""
        B, logits = self.bank_size, torch.empty(len(slots), self.vocab_size)
        for b, bank in enumerate(self.banks):
            mine = [i for i, slot in enumerate(slots) if slot // B == b]
            if mine:
                logits[mine] = bank.prefill_many([slots[i] % B for i in mine], [ids[i] for i in mine]).cpu()
        return logits

    def step(self, tokens: Tensor, active: Tensor) -> Scored:
        """`DecodeSlots.step` over all slots, one forward pass per bank with an active slot."""
        B, out = self.bank_size, self.zeros()
        for b, bank in enumerate(self.banks):
            rows = slice(b * B, (b + 1) * B)
            if active[rows].any():
                for full, part in zip(out, bank.step(tokens[rows], active[rows])):  # (B, V), (B,), (B,)
                    full[rows] = part.cpu()
        return out

    def free(self, slot: int) -> None:
        self.banks[slot // self.bank_size].free(slot % self.bank_size)
