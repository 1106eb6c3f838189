"""The HTTP side of `picochat serve`: OpenAI's chat and completion endpoints, the health check, the page.

    POST /v1/chat/completions   messages -> the assistant's reply (stream: server-sent events)
    POST /v1/completions        text -> its continuation, for base models
    GET  /v1/models             the one model served
    GET  /health                503 "loading" until the decode step is warm, then how many requests run
    GET  /metrics               Prometheus metrics (metrics.py); GET /docs: the API browser, offline
    GET  /                      the chat page (picochat/serve/static/index.html)

Handlers turn a request into token ids and SamplingParams for the Scheduler, and its events into OpenAI's
JSON. Errors answer in OpenAI's shape: 400 bad parameters (FastAPI's 422 too), 401 key, 404 model, 503 with
Retry-After when the queue is full or the server is still warming up, 413 for a body over `max_body`;
bad input never gives a 500. Tokenizing runs on a worker thread, so a large prompt never stalls the
others. Tool calls stay in the reply's text with their markers, so sending the reply back in the history
renders the same tokens, unless the client asks for tool_calls (`fields`: logprobs, echo, response_format,
tools, and the fields refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from picochat.decode import warm_up
from picochat.engine import SamplingParams, assistant_message
from picochat.errors import UserError
from picochat.serve import fields, schema
from picochat.serve.metrics import AccessLog, BodyLimit, Metrics
from picochat.serve.scheduler import Event, Failed, Finished, QueueFull, Scheduler, TextDelta

RETRY_AFTER_S = 1  # what a client told "queue full" or "loading" should wait before trying again
MAX_BODY = 2**20  # bytes: a context of a few thousand tokens is tens of kB of JSON
DISCONNECT_POLL_S = 0.5  # how often a non-streaming request checks that its client is still there

ERRORS = {
    400: {"model": schema.ErrorResponse, "description": "bad parameters or a prompt longer than the context"},
    401: {"model": schema.ErrorResponse, "description": "missing or wrong API key"},
    404: {"model": schema.ErrorResponse, "description": "unknown model"},
    503: {"model": schema.ErrorResponse, "description": "the queue is full; retry after Retry-After seconds"},
}


@dataclass(eq=False)  # compared and hashed by identity, as exceptions are
class APIError(Exception):
    status: int
    message: str
    param: str | None = None
    code: str | None = None
    kind: str = "invalid_request_error"
    headers: dict | None = None

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def create_app(
    scheduler: Scheduler,
    model_name: str,
    api_key: str | None = None,
    max_body: int = MAX_BODY,
    cors_origins: tuple[str, ...] = (),
) -> FastAPI:
    """The app; it listens at once, and takes completions when `app.state.ready` (the decode step warm)."""
    server = Server(scheduler, model_name, api_key)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=server.warm_up, name="picochat-warm-up", daemon=True).start()
        yield
        scheduler.stop()

    description = "An OpenAI-compatible server for a picochat model, with continuous batching."
    app = FastAPIOffline(
        title="picochat", description=description, version="1", lifespan=lifespan, redoc_url=None
    )
    app.state.ready = server.ready
    install_error_handlers(app)
    add_info_routes(app, server)
    add_completion_routes(app, server)
    add_operations(app, server, max_body, cors_origins)
    return app


def add_operations(app: FastAPI, server: Server, max_body: int, cors_origins: tuple[str, ...]) -> None:
    """/metrics, the favicon, the access log, the body limit and (if asked) CORS."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return server.metrics.page()

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        icon = resources.files("picochat.serve").joinpath("static/favicon.svg").read_bytes()
        return Response(icon, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    paths = {route.path for route in app.routes}
    app.add_middleware(BodyLimit, max_bytes=max_body)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(AccessLog, metrics=server.metrics, paths=paths)  # the last added is outermost


def add_info_routes(app: FastAPI, server: Server) -> None:
    created = int(time.time())
    keyed = [Depends(server.check_key)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("picochat.serve").joinpath("static/index.html").read_text())

    @app.get("/health", response_model=schema.Health, responses={503: {"description": "still loading"}})
    async def health() -> schema.Health:
        if not server.ready.is_set():
            headers = {"Retry-After": str(RETRY_AFTER_S)}
            return JSONResponse({"status": "loading", "model": server.model_name}, 503, headers=headers)
        scheduler = server.scheduler
        return schema.Health(
            model=server.model_name,
            active_requests=scheduler.active_requests,
            queued_requests=scheduler.queued_requests,
            slots=scheduler.num_slots,
            context=scheduler.context,
        )

    @app.get("/v1/models", response_model=schema.ModelList, responses=ERRORS, dependencies=keyed)
    async def models() -> schema.ModelList:
        return schema.ModelList(data=[schema.Model(id=server.model_name, created=created)])

    @app.get("/v1/models/{model}", response_model=schema.Model, responses=ERRORS, dependencies=keyed)
    async def model(model: str) -> schema.Model:
        server.check_model(model)
        return schema.Model(id=server.model_name, created=created)


def add_completion_routes(app: FastAPI, server: Server) -> None:
    stream = {200: {"content": {"text/event-stream": {}}}}
    route = {
        "responses": {**ERRORS, **stream},
        "dependencies": [Depends(server.check_key), Depends(server.check_ready)],
    }

    @app.post("/v1/chat/completions", response_model=schema.ChatCompletion, **route)
    async def chat_completions(req: schema.ChatCompletionRequest, http: Request):
        server.check_model(req.model)
        extras = await run_in_threadpool(
            fields.chat_extras, req, server.scheduler.engine
        )  # compiles a grammar
        try:
            messages = fields.conversation([message_dict(m) for m in req.messages])
            prompt = await run_in_threadpool(server.tokenizer.render_for_completion, messages)
        except UserError as error:
            raise APIError(400, str(error), param="messages") from error
        params = server.sampling(req, len(prompt), req.max_completion_tokens or req.max_tokens)
        return await server.respond(http, req, [prompt], [params], chat=True, extras=extras)

    @app.post("/v1/completions", response_model=schema.Completion, **route)
    async def completions(req: schema.CompletionRequest, http: Request):
        server.check_model(req.model)
        prompts = await run_in_threadpool(server.completion_prompts, req.prompt)
        extras = await run_in_threadpool(fields.completion_extras, req, server.tokenizer, prompts)
        params = [server.sampling(req, len(prompt), req.max_tokens) for prompt in prompts]
        return await server.respond(http, req, prompts, params, chat=False, extras=extras)


class Server:
    """What the endpoints share: the scheduler, the model's name and key, requests to it and back."""

    def __init__(self, scheduler: Scheduler, model_name: str, api_key: str | None):
        self.scheduler, self.model_name, self.api_key = scheduler, model_name, api_key
        self.tokenizer = scheduler.engine.tokenizer
        self.ready = threading.Event()  # set once the decode step is warm and the scheduler runs
        self.metrics = Metrics(scheduler)

    def warm_up(self) -> None:
        """Run the decode step at every shape the slots use (a compiled step compiles now), then start."""
        start, banks = time.perf_counter(), self.scheduler.slots.banks
        print(f"warming up the decode step ({len(banks)} × {banks[0].num_slots} slots) ...", flush=True)
        try:
            for bank in banks:
                windows = warm_up(bank)
            print(
                f"decode step warm for windows {windows} in {time.perf_counter() - start:.1f} s", flush=True
            )
        except Exception as error:  # the first request will meet the same error and report it
            print(f"warming up failed ({error}); serving anyway", flush=True)
        self.scheduler.start()
        self.ready.set()

    async def check_ready(self) -> None:
        if not self.ready.is_set():
            headers = {"Retry-After": str(RETRY_AFTER_S)}
            message = f"the model is still loading (warming up its decode step); retry in {RETRY_AFTER_S} s"
            raise APIError(503, message, code="loading", kind="server_error", headers=headers)

    async def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode()  # compare_digest refuses non-ASCII strings
        if scheme.lower() != "bearer" or not secrets.compare_digest(given, self.api_key.encode()):
            message = "missing or wrong API key: send the server's --api-key as 'Authorization: Bearer KEY'"
            raise APIError(401, message, code="invalid_api_key")

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.model_name:
            message = f"the model {name!r} does not exist here; this server serves {self.model_name!r}"
            raise APIError(404, message + " (GET /v1/models)", "model", "model_not_found")

    def sampling(self, req, prompt_len: int, max_tokens: int | None) -> SamplingParams:
        """SamplingParams for one prompt of `prompt_len` tokens; 400 if the prompt or reply cannot fit."""
        context, num_slots = self.scheduler.context, self.scheduler.num_slots
        too_long = "context_length_exceeded"
        if prompt_len >= context:
            message = (
                f"the prompt is {prompt_len} tokens, but the context holds {context} tokens (prompt and reply "
                "together); shorten the prompt or start a new conversation"
            )
            param = "messages" if isinstance(req, schema.ChatCompletionRequest) else "prompt"
            raise APIError(400, message, param, too_long)
        if max_tokens is not None and prompt_len + max_tokens > context:
            message = (
                f"the prompt is {prompt_len} tokens and max_tokens asks for {max_tokens} more, but the context "
                f"holds {context}; ask for at most {context - prompt_len}"
            )
            raise APIError(400, message, "max_tokens", too_long)
        if req.n > num_slots:
            raise APIError(400, f"n={req.n}: this server decodes at most {num_slots} choices", "n")
        stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        try:
            return SamplingParams(
                max_tokens=max_tokens or context - prompt_len,
                temperature=req.temperature,
                top_p=req.top_p if req.top_p < 1 else None,
                seed=req.seed,
                stop=tuple(clean(s) for s in stop),
            )
        except UserError as error:
            raise APIError(400, str(error)) from error

    def completion_prompts(self, prompt) -> list[list[int]]:
        """Token ids of each prompt: texts start with <|bos|>, as every training document does."""
        if isinstance(prompt, str) or (prompt and all(isinstance(t, int) for t in prompt)):
            prompt = [prompt]
        if not prompt:
            raise APIError(
                400, "prompt is empty: send a string, a list of strings or a list of token ids", "prompt"
            )
        if len(prompt) > self.scheduler.num_slots:
            raise APIError(
                400, f"{len(prompt)} prompts: send at most {self.scheduler.num_slots} at once", "prompt"
            )
        vocab_size, bos = self.scheduler.engine.model.config.vocab_size, self.tokenizer.bos_id
        ids = []
        for p in prompt:
            if isinstance(p, str):
                ids.append(self.tokenizer.encode(clean(p), prepend=bos))
            elif not p:
                raise APIError(400, "a prompt of token ids is empty", "prompt")
            elif not all(0 <= t < vocab_size for t in p):
                raise APIError(400, f"token ids must lie in [0, {vocab_size})", "prompt")
            else:
                ids.append(list(p))
        return ids

    def submit(
        self, prompts: list[list[int]], params: list[SamplingParams], n: int, sinks: list, **options
    ) -> list:
        """Queue one request per prompt (`options`: `Scheduler.submit`'s); all or none (503 when full)."""
        requests = []
        try:
            for prompt, p, sink in zip(prompts, params, sinks):
                requests.append(self.scheduler.submit(prompt, p, n, sink, **options))
        except QueueFull as error:
            _cancel_all(requests)
            headers = {"Retry-After": str(RETRY_AFTER_S)}
            message = f"the server is busy ({error}); retry in {RETRY_AFTER_S} s"
            raise APIError(503, message, code="queue_full", kind="server_error", headers=headers) from error
        return requests

    async def respond(self, http: Request, req, prompts, params, chat: bool, extras: fields.Extras):
        """Run the requests; answer with one JSON body, or stream server-sent events."""
        events = EventBridge(asyncio.get_running_loop())
        sinks = [self.metrics.watch(events.sink_for(i), len(p)) for i, p in enumerate(prompts)]
        requests = self.submit(prompts, params, req.n, sinks, **extras.options())
        shape = fields.Shape(self.tokenizer, extras, req.n * len(prompts), req.n)
        shape.requests = requests
        reply = Reply(chat, self.model_name, req.n, len(prompts), sum(len(p) for p in prompts), shape)
        if not req.stream:
            return await reply.collect(http, events, requests)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        stream = reply.stream(events, requests, include_usage)
        # a client that leaves before the first byte never starts the stream: cancel when it is dropped
        weakref.finalize(stream, _cancel_all, requests)
        return StreamingResponse(
            stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )


def _cancel_all(requests: list) -> None:
    for request in requests:
        request.cancel()


class EventBridge:
    """Carries scheduler events (scheduler thread) to one HTTP request (event loop thread): the first event
    of a pile wakes the loop and the rest ride along, one wake-up per request and step, not per token."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.lock, self.ready = loop, threading.Lock(), asyncio.Event()
        self.pending: list[tuple[int, Event]] = []
        self.wake_scheduled = False

    def sink_for(self, number: int):
        def sink(event: Event) -> None:
            with self.lock:
                self.pending.append((number, event))
                if self.wake_scheduled:
                    return
                self.wake_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
                self.loop.call_soon_threadsafe(self._wake)

        return sink

    def _wake(self) -> None:
        with self.lock:
            self.wake_scheduled = False
        self.ready.set()

    async def next_batch(self) -> list[tuple[int, Event]]:
        """Every event that arrived since the last call (waits for at least one)."""
        while True:
            await self.ready.wait()
            self.ready.clear()
            with self.lock:
                batch, self.pending = self.pending, []
            if batch:
                return batch


class Reply:
    """Collects scheduler events of one HTTP request (several prompts × n choices) into OpenAI's JSON."""

    def __init__(
        self, chat: bool, model: str, n: int, num_prompts: int, prompt_tokens: int, shape: fields.Shape
    ):
        self.chat, self.model, self.n, self.shape = chat, model, n, shape
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.texts, self.reasons = [""] * (n * num_prompts), [None] * (n * num_prompts)
        self.prompt_tokens, self.completion_tokens = prompt_tokens, 0
        self.failure: str | None = None

    @property
    def done(self) -> bool:
        return self.failure is not None or all(self.reasons)

    def add(self, number: int, event: Event) -> tuple[int, str | None, str | None] | None:
        """Record an event; return (choice index, new text, finish reason) for it, None for a failure."""
        if isinstance(event, Failed):
            self.failure = event.message
            return None
        index = number * self.n + event.index
        if isinstance(event, TextDelta):
            self.texts[index] += event.text
            self.shape.add(index, event)
            return index, event.text, None
        assert isinstance(event, Finished)
        self.reasons[index] = event.reason
        self.completion_tokens += event.completion_tokens
        return index, None, event.reason

    def usage(self) -> schema.Usage:
        p, c = self.prompt_tokens, self.completion_tokens
        return schema.Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)

    def header(self) -> dict:
        return {"id": self.id, "created": self.created, "model": self.model}

    def body(self) -> schema.ChatCompletion | schema.Completion:
        done = list(enumerate(zip(self.texts, self.reasons)))
        if self.chat:
            choices = [self.shape.chat_choice(i, t, r) for i, (t, r) in done]
            return schema.ChatCompletion(**self.header(), choices=choices, usage=self.usage())
        choices = [self.shape.completion_choice(i, t, r, stream=False) for i, (t, r) in done]
        return schema.Completion(**self.header(), choices=choices, usage=self.usage())

    async def collect(self, http: Request, events: EventBridge, requests: list):
        """The whole reply as one JSON body; a client that has gone away frees its slots."""
        loop = asyncio.get_running_loop()
        next_check = loop.time() + DISCONNECT_POLL_S
        try:
            while not self.done:
                try:
                    batch = await asyncio.wait_for(events.next_batch(), DISCONNECT_POLL_S)
                except asyncio.TimeoutError:
                    batch = []
                for number, event in batch:
                    self.add(number, event)
                if loop.time() >= next_check:  # is anyone still waiting for this reply?
                    if await http.is_disconnected():
                        return JSONResponse({}, status_code=499)
                    next_check = loop.time() + DISCONNECT_POLL_S
        finally:
            _cancel_all(requests)  # a no-op for finished requests; frees the slots of an abandoned one
        if self.failure:
            raise APIError(500, self.failure, kind="server_error", code="generation_failed")
        return self.body()

    def chunk(self, index: int, text: str | None, reason: str | None, role: bool = False) -> str:
        if self.chat:
            delta, logprobs = (
                (schema.Delta(role="assistant", content=""), None)
                if role
                else self.shape.chat_delta(index, text)
            )
            choice = schema.ChunkChoice(index=index, delta=delta, finish_reason=reason, logprobs=logprobs)
            body = schema.ChatCompletionChunk(**self.header(), choices=[choice])
        else:
            choice = self.shape.completion_choice(index, text or "", reason, stream=True)
            body = schema.Completion(**self.header(), choices=[choice])
        return sse(body.model_dump_json(exclude_none=not self.chat))

    async def stream(self, events: EventBridge, requests: list, include_usage: bool) -> AsyncIterator[str]:
        """Server-sent events: a role chunk per choice (chat), deltas, finish chunks, the usage (if asked),
        `data: [DONE]`. Closing the stream early cancels the requests."""
        try:
            if self.chat:
                for index in range(len(self.texts)):
                    yield self.chunk(index, None, None, role=True)
            while not self.done:
                chunks = []
                for number, event in await events.next_batch():
                    added = self.add(number, event)
                    if added is None:
                        error = {"message": self.failure, "type": "server_error", "param": None, "code": None}
                        chunks.append(sse(schema.ErrorResponse(error=error).model_dump_json()))
                        break
                    chunks.append(self.chunk(*added))
                yield "".join(chunks)
                if self.failure:
                    break
            else:
                if include_usage:
                    kind = schema.ChatCompletionChunk if self.chat else schema.Completion
                    yield sse(kind(**self.header(), choices=[], usage=self.usage()).model_dump_json())
            yield "data: [DONE]\n\n"
        finally:
            _cancel_all(requests)  # the client left early, or all is done (then this does nothing)


def sse(data: str) -> str:
    return f"data: {data}\n\n"


def clean(text: str) -> str:
    """Text with lone surrogates (valid JSON, invalid Unicode) replaced, so the tokenizer can encode it."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


def message_dict(message) -> dict:
    """A request message as the tokenizer's dict; an assistant reply's tool-call markers become parts."""
    data = message.model_dump(exclude_none=True)
    content = data.get("content")
    if isinstance(content, str):
        data["content"] = clean(content)
        if message.role == "assistant":
            parsed = assistant_message(data["content"])
            if parsed is not None:
                data["content"] = parsed["content"]
    elif isinstance(content, list):
        data["content"] = [{**part, "text": clean(part["text"])} for part in content]
    return data


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(fields.FieldError)
    async def field_error(request: Request, error: fields.FieldError) -> JSONResponse:
        return APIError(400, str(error), param=error.param, code="unsupported_value").response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        param = ".".join(loc) or None
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message, param = "the request body is not valid JSON", None
        elif not loc:
            message = f"the request body must be a JSON object with the endpoint's fields ({message})"
        elif param:
            message = f"{param}: {message}"
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        return APIError(400, message + more, param=param, code="invalid_value").response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        return APIError(error.status_code, str(error.detail), kind=kind, headers=error.headers).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return APIError(500, f"internal error: {error}", kind="server_error").response()
