"""Schemathesis reads the server's /openapi.json and sends it requests built from the schema, valid ones
and deliberately invalid ones; none may get a 5xx (bad input is a 400 in OpenAI's shape, never a 500)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from test_serve_fixtures import live_server, make_scheduler, tiny_tokenizer
from tiny_models import tiny_gpt

EXAMPLES = 20  # per endpoint and mode: enough to try every field a few ways, in seconds


@pytest.fixture(scope="module")
def base_url():
    tok = tiny_tokenizer()
    # a queue longer than a fuzzer's burst, so that nothing is told "busy" (503, also a 5xx)
    with live_server(
        make_scheduler(tiny_gpt(tok.vocab_size), tok, slots=4, context=64, max_queue=256)
    ) as url:
        yield url


@pytest.fixture(scope="module")
def operations(base_url):
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    return {op.ok().label: op.ok() for op in schema.get_all_operations()}


def test_the_schema_lists_the_endpoints(operations):
    assert {
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "GET /v1/models",
        "GET /v1/models/{model}",
        "GET /health",
    } <= set(operations)


@pytest.mark.parametrize(
    "label, mode",
    [
        ("POST /v1/chat/completions", GenerationMode.POSITIVE),
        ("POST /v1/chat/completions", GenerationMode.NEGATIVE),
        ("POST /v1/completions", GenerationMode.POSITIVE),
        ("POST /v1/completions", GenerationMode.NEGATIVE),
        ("GET /v1/models/{model}", GenerationMode.POSITIVE),  # a path string cannot be made invalid
    ],
)
def test_no_request_gets_a_server_error(operations, base_url, label, mode):
    operation = operations[label]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def check(case):
        response = case.call(base_url=base_url, timeout=60)
        case.validate_response(response, checks=[not_a_server_error])
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"]

    check()
