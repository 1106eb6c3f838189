"""Continuous batching under load: 32 streaming clients at once all complete, each with exactly the text it
gets when it runs alone (greedy, and sampled with a seed), while the scheduler advanced them together in
four banks of slots; a bank without a running sequence is not stepped; prompts that wait together are
prefilled together."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import torch
from test_serve_fixtures import MODEL, live_server, make_scheduler, tiny_tokenizer
from tiny_models import tiny_gpt

from picochat.decode import DecodeSlots
from picochat.engine import SamplingParams
from picochat.serve.scheduler import Failed, Finished, SlotBanks, TextDelta

CLIENTS = 32
WORDS = "server queue batch step token model answer stream character request".split()


def conversation(i: int) -> list[dict]:
    """Prompts of different lengths and contents, so the clients' slots hold different things."""
    return [{"role": "user", "content": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 7))}]


def settings(i: int) -> dict:
    if i % 2:
        return dict(temperature=0, max_tokens=12 + i % 9)
    return dict(temperature=0.9, seed=1000 + i, max_tokens=12 + i % 9)


def test_32_concurrent_streams_match_their_solo_replies():
    tok = tiny_tokenizer()
    scheduler = make_scheduler(tiny_gpt(tok.vocab_size), tok, slots=CLIENTS, context=96, bank_size=8)
    with live_server(scheduler) as url:
        client = openai.OpenAI(
            base_url=url + "/v1",
            api_key="unused",
            max_retries=0,
            timeout=120,
            http_client=httpx.Client(limits=httpx.Limits(max_connections=CLIENTS + 4)),
        )

        def stream(i: int) -> tuple[str, str | None]:
            text, reason = "", None
            for chunk in client.chat.completions.create(
                model=MODEL, messages=conversation(i), stream=True, **settings(i)
            ):
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    reason = choice.finish_reason or reason
            return text, reason

        solo = [stream(i) for i in range(CLIENTS)]  # one at a time: each runs alone
        solo_batch = scheduler.max_batch
        with ThreadPoolExecutor(CLIENTS) as pool:
            together = list(pool.map(stream, range(CLIENTS)))
        assert solo_batch == 1
        assert scheduler.max_batch > 8, "the requests should have been decoded together"
        assert together == solo
        assert all(reason in ("stop", "length") for _, reason in together)
        assert httpx.get(url + "/health").json()["active_requests"] == 0


def test_banks_step_only_where_a_slot_is_active_and_match_one_bank():
    model = tiny_gpt(50)
    banks = SlotBanks(model, num_slots=8, bank_size=4, max_len=32)
    alone = DecodeSlots(model, 4, 32)
    prompt = [1, 2, 3, 4, 5]
    assert torch.equal(banks.prefill(5, prompt), alone.prefill(1, prompt))  # slot 5 = bank 1, row 1

    def untouchable(*args):
        raise AssertionError("an idle bank was stepped")

    banks.banks[0].step = untouchable
    tokens, active = torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.bool)
    tokens[5], active[5] = 7, True
    stepped = banks.step(tokens, active)  # (8, V), (8,), (8,)
    expected = alone.step(torch.tensor([0, 7, 0, 0]), torch.tensor([False, True, False, False]))
    assert all(torch.equal(a[5], b[1]) for a, b in zip(stepped, expected)) and banks.banks[1].length(1) == 6
    banks.free(5)
    assert banks.banks[1].length(1) == 0
    with pytest.raises(AssertionError, match="idle bank"):
        banks.step(torch.zeros(8, dtype=torch.long), torch.tensor([True] + [False] * 7))


def run_burst(scheduler, prompts: list[list[int]], params) -> list[str | None]:
    """Submit every prompt before the scheduler starts, so its first admission takes them all; the replies'
    texts (None for a request that failed)."""
    texts: list[str | None] = [""] * len(prompts)
    done = threading.Semaphore(0)

    def sink_for(i: int):
        def sink(event) -> None:
            if isinstance(event, TextDelta):
                texts[i] += event.text
            elif isinstance(event, Failed):
                texts[i] = None
            if isinstance(event, (Finished, Failed)):
                done.release()

        return sink

    for i, prompt in enumerate(prompts):
        scheduler.submit(prompt, params[i], 1, sink_for(i))
    scheduler.start()
    try:
        assert all(done.acquire(timeout=60) for _ in prompts)
    finally:
        scheduler.stop()
    return texts


def test_a_burst_is_prefilled_together_and_writes_the_solo_replies():
    """Six waiting prompts of different lengths go into one padded prefill pass per bank (two banks); each
    reply equals its solo one. A batch whose pass fails is retried one request at a time: only the request
    that fails alone fails."""
    tok = tiny_tokenizer()
    model = tiny_gpt(tok.vocab_size)
    prompts = [tok.render_for_completion(conversation(i)) for i in range(6)]
    params = [SamplingParams(**settings(i)) for i in range(6)]
    solo = [
        run_burst(make_scheduler(model, tok, slots=4, bank_size=4), [p], [s])[0]
        for p, s in zip(prompts, params)
    ]
    scheduler = make_scheduler(model, tok, slots=8, bank_size=4)
    passes = []
    for bank in scheduler.slots.banks:
        real = bank.prefill_many
        bank.prefill_many = lambda slots, ids, real=real: passes.append(len(slots)) or real(slots, ids)
    assert all(solo) and run_burst(scheduler, prompts, params) == solo
    assert sorted(passes) == [2, 4]  # slots 0-3 in bank 0, 4-5 in bank 1: a call each

    scheduler = make_scheduler(model, tok, slots=8, bank_size=4)
    real = scheduler.slots.prefill_many

    def fails_with_prompt_3(slots, ids):
        if prompts[3] in ids:
            raise RuntimeError("out of memory")
        return real(slots, ids)

    scheduler.slots.prefill_many = fails_with_prompt_3
    assert run_burst(scheduler, prompts, params) == solo[:3] + [None] + solo[4:]
