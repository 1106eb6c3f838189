"""The OpenAI request fields beyond text in, text out: what a request asks of the scheduler (`Extras`) and
how its choices are written back (`Shape`): logprobs, echo, response_format, tools, and the audit that
refuses every field picochat would otherwise ignore.

Conversations: the developer role is a system message, and a run of messages of one role becomes one
message (texts joined by a blank line), since picochat's chat format has one turn per role in a row.
Tools: the model calls only its own tool (the calculator, or python), which the server runs; a client that
names it in `tools` gets each call as a `tool_calls` entry (outputs in `tool_outputs`) instead of markers
in the text. Any other function is a 400: the model has never seen it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from picochat.engine import TOOL_MARKER
from picochat.serve import schema
from picochat.serve.scheduler import TextDelta, TokenLogprob
from picochat.serve.structured import Banned, FormatError, Grammar
from picochat.tools import Calculator

IGNORED = {"user", "safety_identifier", "metadata", "prompt_cache_key", "service_tier"}  # no effect on text
NEUTRAL = {  # values of unsupported fields that ask for nothing
    "frequency_penalty": (0,),
    "presence_penalty": (0,),
    "logit_bias": ({},),
    "best_of": (1,),
    "suffix": ("",),
    "store": (False,),
    "modalities": (["text"],),
}
ANY_JSON = {"type": "object"}


class FieldError(Exception):
    """A request field picochat cannot honour: a 400 naming `param`."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


def audit(req) -> None:
    """FieldError for the first field that is not declared and would change the reply if honoured."""
    for name, value in (req.model_extra or {}).items():
        if value is None or name in IGNORED or any(value == v for v in NEUTRAL.get(name, ())):
            continue
        if name in NEUTRAL:
            raise FieldError(name, f"{name} is not supported by this server (only {NEUTRAL[name][0]!r})")
        raise FieldError(name, f"{name}: this server does not support the field")


def conversation(messages: list[dict]) -> list[dict]:
    """The developer role as system; each run of system, user or assistant messages as one message."""
    merged: list[dict] = []
    for index, message in enumerate(messages):
        if message.get("name") and message["role"] != "tool":  # a tool message's name is its function's
            param = f"messages.{index}.name"
            raise FieldError(param, f"{param}: participants' names are not supported by this server")
        message = {**message, "role": "system" if message["role"] == "developer" else message["role"]}
        last = merged[-1] if merged else {}
        run = last.get("role") == message["role"] != "tool" and not last.get("tool_calls")
        if not (run and _is_text(last.get("content")) and _is_text(message.get("content"))):
            merged.append(message)  # nothing to merge: the tokenizer takes it, or says what is wrong
        elif message["role"] == "assistant":
            last["content"] = _parts(last["content"]) + _parts(message["content"])
            last["tool_calls"] = message.get("tool_calls")
        else:
            last["content"] = _text(last["content"]) + "\n\n" + _text(message["content"])
    return merged


def _is_text(content) -> bool:
    return isinstance(content, str) or (
        isinstance(content, list) and all(isinstance(p, dict) for p in content)
    )


def _text(content: str | list[dict]) -> str:
    return content if isinstance(content, str) else "".join(str(part.get("text", "")) for part in content)


def _parts(content: str | list[dict]) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    return list(content)


@dataclass
class Extras:
    """What one request asks beyond its prompt and sampling settings."""

    top_logprobs: int | None = None  # None: no logprobs
    mask: object = None  # makes each choice's TokenMask (structured.Grammar.mask or a Banned)
    tool: str | None = None  # the client's name for the model's own tool: report calls as tool_calls
    echo: list[str] | None = None  # completions: each prompt's text, sent back before its continuation
    echo_from: int = 0  # the first prompt token echoed: 1 skips the <|bos|> put before a text prompt
    prompt_logprobs: bool = False

    def options(self) -> dict:
        """Keyword arguments of `Scheduler.submit`."""
        return {"top_logprobs": self.top_logprobs, "mask": self.mask, "prompt_logprobs": self.prompt_logprobs}


def chat_extras(req: schema.ChatCompletionRequest, engine) -> Extras:
    """The chat request's extras; FieldError for what cannot be honoured."""
    audit(req)
    if req.top_logprobs is not None and not req.logprobs:
        raise FieldError("top_logprobs", "top_logprobs needs logprobs: true")
    extras = Extras(top_logprobs=(req.top_logprobs or 0) if req.logprobs else None)
    extras.tool, no_tools = own_tool(req, engine)
    if no_tools:
        extras.mask = lambda: Banned(engine.model.config.vocab_size, [engine.python_start])
    form = req.response_format
    if form is not None and form.type != "text":
        if form.type == "json_schema" and form.json_schema is None:
            raise FieldError("response_format", "response_format json_schema needs a json_schema field")
        schema_ = form.json_schema.json_schema if form.type == "json_schema" else ANY_JSON
        try:
            grammar = Grammar(
                engine.tokenizer, engine.model.config.vocab_size, sorted(engine.stop_ids), schema_
            )
        except FormatError as error:
            raise FieldError("response_format", str(error)) from error
        extras.mask = grammar.mask
    return extras


def own_tool(req: schema.ChatCompletionRequest, engine) -> tuple[str | None, bool]:
    """The model's own tool if the client names it in `tools`, and whether tool_choice "none" bans it."""
    name = None if engine.tool is None else "calculator" if isinstance(engine.tool, Calculator) else "python"
    choice = req.tool_choice
    if not req.tools:
        if choice not in (None, "none", "auto"):
            raise FieldError("tool_choice", "tool_choice names a tool, but the request has no tools")
        return None, choice == "none"
    for tool in req.tools:
        if tool.function.name != name:
            can = f"only its own tool {name!r}, which the server runs" if name else "no tool on this server"
            raise FieldError(
                "tools", f"the model cannot call the function {tool.function.name!r}: it calls {can}"
            )
    if choice not in (None, "none", "auto"):
        raise FieldError(
            "tool_choice", "tool_choice can be 'auto' or 'none': the model decides when it calls"
        )
    return name, choice == "none"


def completion_extras(req: schema.CompletionRequest, tokenizer, prompts: list[list[int]]) -> Extras:
    """The completion request's extras: logprobs and echo (a text prompt is echoed without its <|bos|>)."""
    audit(req)
    extras = Extras(top_logprobs=req.logprobs, prompt_logprobs=req.echo and req.logprobs is not None)
    if req.echo:
        extras.echo_from = int(isinstance(req.prompt, str) or isinstance(req.prompt[0], str))
        extras.echo = [tokenizer.decode(ids[extras.echo_from :]) for ids in prompts]
    return extras


class ToolCalls:
    """Splits a reply's text, piece by piece, into its content and the tool calls and outputs in it."""

    def __init__(self):
        self.kind, self.code, self.output = "text", "", ""
        self.calls: list[str] = []
        self.outputs: list[str] = []

    def feed(self, text: str) -> tuple[str, list[str]]:
        """The content in `text` and the calls it completes (markers arrive whole: one token each)."""
        content, done = "", []
        for piece in TOOL_MARKER.split(text):
            if piece in ("<|python_start|>", "<|output_start|>"):
                self.kind, self.code, self.output = piece[2:-8], "", ""  # "python" or "output"
            elif piece in ("<|python_end|>", "<|output_end|>"):
                (done if self.kind == "python" else self.outputs).append(self.code or self.output)
                self.kind = "text"
            elif self.kind == "text":
                content += piece
            elif self.kind == "python":
                self.code += piece
            else:
                self.output += piece
        self.calls += done
        return content, done


class Shape:
    """Writes the choices of one request in OpenAI's shapes: tool calls apart from the text, log p's, echo.
    Choice i answers prompt i // n."""

    def __init__(self, tokenizer, extras: Extras, count: int, n: int):
        self.tokenizer, self.extras, self.n = tokenizer, extras, n
        self.logprobs: list[list[TokenLogprob]] = [[] for _ in range(count)]  # every token's
        self.fresh: list[list[TokenLogprob]] = [[] for _ in range(count)]  # not streamed yet
        self.tools = [ToolCalls() for _ in range(count)]
        self.offset = [0] * count  # completions: characters already sent (logprobs' text_offset)
        self.echoed = [False] * count
        self.requests: list = []  # the scheduler's Requests (their prompt_logprobs), one per prompt

    def add(self, index: int, event: TextDelta) -> None:
        self.logprobs[index] += event.logprobs
        self.fresh[index] += event.logprobs

    def chat_choice(self, index: int, text: str, reason: str) -> schema.ChatChoice:
        message = schema.AssistantMessage(content=text)
        if self.extras.tool:
            tools = ToolCalls()
            content, calls = tools.feed(text)
            message = schema.AssistantMessage(
                content=content if content or not calls else None,
                tool_calls=[self.tool_call(code) for code in calls] or None,
                tool_outputs=tools.outputs or None,
            )
        logprobs = self.chat_logprobs(self.logprobs[index])
        return schema.ChatChoice(index=index, message=message, finish_reason=reason, logprobs=logprobs)

    def chat_delta(self, index: int, text: str | None) -> tuple[schema.Delta, schema.ChoiceLogprobs | None]:
        fresh, self.fresh[index] = self.fresh[index], []
        delta = schema.Delta(content=text)
        if self.extras.tool and text:
            first = len(self.tools[index].calls)
            content, calls = self.tools[index].feed(text)
            streamed = [
                schema.StreamedToolCall(index=first + k, **self.tool_call(code).model_dump())
                for k, code in enumerate(calls)
            ]
            delta = schema.Delta(content=content or None, tool_calls=streamed or None)
        return delta, self.chat_logprobs(fresh)

    def tool_call(self, code: str) -> schema.ToolCall:
        key = "expression" if self.extras.tool == "calculator" else "code"  # as the tokenizer reads them
        function = schema.FunctionCall(name=self.extras.tool, arguments=json.dumps({key: code}))
        return schema.ToolCall(id="call_" + uuid.uuid4().hex[:24], function=function)

    def chat_logprobs(self, entries: list[TokenLogprob]) -> schema.ChoiceLogprobs | None:
        if self.extras.top_logprobs is None:
            return None
        content = [
            schema.TokenLogprob(
                **self.token(e.token, e.logprob), top_logprobs=[self.token(*t) for t in e.top]
            )
            for e in entries
        ]
        return schema.ChoiceLogprobs(content=content)

    def token(self, token: int, logprob: float | None) -> dict:
        data = self.tokenizer.decode_bytes([token])
        return {"token": data.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(data)}

    def completion_choice(
        self, index: int, text: str, reason: str | None, stream: bool
    ) -> schema.CompletionChoice:
        """Choice `index` (whole, or the next piece of a stream): the echoed prompt first, if asked."""
        entries = self.fresh[index] if stream else self.logprobs[index]
        self.fresh[index] = []
        pairs = [(e.token, e) for e in entries]
        if self.extras.echo and not (stream and self.echoed[index]):
            self.echoed[index] = True
            number = index // self.n
            text = self.extras.echo[number] + text
            pairs = self.prompt_pairs(number) + pairs
        logprobs = (
            None if self.extras.top_logprobs is None else self.completion_logprobs(index, pairs, stream)
        )
        return schema.CompletionChoice(index=index, text=text, finish_reason=reason, logprobs=logprobs)

    def prompt_pairs(self, number: int) -> list[tuple[int, TokenLogprob | None]]:
        """The echoed prompt's (token, its TokenLogprob or None); a text prompt's <|bos|> is not echoed."""
        request = self.requests[number]
        pairs = list(zip(request.prompt, request.prompt_logprobs or [None] * len(request.prompt)))
        return pairs[self.extras.echo_from :]

    def completion_logprobs(self, index: int, pairs: list, stream: bool) -> schema.CompletionLogprobs:
        tokens, logprobs, tops, offsets = [], [], [], []
        offset = self.offset[index] if stream else 0
        for token, entry in pairs:
            tokens.append(self.token(token, None)["token"])
            logprobs.append(entry.logprob if entry else None)
            tops.append({self.token(t, None)["token"]: lp for t, lp in entry.top} if entry else None)
            offsets.append(offset)
            offset += len(tokens[-1])
        self.offset[index] = offset
        return schema.CompletionLogprobs(
            tokens=tokens, token_logprobs=logprobs, top_logprobs=tops, text_offset=offsets
        )
