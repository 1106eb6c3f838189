"""The HTTP side of `picochat serve`: OpenAI's chat and completion endpoints, the health check, the page.

    POST /v1/chat/completions   messages -> the assistant's reply (stream: server-sent events)
    POST /v1/completions        text -> its continuation, for base models
    GET  /v1/models             the one model served
    GET  /health                liveness, and how many requests are decoding or waiting
    GET  /                      the chat page (picochat/serve/static/index.html)

Handlers turn a request into token ids and SamplingParams, hand them to the Scheduler, and turn its events
back into OpenAI's JSON. Every error answers in OpenAI's shape, {"error": {"message", "type", "param",
"code"}}: 400 for bad parameters (FastAPI's 422 validation errors included), 401 for a missing or wrong key,
404 for an unknown model, 503 with Retry-After when the queue is full; bad input never gives a 500.

Tool calls run on the server (the engine's calculator) and stay in the reply's text with their markers,
"<|python_start|>2+3<|python_end|><|output_start|>5<|output_end|>", so a client sees the call and its
result, and sending the reply back in the history renders the same tokens.
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
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from picochat.engine import SamplingParams, assistant_message
from picochat.errors import UserError
from picochat.serve.scheduler import Event, Failed, Finished, QueueFull, Scheduler, TextDelta
from picochat.serve.schema import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Delta,
    ErrorResponse,
    Health,
    Model,
    ModelList,
    Usage,
)

RETRY_AFTER_S = 1  # what a client told "queue full" should wait before trying again
DISCONNECT_POLL_S = 0.5  # how often a non-streaming request checks that its client is still there

ERRORS = {
    400: {"model": ErrorResponse, "description": "bad parameters or a prompt longer than the context"},
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    404: {"model": ErrorResponse, "description": "unknown model"},
    503: {"model": ErrorResponse, "description": "the queue is full; retry after Retry-After seconds"},
}


class APIError(Exception):
    """An error to answer in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def create_app(scheduler: Scheduler, model_name: str, api_key: str | None = None) -> FastAPI:
    """The FastAPI app serving `scheduler`'s model as `model_name`; starts and stops the scheduler."""
    engine = scheduler.engine
    tokenizer = engine.tokenizer
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        scheduler.start()
        yield
        scheduler.stop()

    app = FastAPI(
        title="picochat",
        description="An OpenAI-compatible server for a picochat model, with continuous batching.",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    async def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(
                401,
                "missing or wrong API key: send the server's --api-key as 'Authorization: Bearer KEY'",
                code="invalid_api_key",
            )

    def check_model(name: str | None) -> None:
        if name is not None and name != model_name:
            raise APIError(
                404,
                f"the model {name!r} does not exist here; this server serves {model_name!r} (GET /v1/models)",
                param="model",
                code="model_not_found",
            )

    def sampling(req, prompt_len: int, max_tokens: int | None) -> SamplingParams:
        """SamplingParams for one prompt of `prompt_len` tokens; 400 if the prompt or reply cannot fit."""
        context = scheduler.context
        if prompt_len >= context:
            raise APIError(
                400,
                f"the prompt is {prompt_len} tokens, but the context holds {context} tokens (prompt and reply "
                "together); shorten the prompt or start a new conversation",
                param="messages" if isinstance(req, ChatCompletionRequest) else "prompt",
                code="context_length_exceeded",
            )
        if max_tokens is not None and prompt_len + max_tokens > context:
            raise APIError(
                400,
                f"the prompt is {prompt_len} tokens and max_tokens asks for {max_tokens} more, but the context "
                f"holds {context}; ask for at most {context - prompt_len}",
                param="max_tokens",
                code="context_length_exceeded",
            )
        if req.n > scheduler.num_slots:
            raise APIError(400, f"n={req.n}: this server decodes at most {scheduler.num_slots} choices", "n")
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

    def submit(prompts: list[list[int]], params: list[SamplingParams], n: int, sinks: list) -> list:
        """Queue one request per prompt; all or none (503 when the queue is full)."""
        requests = []
        try:
            for prompt, p, sink in zip(prompts, params, sinks):
                requests.append(scheduler.submit(prompt, p, n, sink))
        except QueueFull as error:
            for request in requests:
                request.cancel()
            raise APIError(
                503,
                f"the server is busy ({error}); retry in {RETRY_AFTER_S} s",
                code="queue_full",
                kind="server_error",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from error
        return requests

    # ---- endpoints -----------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("picochat.serve").joinpath("static/index.html").read_text())

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(
            model=model_name,
            active_requests=scheduler.active_requests,
            queued_requests=scheduler.queued_requests,
            slots=scheduler.num_slots,
            context=scheduler.context,
        )

    @app.get("/v1/models", response_model=ModelList, responses=ERRORS, dependencies=[Depends(check_key)])
    async def models() -> ModelList:
        return ModelList(data=[Model(id=model_name, created=created)])

    @app.get("/v1/models/{model}", response_model=Model, responses=ERRORS, dependencies=[Depends(check_key)])
    async def model(model: str) -> Model:
        check_model(model)
        return Model(id=model_name, created=created)

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
        dependencies=[Depends(check_key)],
    )
    async def chat_completions(req: ChatCompletionRequest, http: Request):
        check_model(req.model)
        try:
            prompt = tokenizer.render_for_completion([message_dict(m) for m in req.messages])
        except UserError as error:
            raise APIError(400, str(error), param="messages") from error
        params = sampling(req, len(prompt), req.max_completion_tokens or req.max_tokens)
        return await respond(http, req, [prompt], [params], chat=True)

    @app.post(
        "/v1/completions",
        response_model=Completion,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
        dependencies=[Depends(check_key)],
    )
    async def completions(req: CompletionRequest, http: Request):
        check_model(req.model)
        prompts = completion_prompts(req.prompt)
        params = [sampling(req, len(prompt), req.max_tokens) for prompt in prompts]
        return await respond(http, req, prompts, params, chat=False)

    def completion_prompts(prompt) -> list[list[int]]:
        """Token ids of each prompt: texts start with <|bos|>, as every training document does."""
        if isinstance(prompt, str) or (prompt and all(isinstance(t, int) for t in prompt)):
            prompt = [prompt]
        if not prompt:
            raise APIError(
                400, "prompt is empty: send a string, a list of strings or a list of token ids", "prompt"
            )
        if len(prompt) > scheduler.num_slots:
            raise APIError(
                400, f"{len(prompt)} prompts: send at most {scheduler.num_slots} at once", "prompt"
            )
        vocab_size = engine.model.config.vocab_size
        ids = []
        for p in prompt:
            if isinstance(p, str):
                ids.append(tokenizer.encode(clean(p), prepend=tokenizer.bos_id))
            elif not p:
                raise APIError(400, "a prompt of token ids is empty", "prompt")
            elif not all(0 <= t < vocab_size for t in p):
                raise APIError(400, f"token ids must lie in [0, {vocab_size})", "prompt")
            else:
                ids.append(list(p))
        return ids

    async def respond(http: Request, req, prompts, params, chat: bool):
        """Run the requests; answer with one JSON body, or stream server-sent events."""
        events = EventBridge(asyncio.get_running_loop())
        requests = submit(prompts, params, req.n, [events.sink_for(i) for i in range(len(prompts))])
        prompt_tokens = sum(len(p) for p in prompts)
        reply = _Reply(chat, model_name, req.n, len(prompts), prompt_tokens)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            stream = reply.stream(events, requests, include_usage)
            # a client that leaves before the first byte never starts the stream: cancel when it is dropped
            weakref.finalize(stream, _cancel_all, requests)
            return StreamingResponse(
                stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        loop = asyncio.get_running_loop()
        next_check = loop.time() + DISCONNECT_POLL_S
        try:
            while not reply.done:
                try:
                    batch = await asyncio.wait_for(events.next_batch(), DISCONNECT_POLL_S)
                except asyncio.TimeoutError:
                    batch = []
                for number, event in batch:
                    reply.add(number, event)
                if loop.time() >= next_check:  # is anyone still waiting for this reply?
                    if await http.is_disconnected():
                        return JSONResponse({}, status_code=499)
                    next_check = loop.time() + DISCONNECT_POLL_S
        finally:
            _cancel_all(requests)  # a no-op for finished requests; frees the slots of an abandoned one
        if reply.failure:
            raise APIError(500, reply.failure, kind="server_error", code="generation_failed")
        return reply.body()

    return app


def _cancel_all(requests: list) -> None:
    for request in requests:
        request.cancel()


class EventBridge:
    """Carries scheduler events (scheduler thread) to one HTTP request (event loop thread).

    Events pile up in a list; the first of a pile wakes the loop, the rest ride along, so a decode step
    costs one wake-up per request, not one per token, and a stream writes everything that arrived at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.lock = threading.Lock()
        self.pending: list[tuple[int, Event]] = []
        self.wake_scheduled = False
        self.ready = asyncio.Event()

    def sink_for(self, number: int):
        """The sink of the request for prompt `number`."""

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


class _Reply:
    """Collects scheduler events of one HTTP request (several prompts × n choices) into OpenAI's JSON."""

    def __init__(self, chat: bool, model: str, n: int, num_prompts: int, prompt_tokens: int):
        self.chat, self.model, self.n = chat, model, n
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        choices = n * num_prompts
        self.texts = [""] * choices
        self.reasons: list[str | None] = [None] * choices
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
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
            return index, event.text, None
        assert isinstance(event, Finished)
        self.reasons[index] = event.reason
        self.completion_tokens += event.completion_tokens
        return index, None, event.reason

    def usage(self) -> Usage:
        total = self.prompt_tokens + self.completion_tokens
        return Usage(
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens, total_tokens=total
        )

    def body(self) -> ChatCompletion | Completion:
        if self.chat:
            choices = [
                ChatChoice(index=i, message=AssistantMessage(content=text), finish_reason=reason)
                for i, (text, reason) in enumerate(zip(self.texts, self.reasons))
            ]
            return ChatCompletion(
                id=self.id, created=self.created, model=self.model, choices=choices, usage=self.usage()
            )
        choices = [
            CompletionChoice(index=i, text=text, finish_reason=reason)
            for i, (text, reason) in enumerate(zip(self.texts, self.reasons))
        ]
        return Completion(
            id=self.id, created=self.created, model=self.model, choices=choices, usage=self.usage()
        )

    def chunk(self, index: int, text: str | None, reason: str | None, role: bool = False) -> str:
        if self.chat:
            delta = Delta(role="assistant", content="") if role else Delta(content=text)
            choice = ChunkChoice(index=index, delta=delta, finish_reason=reason)
            body = ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=[choice])
        else:
            choice = CompletionChoice(index=index, text=text or "", finish_reason=reason)
            body = Completion(id=self.id, created=self.created, model=self.model, choices=[choice])
        return sse(body.model_dump_json(exclude_none=not self.chat))

    async def stream(self, events: EventBridge, requests: list, include_usage: bool) -> AsyncIterator[str]:
        """Server-sent events: a role chunk per choice (chat), deltas, a finish chunk per choice, the
        usage (if asked), then `data: [DONE]`. Closing the stream early cancels the requests."""
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
                        chunks.append(sse(ErrorResponse(error=error).model_dump_json()))
                        break
                    chunks.append(self.chunk(*added))
                yield "".join(chunks)
                if self.failure:
                    break
            else:
                if include_usage:
                    kind = ChatCompletionChunk if self.chat else Completion
                    body = kind(
                        id=self.id, created=self.created, model=self.model, choices=[], usage=self.usage()
                    )
                    yield sse(body.model_dump_json())
            yield "data: [DONE]\n\n"
        finally:
            for request in requests:
                request.cancel()  # the client left early, or all is done (then this does nothing)


def sse(data: str) -> str:
    return f"data: {data}\n\n"


def clean(text: str) -> str:
    """Text with lone surrogates (valid JSON, invalid Unicode) replaced, so the tokenizer can encode it."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


def message_dict(message) -> dict:
    """A request message as the tokenizer's dict; an assistant reply that carries tool-call markers (as this
    server writes them) becomes python / python_output parts, so it renders back into the same tokens."""
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
    """Every error in OpenAI's shape; validation errors are 400s, not FastAPI's 422."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return error.response()

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
