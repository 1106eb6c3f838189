"""What an operator watches: Prometheus metrics at GET /metrics, one access-log line per request, and a
request-body limit.

    picochat_requests_total{path,status}        HTTP requests answered (paths outside the API: "other")
    picochat_prompt_tokens_total                prompt tokens of admitted requests
    picochat_completion_tokens_total            tokens written
    picochat_queued_requests, picochat_active_requests   read from the scheduler when scraped
    picochat_time_to_first_token_seconds        submit -> first text of a prompt (histogram)
    picochat_tokens_per_second                  a choice's tokens / its time after the first (histogram)

The middlewares are plain ASGI, so a streamed reply is logged and counted when its last byte leaves.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from picochat.serve.scheduler import Finished, Scheduler, TextDelta

access_log = logging.getLogger("picochat.serve.access")


class Metrics:
    """The server's metrics in a registry of its own (several apps may live in one process)."""

    def __init__(self, scheduler: Scheduler):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "picochat_requests", "HTTP requests answered", ["path", "status"], registry=registry
        )
        self.prompt_tokens = Counter("picochat_prompt_tokens", "prompt tokens admitted", registry=registry)
        self.completion_tokens = Counter("picochat_completion_tokens", "tokens written", registry=registry)
        queued = Gauge("picochat_queued_requests", "requests waiting for a slot", registry=registry)
        queued.set_function(lambda: scheduler.queued_requests)
        active = Gauge("picochat_active_requests", "requests holding slots", registry=registry)
        active.set_function(lambda: scheduler.active_requests)
        self.first_token = Histogram(
            "picochat_time_to_first_token_seconds",
            "from submitting a prompt to its first text",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.speed = Histogram(
            "picochat_tokens_per_second",
            "one choice's decoding speed after its first token",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=registry,
        )

    def watch(self, sink, prompt_tokens: int):
        """`sink` (one prompt's events, on the scheduler thread) with its tokens and timings recorded."""
        start, first = time.perf_counter(), None

        def watched(event) -> None:
            nonlocal first
            now = time.perf_counter()
            if first is None and isinstance(event, (TextDelta, Finished)):
                first = now
                self.prompt_tokens.inc(prompt_tokens)
                self.first_token.observe(now - start)
            if isinstance(event, Finished):
                self.completion_tokens.inc(event.completion_tokens)
                if event.completion_tokens > 1 and now > first:
                    self.speed.observe((event.completion_tokens - 1) / (now - first))
            sink(event)

        return watched

    def page(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class AccessLog:
    """ASGI middleware: one log line per HTTP request (client, method, path, status, bytes, seconds), and
    the request counted in `metrics` under its path if `paths` has it."""

    def __init__(self, app, metrics: Metrics, paths: set[str]):
        self.app, self.metrics, self.paths = app, metrics, paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status, size = time.perf_counter(), 500, 0

        async def watched_send(message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            path = scope["path"]
            self.metrics.requests.labels(path if path in self.paths else "other", str(status)).inc()
            client = (scope.get("client") or ("-",))[0]
            seconds = time.perf_counter() - start
            access_log.info(f'{client} "{scope["method"]} {path}" {status} {size} {seconds:.3f}s')


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused with 413 as soon as its Content-Length
    says so, or once that many bytes have arrived, before it is parsed or tokenized."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_bytes:  # outside the app: answer here
            error = self.too_large()
            body = {"message": error.detail, "type": "invalid_request_error", "param": None, "code": None}
            return await JSONResponse({"error": body}, status_code=413)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self.too_large()
            return message

        await self.app(scope, limited_receive, send)

    def too_large(self) -> HTTPException:
        message = (
            f"the request body is larger than this server's limit of {self.max_bytes} bytes (--max-body)"
        )
        return HTTPException(413, message)
