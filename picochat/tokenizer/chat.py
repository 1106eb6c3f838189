"""Conversations -> token ids plus a loss mask (1 on the tokens the model learns to produce).

Messages are OpenAI-style {"role", "content"} dicts; an assistant's content may be a list of "text",
"python" (code) and "python_output" parts, and OpenAI tool calls with their {"role": "tool"} answers fold
into the same parts (docs/tokenizer.md). Rendered: <|bos|>, then each turn between its role's markers; the
mask is 1 on the assistant's text, its python parts with their markers, and <|assistant_end|>.
"""

import contextlib
import json
from dataclasses import dataclass, field
from typing import Protocol

from picochat.errors import UserError

PART_TYPES = ("text", "python", "python_output")
TOOL_NAMES = ("python", "calculator")


class Tokenizer(Protocol):
    """What rendering needs of a tokenizer (picochat.tokenizer.Tokenizer, which imports this module)."""

    bos_id: int

    def encode(self, text: str) -> list[int]: ...
    def special_id(self, name: str) -> int: ...


@dataclass
class Turn:
    role: str
    parts: list[tuple[str, str]] = field(default_factory=list)


def render_conversation(
    tokenizer: Tokenizer, messages: list[dict], max_tokens: int | None = None
) -> tuple[list[int], list[int]]:
    """Token ids and loss mask (1 = trained) for `messages`, both cut to `max_tokens` if given."""
    ids, mask = render_turns(tokenizer, parse_conversation(messages))
    if max_tokens is not None:
        ids, mask = ids[:max_tokens], mask[:max_tokens]
    return ids, mask


def render_for_completion(tokenizer: Tokenizer, messages: list[dict]) -> list[int]:
    """Token ids for a conversation that ends with a user turn, primed with <|assistant_start|>."""
    turns = parse_conversation(messages)
    if turns[-1].role != "user":
        raise UserError(
            f"message {len(messages) - 1}: a conversation to complete must end with a user message, "
            f"not {turns[-1].role!r}; drop the trailing assistant reply"
        )
    ids, _ = render_turns(tokenizer, turns)
    return [*ids, tokenizer.special_id("<|assistant_start|>")]


def render_turns(tokenizer: Tokenizer, turns: list[Turn]) -> tuple[list[int], list[int]]:
    """The ids and loss mask of checked turns: <|bos|>, then each turn between its role's markers."""
    ids, mask = [], []

    def add(token_ids: list[int], trained: bool) -> None:
        ids.extend(token_ids)
        mask.extend([int(trained)] * len(token_ids))

    def special(name: str) -> list[int]:
        return [tokenizer.special_id(f"<|{name}|>")]

    def wrapped(name: str, text: str) -> list[int]:
        return special(f"{name}_start") + tokenizer.encode(text) + special(f"{name}_end")

    add([tokenizer.bos_id], False)
    for turn in turns:
        trained = turn.role == "assistant"  # the model learns to write its own turns and to end them
        add(special(f"{turn.role}_start"), False)
        for kind, text in turn.parts:
            if kind == "text":
                add(tokenizer.encode(text), trained)
            else:  # the call is trained, the tool's output is not
                add(wrapped("python" if kind == "python" else "output", text), kind == "python")
        add(special(f"{turn.role}_end"), trained)
    return ids, mask


def parse_conversation(messages: list[dict]) -> list[Turn]:
    """Check `messages` and turn them into Turns; raise UserError naming the message that is wrong."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise UserError("a conversation must be a non-empty list of message dicts")
    turns: list[Turn] = []
    open_calls, previous_role = [], None  # open: the assistant's tool calls awaiting output, (id, position)
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise UserError(
                f"message {index}: expected a dict with 'role' and 'content', got {type(message).__name__}"
            )
        role = message.get("role")
        check_order(role, turns[-1].role if turns else None, previous_role, bool(open_calls), index)
        if role in ("system", "user"):
            turns.append(Turn(role, [("text", _plain_text(message, index))]))
            open_calls = []
        elif role == "assistant":
            if turns[-1].role == "user":
                turns.append(Turn("assistant"))
            parts, call_ids = _assistant_parts(message, index)
            first = len(turns[-1].parts) + len(parts) - len(call_ids)  # the calls close the message
            open_calls = [(call_id, first + n) for n, call_id in enumerate(call_ids)]
            turns[-1].parts.extend(parts)
        else:
            _attach_output(turns[-1], open_calls, message, index)
        previous_role = role
    if turns[-1].role == "system":
        raise UserError("the conversation has only a system message; add a user message")
    return turns


def check_order(role: str | None, last: str | None, before: str | None, waiting: bool, index: int) -> None:
    """UserError if `role` cannot follow a turn of `last` after a message of `before` (`waiting`: calls)."""
    if role == "system" and last is not None:
        problem = "a system message may only come first"
    elif role == "user" and last == "user":
        problem = "two user messages in a row; merge them or add the assistant reply"
    elif role == "assistant" and last not in ("user", "assistant"):
        problem = "the first assistant message must follow a user message"
    elif role == "assistant" and last == "assistant" and before != "tool":
        problem = "two assistant messages in a row; merge them or put a user message between"
    elif role == "tool" and (before not in ("assistant", "tool") or not waiting):
        problem = "a tool message must answer a tool call of the assistant message before it"
    elif role not in ("system", "user", "assistant", "tool"):
        problem = f"unknown role {role!r}; use system, user, assistant or tool"
    else:
        return
    raise UserError(f"message {index}: {problem}")


def _plain_text(message: dict, index: int) -> str:
    """The non-empty text of a system or user message (a string, or a list of text parts)."""
    content, where = message.get("content"), f"message {index} ({message.get('role')})"
    if isinstance(content, list):
        for n, part in enumerate(content):
            text = part.get("text") if isinstance(part, dict) and part.get("type") == "text" else None
            if not isinstance(text, str):
                raise UserError(f"message {index}: content part {n} must be {{'type': 'text', 'text': str}}")
        content = "".join(part["text"] for part in content)
    if not isinstance(content, str):
        raise UserError(f"{where}: content must be a string, got {type(content).__name__}")
    if not content.strip():
        raise UserError(f"{where}: content is empty")
    return content


def _assistant_parts(message: dict, index: int) -> tuple[list[tuple[str, str]], list[str | None]]:
    """The parts of one assistant message, its tool calls last, and the calls' ids."""
    content, tool_calls = message.get("content"), message.get("tool_calls") or []
    if isinstance(content, str):
        if not (content.strip() or tool_calls):
            raise UserError(f"message {index} (assistant): content is empty")
        content = [{"type": "text", "text": content}] if content.strip() else []
    elif isinstance(content, list):
        if not (content or tool_calls):
            raise UserError(f"message {index} (assistant): content is an empty list of parts")
    elif content is not None or not tool_calls:
        raise UserError(f"message {index} (assistant): content must be a string or a list of parts")
    parts = []
    for number, part in enumerate(content or []):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in PART_TYPES or not isinstance(part.get("text"), str):
            raise UserError(
                f"message {index}: content part {number} must be a dict with 'type' in {PART_TYPES} "
                f"and a 'text' string, got {part!r:.80}"
            )
        if kind != "python_output" and not part["text"].strip():
            raise UserError(f"message {index}: content part {number} ({kind}) is empty")
        parts.append((kind, part["text"]))
    if not isinstance(tool_calls, list):
        raise UserError(f"message {index}: tool_calls must be a list")
    parts += [("python", _tool_call_code(call, index, n)) for n, call in enumerate(tool_calls)]
    return parts, [call.get("id") if isinstance(call, dict) else None for call in tool_calls]


def _tool_call_code(call: object, index: int, number: int) -> str:
    """The code of an OpenAI tool call: arguments JSON with a "code"/"expression" field, or a raw string."""
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if name not in TOOL_NAMES:
        raise UserError(
            f"message {index}: tool call {number} calls {name!r}, not a function named one of {TOOL_NAMES}"
        )
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):  # a raw string is the code itself
            arguments = json.loads(arguments)
    if isinstance(arguments, dict):
        arguments = arguments.get("code", arguments.get("expression"))
    if not isinstance(arguments, str) or not arguments.strip():
        raise UserError(f"message {index}: tool call {number} has no code: give 'code' or 'expression'")
    return arguments


def _attach_output(turn: Turn, open_calls: list[tuple[str | None, int]], message: dict, index: int) -> None:
    """Insert a tool message's output right after the call it answers (by tool_call_id, else in order)."""
    content = message.get("content")
    if not isinstance(content, str):
        raise UserError(f"message {index} (tool): content must be a string, got {type(content).__name__}")
    call_id = message.get("tool_call_id")
    matches = [i for i, (open_id, _) in enumerate(open_calls) if call_id is not None and open_id == call_id]
    which = matches[0] if matches else 0
    if call_id is not None and not matches and any(open_id is not None for open_id, _ in open_calls):
        raise UserError(f"message {index}: tool_call_id {call_id!r} answers no open tool call")
    _, position = open_calls.pop(which)
    turn.parts.insert(position + 1, ("python_output", content))
    open_calls[:] = [(open_id, p + 1 if p > position else p) for open_id, p in open_calls]
