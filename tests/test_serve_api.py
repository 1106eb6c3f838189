"""The OpenAI API kept whole, through the official `openai` client: logprobs equal the model's own (checked
with a full forward pass), echo, response_format JSON that always parses and validates, the model's tool
calls as tool_calls, the developer role and runs of one role, and a 400 naming every unsupported field."""

import json

import httpx
import jsonschema_rs
import openai
import pytest
import torch
from test_serve_fixtures import MODEL, live_server, make_scheduler, tiny_tokenizer
from tiny_models import ScriptedModel, tiny_gpt

from picochat.engine import Engine, SamplingParams

QUESTION = [{"role": "user", "content": "What is 2+3?"}]
SCHEMA = {  # every value bounded, so a reply of a random model ends within the context
    "type": "object",
    "required": ["answer", "sure", "unit"],
    "additionalProperties": False,
    "properties": {"answer": {"type": "integer", "minimum": -99, "maximum": 99}, "sure": {"type": "boolean"}}
    | {"unit": {"enum": ["m", "kg", None]}, "note": {"type": "string", "maxLength": 5}},
}
CALCULATOR = {"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_gpt(tok.vocab_size, seed=3)


@pytest.fixture(scope="module")
def server(model, tok):
    """The base URL of a live server, and the openai client for it."""
    with live_server(make_scheduler(model, tok, slots=4, context=192)) as url:
        yield url, openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def client(server):
    return server[1]


@pytest.fixture(scope="module")
def url(server):
    return server[0]


def model_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p of every next token after each position of `ids`, from one pass without a cache: (T, V)."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids]))[0].double(), dim=-1)


def test_chat_logprobs_are_the_models_and_stream_the_same(client, model, tok):
    prompt = tok.render_for_completion(QUESTION)
    tokens = Engine(model, tok, dtype="fp32").generate([prompt], SamplingParams(max_tokens=6, temperature=0))
    tokens = tokens[0].tokens
    ask = dict(model=MODEL, messages=QUESTION, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
    content = client.chat.completions.create(**ask).choices[0].logprobs.content
    reference = model_logprobs(model, prompt + tokens)
    assert [bytes(entry.bytes) for entry in content] == [tok.decode_bytes([t]) for t in tokens]
    for position, (entry, token) in enumerate(zip(content, tokens)):
        row = reference[len(prompt) - 1 + position]
        assert entry.logprob == pytest.approx(row[token].item(), abs=1e-4)
        assert [bytes(top.bytes) for top in entry.top_logprobs] == [
            tok.decode_bytes([t]) for t in row.topk(3).indices.tolist()
        ]
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-6)  # greedy: the top one
    streamed = [
        entry
        for chunk in client.chat.completions.create(**ask, stream=True)
        for choice in chunk.choices
        if choice.logprobs
        for entry in choice.logprobs.content
    ]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]


def test_completion_logprobs_with_echo(client, model, tok):
    ask = dict(model=MODEL, prompt="What is 12", max_tokens=4, temperature=0, logprobs=2, echo=True)
    choice = client.completions.create(**ask).choices[0]
    logprobs = choice.logprobs
    prompt = tok.encode("What is 12", prepend=tok.bos_id)
    generated = Engine(model, tok, dtype="fp32").generate(
        [prompt], SamplingParams(max_tokens=4, temperature=0)
    )
    all_ids = prompt + generated[0].tokens
    assert choice.text == "What is 12" + generated[0].text
    assert (
        "".join(logprobs.tokens[: len(prompt) - 1]) == "What is 12"
    )  # the <|bos|> before a text: not echoed
    reference = model_logprobs(model, all_ids)
    assert len(logprobs.token_logprobs) == len(all_ids) - 1
    for position, logprob in enumerate(logprobs.token_logprobs, start=1):
        assert logprob == pytest.approx(reference[position - 1, all_ids[position]].item(), abs=1e-4)
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)
    lengths = [len(t) for t in logprobs.tokens]
    assert logprobs.text_offset == [sum(lengths[:i]) for i in range(len(lengths))]
    streamed = "".join(c.choices[0].text for c in client.completions.create(**ask, stream=True) if c.choices)
    assert streamed == choice.text


def test_json_schema_replies_parse_and_validate(client):
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    reply = client.chat.completions.create(
        model=MODEL, messages=QUESTION, response_format=response_format, n=3, seed=7, temperature=1.0
    )
    for choice in reply.choices:
        assert choice.finish_reason == "stop"
        assert jsonschema_rs.is_valid(SCHEMA, json.loads(choice.message.content)), choice.message.content
    stream = client.chat.completions.create(
        model=MODEL, messages=QUESTION, response_format=response_format, seed=7, temperature=1.0, stream=True
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        == reply.choices[0].message.content
    )


def test_json_object_reply_parses(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=QUESTION, response_format={"type": "json_object"}, temperature=0, max_tokens=150
    )
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_developer_role_and_runs_of_one_role(client, model, tok):
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "What is 2+3?"},
        {"role": "user", "content": "And 12*7?"},
    ]
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5, temperature=0)
    merged = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+3?\n\nAnd 12*7?"},
    ]
    prompt = tok.render_for_completion(merged)
    expected = Engine(model, tok, dtype="fp32").generate(
        [prompt], SamplingParams(max_tokens=5, temperature=0)
    )
    assert reply.usage.prompt_tokens == len(prompt)
    assert reply.choices[0].message.content == expected[0].text


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("chat", {"logit_bias": {"5": 10}}, "logit_bias"),
        ("chat", {"frequency_penalty": 0.5}, "frequency_penalty"),
        ("chat", {"audio": {"voice": "alloy"}}, "audio"),
        ("chat", {"top_logprobs": 2}, "top_logprobs"),
        ("chat", {"tools": [CALCULATOR], "tool_choice": "required"}, "tool_choice"),
        ("chat", {"response_format": {"type": "json_schema"}}, "response_format"),
        (
            "chat",
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}},
            "response_format",
        ),
        ("chat", {"messages": [{"role": "user", "content": "Hi", "name": "ann"}]}, "messages.0.name"),
        ("chat", {"response_format": {"type": "json_object", "strict": True}}, "response_format.strict"),
        ("completions", {"suffix": "the end"}, "suffix"),
        ("completions", {"best_of": 3}, "best_of"),
    ],
)
def test_unsupported_fields_are_400_naming_them(url, path, body, param):
    base = {"messages": QUESTION} if path == "chat" else {"prompt": "What is"}
    endpoint = url + ("/v1/chat/completions" if path == "chat" else "/v1/completions")
    response = httpx.post(endpoint, json={**base, **body, "max_tokens": 2}, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"] + json.dumps(body)


def test_fields_that_ask_for_nothing_are_accepted(url):
    body = {"messages": QUESTION, "max_tokens": 2, "user": "u1", "frequency_penalty": 0, "logit_bias": {}}
    assert httpx.post(url + "/v1/chat/completions", json=body, timeout=60).status_code == 200


def test_a_function_the_model_cannot_call_is_400_naming_it(client):
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError, match="get_weather"):
        client.chat.completions.create(model=MODEL, messages=QUESTION, tools=[CALCULATOR, weather])


def calculator_reply(tok) -> list[int]:
    """A reply that has the calculator work out 2+3 (its output "5" is forced in) and says " It is 5."."""
    special = tok.special_id
    call = [special("<|python_start|>"), *tok.encode("2+3"), special("<|python_end|>")]
    forced = [0] * (
        len(tok.encode("5")) + 2
    )  # the engine's <|output_start|>5<|output_end|> takes these steps
    return call + forced + tok.encode(" It is 5.") + [special("<|assistant_end|>")]


def test_the_calculator_call_comes_back_as_tool_calls(tok):
    prompt = tok.render_for_completion(QUESTION)
    model = ScriptedModel(calculator_reply(tok), len(prompt), tok.vocab_size)
    with live_server(make_scheduler(model, tok, slots=2)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        ask = dict(model=MODEL, messages=QUESTION, temperature=0, tools=[CALCULATOR])
        message = client.chat.completions.create(**ask).choices[0].message
        assert message.content == " It is 5." and message.model_extra["tool_outputs"] == ["5"]
        (call,) = message.tool_calls
        assert call.function.name == "calculator" and json.loads(call.function.arguments) == {
            "expression": "2+3"
        }
        chunks = [c.choices[0].delta for c in client.chat.completions.create(**ask, stream=True) if c.choices]
        assert "".join(d.content or "" for d in chunks) == " It is 5."
        (streamed,) = [call for d in chunks for call in d.tool_calls or []]
        assert streamed.function.arguments == call.function.arguments and streamed.index == 0
        # the reply sent back as OpenAI messages renders into the tokens the model wrote
        history = [
            *QUESTION,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "5"},
            {"role": "assistant", "content": " It is 5."},
            {"role": "user", "content": "And 2+4?"},
        ]
        again = client.chat.completions.create(model=MODEL, messages=history, max_tokens=1)
        parts = [{"type": "python", "text": "2+3"}, {"type": "python_output", "text": "5"}]
        parts.append({"type": "text", "text": " It is 5."})
        as_written = [*QUESTION, {"role": "assistant", "content": parts}, history[-1]]
        assert again.usage.prompt_tokens == len(tok.render_for_completion(as_written))
        none = (
            client.chat.completions.create(**{**ask, "tool_choice": "none"}, max_tokens=4).choices[0].message
        )
        assert not none.tool_calls and "<|python_start|>" not in none.content


def test_a_run_of_messages_without_text_is_a_400_not_merged(url):
    messages = [{"role": "developer"}, {"role": "developer", "content": "Be brief."}, *QUESTION]
    response = httpx.post(url + "/v1/chat/completions", json={"messages": messages}, timeout=60)
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
