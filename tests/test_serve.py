"""The server through the official `openai` client and plain HTTP: replies equal the engine's, seeds give
the same text, streams end with [DONE] and carry usage, stop strings and max_tokens hold, the calculator
runs server-side, and every error comes back in OpenAI's shape with the right status."""

import json
import logging
import threading
import time

import httpx
import openai
import pytest
import torch
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_serve_fixtures import MODEL, live_server, make_scheduler, tiny_tokenizer, wait_until
from tiny_models import ScriptedModel, tiny_gpt

import picochat.decode
import picochat.serve.app
from picochat.engine import Engine, SamplingParams
from picochat.runtime import can_compile
from picochat.serve.app import create_app
from picochat.serve.scheduler import Finished, Scheduler, TextDelta

QUESTION = [{"role": "user", "content": "What is 2+3?"}]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_gpt(tok.vocab_size)


@pytest.fixture(scope="module")
def engine(model, tok):
    return Engine(model, tok, tool="calculator", dtype="fp32")


@pytest.fixture(scope="module")
def server(model, tok):
    with live_server(make_scheduler(model, tok, slots=8, context=128)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=60)


def engine_texts(engine, prompt, n, **params):
    return [r.text for r in engine.generate([prompt] * n, SamplingParams(**params))]


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == [MODEL]
    health = httpx.get(server + "/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL and health["active_requests"] == 0
    assert health["slots"] == 8 and health["context"] == 128


def test_greedy_reply_equals_the_engine(client, engine, tok):
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=20)
    prompt = tok.render_for_completion(QUESTION)
    expected = engine.generate([prompt], SamplingParams(max_tokens=20, temperature=0))[0]
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == ("length" if expected.finish_reason == "length" else "stop")
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.usage.completion_tokens == len(expected.tokens)
    assert reply.usage.total_tokens == len(prompt) + len(expected.tokens)


def test_n_choices_with_a_seed_are_the_engines_rows(client, engine, tok):
    reply = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=1.0, top_p=0.9, seed=7, n=3, max_tokens=12
    )
    prompt = tok.render_for_completion(QUESTION)
    expected = engine_texts(engine, prompt, 3, max_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    assert [c.message.content for c in reply.choices] == expected
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len(set(expected)) > 1  # sampled rows differ, so the test would notice a mix-up
    again = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=1.0, top_p=0.9, seed=7, n=3, max_tokens=12
    )
    assert [c.message.content for c in again.choices] == expected


def test_the_scheduler_picks_the_engines_tokens_under_mixed_settings(model, tok, engine):
    """Requests with different settings decode side by side, each row under its own (`pick_tokens` per
    row); every choice writes the engine's row with the same seed: the same text from as many tokens."""
    settings = [
        dict(temperature=0.8, top_k=20, seed=1),
        dict(temperature=1.2, min_p=0.05, seed=2),
        dict(temperature=0),
        dict(temperature=1.0, top_p=0.7, seed=3),
    ]
    prompt = tok.render_for_completion(QUESTION)
    texts, counts, finished = {}, {}, threading.Semaphore(0)

    def sink_for(i: int):
        def sink(event) -> None:
            if isinstance(event, TextDelta):
                texts[i, event.index] = texts.get((i, event.index), "") + event.text
            elif isinstance(event, Finished):
                counts[i, event.index] = event.completion_tokens
                finished.release()

        return sink

    scheduler = make_scheduler(model, tok, slots=8, context=128).start()
    try:
        for i, setting in enumerate(settings):
            scheduler.submit(prompt, SamplingParams(max_tokens=16, **setting), 2, sink_for(i))
        assert all(finished.acquire(timeout=60) for _ in range(2 * len(settings)))
    finally:
        scheduler.stop()
    for i, setting in enumerate(settings):
        rows = engine.generate([prompt] * 2, SamplingParams(max_tokens=16, **setting))
        assert [texts.get((i, c), "") for c in range(2)] == [r.text for r in rows]
        assert [counts[i, c] for c in range(2)] == [len(r.tokens) for r in rows]


def test_streaming_equals_the_whole_reply_and_reports_usage(client):
    kwargs = dict(model=MODEL, messages=QUESTION, temperature=0, max_tokens=24, n=2)
    whole = client.chat.completions.create(**kwargs)
    stream = client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    texts, reasons, usage = ["", ""], [None, None], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            reasons[choice.index] = choice.finish_reason or reasons[choice.index]
    assert texts == [c.message.content for c in whole.choices]
    assert reasons == [c.finish_reason for c in whole.choices]
    assert usage is not None and usage.model_dump() == whole.usage.model_dump()


def test_sse_wire_format_ends_with_done(server):
    body = {"messages": QUESTION, "max_tokens": 5, "stream": True}
    with httpx.stream("POST", server + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0][6:])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"


def test_stop_strings_and_max_tokens(client, engine, tok):
    prompt = tok.render_for_completion(QUESTION)
    full = engine.generate([prompt], SamplingParams(max_tokens=40, temperature=0))[0].text
    assert len(full) > 6, "the tiny model should write something to cut"
    stop = full[3:5]
    cut = full[: full.index(stop)]
    reply = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=40, stop=[stop]
    )
    assert reply.choices[0].message.content == cut and reply.choices[0].finish_reason == "stop"
    short = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_completion_tokens=3
    )
    expected = engine.generate([prompt], SamplingParams(max_tokens=3, temperature=0))[0]
    assert short.choices[0].message.content == expected.text
    assert short.usage.completion_tokens == len(expected.tokens) <= 3
    assert short.choices[0].finish_reason == ("length" if expected.finish_reason == "length" else "stop")


def test_completions_for_base_models(client, engine, tok):
    prompt = tok.encode("A server answers", prepend=tok.bos_id)
    expected = engine_texts(engine, prompt, 1, max_tokens=10, temperature=0)[0]
    reply = client.completions.create(model=MODEL, prompt="A server answers", max_tokens=10, temperature=0)
    assert reply.choices[0].text == expected
    assert reply.usage.prompt_tokens == len(prompt)
    by_ids = client.completions.create(model=MODEL, prompt=prompt, max_tokens=10, temperature=0)
    assert by_ids.choices[0].text == expected
    several = client.completions.create(model=MODEL, prompt=["A server answers", "Each"], max_tokens=4, n=2)
    assert [c.index for c in several.choices] == [0, 1, 2, 3]
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=MODEL, prompt="A server answers", max_tokens=10, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == expected


def test_the_calculator_runs_on_the_server_and_shows_in_the_reply(tok):
    prompt = tok.render_for_completion(QUESTION)
    output = [tok.special_id("<|output_start|>"), *tok.encode("5"), tok.special_id("<|output_end|>")]
    script = [tok.special_id("<|python_start|>"), *tok.encode("2+3"), tok.special_id("<|python_end|>")]
    script += [0] * len(output) + tok.encode(" It is 5.") + [tok.special_id("<|assistant_end|>")]
    scheduler = make_scheduler(ScriptedModel(script, len(prompt), tok.vocab_size), tok, slots=2)
    with live_server(scheduler) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0)
        text = "<|python_start|>2+3<|python_end|><|output_start|>5<|output_end|> It is 5."
        assert reply.choices[0].message.content == text
        assert reply.choices[0].finish_reason == "stop"
        # the reply sent back as history renders into the tokens the model wrote (the call as a python part)
        history = [*QUESTION, {"role": "assistant", "content": text}, {"role": "user", "content": "And 2+4?"}]
        again = httpx.post(
            url + "/v1/chat/completions", json={"messages": history, "max_tokens": 1}, timeout=60
        )
        assert again.status_code == 200
        expected = tok.render_for_completion(
            [
                *QUESTION,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "python", "text": "2+3"},
                        {"type": "python_output", "text": "5"},
                        {"type": "text", "text": " It is 5."},
                    ],
                },
                {"role": "user", "content": "And 2+4?"},
            ]
        )
        assert again.json()["usage"]["prompt_tokens"] == len(expected)


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": QUESTION, "temperature": -1}, "temperature"),
        ({"messages": QUESTION, "temperature": "hot"}, "temperature"),
        ({"messages": QUESTION, "n": 0}, "n"),
        ({"messages": QUESTION, "max_tokens": 0}, "max_tokens"),
        ({"messages": QUESTION, "top_p": 0}, "top_p"),
        ({"messages": QUESTION, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "   "}]}, "messages"),
        ({"messages": QUESTION, "max_tokens": 10_000}, "max_tokens"),
        ({}, "messages"),
    ],
)
def test_bad_parameters_are_400_in_openai_shape(server, body, param):
    error = error_of(httpx.post(server + "/v1/chat/completions", json=body, timeout=30), 400)
    assert error["type"] == "invalid_request_error"
    assert (error["param"] or "").startswith(param)


def test_bad_json_and_bad_completion_prompts_are_400(server):
    error = error_of(
        httpx.post(
            server + "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
        ),
        400,
    )
    assert "JSON" in error["message"]
    error_of(httpx.post(server + "/v1/completions", json={"prompt": [10**9]}), 400)
    error_of(httpx.post(server + "/v1/completions", json={"prompt": []}), 400)


def test_a_prompt_longer_than_the_context_says_how_long(server):
    long = [{"role": "user", "content": "many words " * 200}]
    error = error_of(httpx.post(server + "/v1/chat/completions", json={"messages": long}), 400)
    assert error["code"] == "context_length_exceeded"
    assert "128 tokens" in error["message"] and "the prompt is" in error["message"]


def test_unknown_model_is_404(client, server):
    error = error_of(
        httpx.post(server + "/v1/chat/completions", json={"model": "gpt-9", "messages": QUESTION}), 404
    )
    assert error["code"] == "model_not_found" and error["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=QUESTION)
    error_of(httpx.get(server + "/v1/models/gpt-9"), 404)


def test_the_api_key_is_required_when_set(model, tok):
    with live_server(make_scheduler(model, tok, slots=2), api_key="sesame") as url:
        error = error_of(httpx.post(url + "/v1/chat/completions", json={"messages": QUESTION}), 401)
        assert error["code"] == "invalid_api_key"
        error_of(httpx.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
        good = openai.OpenAI(base_url=url + "/v1", api_key="sesame", max_retries=0, timeout=60)
        assert good.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2).choices
        assert httpx.get(url + "/health").status_code == 200  # health and the page stay open
        assert httpx.get(url + "/").status_code == 200


def test_a_full_queue_is_503_with_retry_after(model, tok):
    scheduler = make_scheduler(model, tok, slots=1, max_queue=1)  # never started: the queue only fills
    for _ in range(2):  # one for the free slot, one for the queue
        scheduler.submit([tok.bos_id], SamplingParams(max_tokens=1), 1, lambda event: None)
    app = create_app(scheduler, MODEL)
    app.state.ready.set()  # as if warm: the scheduler, never started, only fills its queue
    response = TestClient(app).post("/v1/chat/completions", json={"messages": QUESTION})
    error = error_of(response, 503)
    assert error["code"] == "queue_full" and response.headers["retry-after"] == "1"


def test_the_page_is_served(server):
    page = httpx.get(server + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/chat/completions" in page.text and "<script" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere


class SlowModel(ScriptedModel):
    """A scripted model that takes `delay_s` per forward pass, so a reply outlives a client that leaves."""

    def __init__(self, *args, delay_s: float):
        super().__init__(*args)
        self.delay_s = delay_s

    def forward(self, *args, **kwargs):
        time.sleep(self.delay_s)
        return super().forward(*args, **kwargs)


def test_a_client_that_disconnects_frees_its_slot_at_once(tok):
    prompt = tok.render_for_completion(QUESTION)
    endless = tok.encode("a")  # the script never ends the reply: only max_tokens (500 steps, 5 s) would
    scheduler = make_scheduler(
        SlowModel(endless, len(prompt), tok.vocab_size, delay_s=0.01), tok, slots=2, context=600
    )
    with live_server(scheduler) as url:
        body = {"messages": QUESTION, "max_tokens": 500, "stream": True}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            while "a" not in next(lines):  # text is arriving: the request is decoding in a slot
                pass
            assert httpx.get(url + "/health").json()["active_requests"] == 1
        assert wait_until(lambda: httpx.get(url + "/health").json()["active_requests"] == 0, timeout_s=10)
        assert scheduler.steps < 400  # it left long before max_tokens
        assert sorted(scheduler._free) == [0, 1]  # both slots are free again
        # the freed slot serves the next request
        reply = httpx.post(
            url + "/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 3}, timeout=60
        )
        assert reply.json()["choices"][0]["message"]["content"] == "aaa"


def test_a_plain_request_whose_client_gives_up_frees_its_slot(tok):
    prompt = tok.render_for_completion(QUESTION)
    endless = SlowModel(tok.encode("a"), len(prompt), tok.vocab_size, delay_s=0.01)
    scheduler = make_scheduler(endless, tok, slots=2, context=600)
    with live_server(scheduler) as url:
        body = {"messages": QUESTION, "max_tokens": 500}  # 500 steps, 5 s, if nobody stopped it
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json=body, timeout=httpx.Timeout(60, read=0.5))
        assert wait_until(lambda: httpx.get(url + "/health").json()["active_requests"] == 0, timeout_s=10)
        assert scheduler.steps < 400


class SlowTokenizer:
    """The tokenizer, except that rendering a long conversation waits until `release` is set."""

    def __init__(self, tok):
        self.tok, self.rendering, self.release = tok, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def render_for_completion(self, messages):
        if len(messages[-1]["content"]) > 10_000:
            self.rendering.set()
            assert self.release.wait(30)
        return self.tok.render_for_completion(messages)


def test_a_large_prompt_is_tokenized_off_the_event_loop(model, tok):
    """While one request's tokenizing is held up, /health and another client's stream are answered."""
    slow = SlowTokenizer(tok)
    scheduler = make_scheduler(model, tok, slots=2, context=128)
    scheduler.engine.tokenizer = slow
    with live_server(scheduler) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        big = {"messages": [{"role": "user", "content": "word " * 20_000}], "max_tokens": 4}
        answers = []
        sender = threading.Thread(
            target=lambda: answers.append(httpx.post(url + "/v1/chat/completions", json=big, timeout=60))
        )
        sender.start()
        assert slow.rendering.wait(30)  # the big prompt is being tokenized now
        assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"
        chunks = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5, stream=True)
        assert sum(1 for chunk in chunks if chunk.choices and chunk.choices[0].delta.content) >= 1
        assert not answers  # all that while, the big request was still tokenizing
        slow.release.set()
        sender.join(60)
        assert error_of(answers[0], 400)["code"] == "context_length_exceeded"


def test_a_body_over_max_body_is_413_in_openai_shape(model, tok):
    with live_server(make_scheduler(model, tok, slots=2), max_body=4096) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 5000}])
        assert raised.value.status_code == 413 and "--max-body" in raised.value.message
        chunked = (b"x" * 1000 for _ in range(10))  # no Content-Length: counted as it arrives
        assert "4096 bytes" in error_of(httpx.post(url + "/v1/completions", content=chunked), 413)["message"]
        assert client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2).choices


def eager_compile(fn, device, frozen=False):
    """compile_step through dynamo alone: it traces (and counts graphs) as a real compile does, fast."""
    return torch.compile(fn, fullgraph=True, backend="eager")


@pytest.mark.slow
@pytest.mark.skipif(not can_compile(torch.device("cpu")), reason="torch.compile needs a C compiler")
def test_health_says_loading_until_the_decode_step_is_warm(tok, monkeypatch, capsys):
    monkeypatch.setattr(picochat.decode, "compile_step", eager_compile)
    warming = threading.Event()
    real_warm_up = picochat.serve.app.warm_up
    monkeypatch.setattr(picochat.serve.app, "warm_up", lambda bank: warming.wait(30) and real_warm_up(bank))
    prompt = tok.render_for_completion(QUESTION)
    engine = Engine(
        ScriptedModel(tok.encode("a"), len(prompt), tok.vocab_size), tok, dtype="fp32", compile=True
    )
    app = create_app(Scheduler(engine, num_slots=2, context=128), MODEL)
    with TestClient(app) as http:
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        assert health.headers["retry-after"] == "1"
        assert (
            error_of(http.post("/v1/chat/completions", json={"messages": QUESTION}), 503)["code"] == "loading"
        )
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        warming.set()
        assert app.state.ready.wait(60) and http.get("/health").json()["status"] == "ok"
        warmed = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        assert warmed > graphs  # warming up traced the step
        body = {"messages": QUESTION, "max_tokens": 100}  # its windows grow from 64 to 128 tokens
        assert http.post("/v1/chat/completions", json=body).json()["usage"]["completion_tokens"] == 100
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == warmed  # nothing new to compile
    printed = capsys.readouterr().out
    assert "warming up the decode step (1 × 2 slots)" in printed and "windows [64, 128]" in printed


class GatedModel(ScriptedModel):
    """A scripted model whose forward passes wait until `gate` opens: admitted requests stay in flight."""

    gate = threading.Event()

    def forward(self, *args, **kwargs):
        assert self.gate.wait(30)
        return super().forward(*args, **kwargs)


def test_a_burst_admits_slots_plus_queue_and_503s_the_rest(tok):
    slots, max_queue, burst = 2, 3, 10  # N + M = 5 admitted, 5 refused
    prompt = tok.render_for_completion(QUESTION)
    model = GatedModel(tok.encode("ab"), len(prompt), tok.vocab_size)
    model.gate.set()  # open while the server warms up
    with live_server(make_scheduler(model, tok, slots=slots, max_queue=max_queue)) as url:
        model.gate.clear()
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        replies, refusals = [], []

        def ask():
            try:
                replies.append(client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2))
            except openai.APIStatusError as error:
                refusals.append(error)

        threads = [threading.Thread(target=ask) for _ in range(burst)]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: len(refusals) >= burst - slots - max_queue, timeout_s=30)
        model.gate.set()
        for thread in threads:
            thread.join(60)
    assert len(replies) == slots + max_queue and len(refusals) == burst - slots - max_queue
    assert all(r.choices[0].message.content == "ab" for r in replies)
    assert all(e.status_code == 503 and e.response.headers["retry-after"] == "1" for e in refusals)


def metric(url: str, name: str, **labels) -> float:
    """A sample's value from /metrics, read with prometheus-client's own parser."""
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    raise AssertionError(f"/metrics has no {name} {labels}")


def test_metrics_access_log_cors_docs_and_favicon(model, tok, server, caplog):
    caplog.set_level(logging.INFO, logger="picochat.serve.access")
    origin = "http://page.example"
    with live_server(make_scheduler(model, tok, slots=2), cors_origins=(origin,)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        reply = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=6, temperature=0)
        path = "/v1/chat/completions"
        assert metric(url, "picochat_requests_total", path=path, status="200") == 1
        assert metric(url, "picochat_completion_tokens_total") == reply.usage.completion_tokens
        assert metric(url, "picochat_prompt_tokens_total") == reply.usage.prompt_tokens
        assert metric(url, "picochat_time_to_first_token_seconds_count") == 1
        assert metric(url, "picochat_queued_requests") == 0
        preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        allowed = httpx.options(url + path, headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == origin
        elsewhere = httpx.get(url + "/v1/models", headers={"Origin": "http://other.example"})
        assert "access-control-allow-origin" not in elsewhere.headers
        docs = httpx.get(url + "/docs").text
        assert "https://" not in docs and "swagger-ui-bundle.js" in docs
        script = docs.split('src="')[1].split('"')[0]
        assert httpx.get(url + script).status_code == 200  # the browser's script comes from this server
        icon = httpx.get(url + "/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    lines = [r.getMessage() for r in caplog.records if r.name == "picochat.serve.access"]
    assert any(f'"POST {path}" 200' in line for line in lines)
    assert any('"GET /favicon.ico" 200' in line for line in lines)
    cors_off = httpx.get(server + "/v1/models", headers={"Origin": origin})  # off by default
    assert "access-control-allow-origin" not in cors_off.headers
