"""The OpenAI wire format, as pydantic models: what a client may send, and what the server answers.

Only the fields picochat acts on are declared; any other field is refused (400 naming it) unless its value
changes nothing (`fields.audit`), so nothing is silently ignored. The bounds declared here are what the
server checks, and FastAPI publishes them in /openapi.json.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_CHOICES = 16  # n: choices per request (each takes a decoding slot)
MAX_STOPS = 4  # stop strings per request, as in OpenAI's API


class ContentPart(BaseModel):
    """OpenAI's {"type": "text", "text": ...}, or picochat's tool call "python" and its "python_output"."""

    type: Literal["text", "python", "python_output"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]  # developer: a system message
    content: str | list[ContentPart] | None = None
    tool_calls: list[dict] | None = None  # an earlier assistant turn's calls, answered by "tool" messages
    tool_call_id: str | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


Stop = str | Annotated[list[str], Field(max_length=MAX_STOPS)] | None


class SamplingFields(BaseModel):
    model_config = ConfigDict(extra="allow")  # kept in model_extra for `fields.audit`

    model: str | None = Field(default=None, description="the served model's id (GET /v1/models); optional")
    temperature: float = Field(default=1.0, ge=0, le=2, description="0 = always the most likely token")
    top_p: float = Field(default=1.0, gt=0, le=1, description="nucleus sampling: keep this much mass")
    max_tokens: int | None = Field(
        default=None, ge=1, description="new tokens per choice; default: the room left"
    )
    stop: Stop = Field(default=None, description="up to 4 strings; the text ends before the first one")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="same seed, same text")
    n: int = Field(default=1, ge=1, le=MAX_CHOICES, description="how many choices to generate")
    stream: bool = False
    stream_options: StreamOptions | None = None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or unknown option is a 400, not ignored


class JsonSchemaFormat(Strict):
    name: str
    description: str | None = None
    json_schema: dict = Field(default_factory=dict, alias="schema")  # "schema" would shadow BaseModel's
    strict: bool | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class Function(Strict):
    name: str
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"]
    function: Function


class FunctionName(Strict):
    name: str


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: FunctionName


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, description="the newer name of max_tokens")
    logprobs: bool = Field(default=False, description="each reply token's log p")
    top_logprobs: int | None = Field(default=None, ge=0, le=20, description="and the k likeliest at each")
    response_format: ResponseFormat | None = Field(
        default=None, description="json_object or json_schema: the reply is JSON (constrained decoding)"
    )
    tools: list[Tool] | None = Field(
        default=None, description="name the model's own tool (calculator or python) to get tool_calls"
    )
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="text, several texts, token ids, or several lists of token ids"
    )
    max_tokens: int | None = Field(
        default=16, ge=1, description="new tokens per choice (OpenAI's default: 16)"
    )
    logprobs: int | None = Field(default=None, ge=0, le=5, description="log p of each token and k likeliest")
    echo: bool = Field(default=False, description="the prompt comes back before the continuation")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCall(BaseModel):
    name: str
    arguments: str  # JSON


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class StreamedToolCall(ToolCall):
    index: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob]
    refusal: None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None
    tool_outputs: list[str] | None = Field(
        default=None, description="picochat: the outputs of tool_calls, which the server ran, in order"
    )


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[StreamedToolCall] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]  # None: the first token of an echoed prompt
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "picochat"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    active_requests: int = Field(description="requests holding decoding slots now")
    queued_requests: int = Field(description="requests waiting for a slot")
    slots: int
    context: int = Field(description="the longest prompt + reply, in tokens")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
