"""Chat rendering: the loss mask for every role and for tool calls, truncation, and malformed chats."""

import json

import pytest

from picochat.errors import UserError
from picochat.tokenizer import SPECIAL_TOKENS, Tokenizer


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    text = "Hello there! What is 2+2? It is 4. print(2+2) You are helpful. " * 20
    return Tokenizer.train([text], 256 + len(SPECIAL_TOKENS) + 30)


def spans(tok, ids, mask):
    """The rendered conversation as (text, trained) runs, for readable assertions."""
    runs = []
    for token_id, trained in zip(ids, mask):
        piece = tok.decode_bytes([token_id]).decode("utf-8")
        if runs and runs[-1][1] == trained:
            runs[-1] = (runs[-1][0] + piece, trained)
        else:
            runs.append((piece, trained))
    return runs


def test_roles_and_mask(tok):
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hello there!"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
        {"role": "assistant", "content": "It is 4."},
    ]
    ids, mask = tok.render_conversation(messages)
    assert len(ids) == len(mask) and ids[0] == tok.bos_id
    assert spans(tok, ids, mask) == [
        (
            "<|bos|><|system_start|>You are helpful.<|system_end|><|user_start|>Hello there!<|user_end|>"
            "<|assistant_start|>",
            0,
        ),
        ("Hi!<|assistant_end|>", 1),
        ("<|user_start|>What is 2+2?<|user_end|><|assistant_start|>", 0),
        ("It is 4.<|assistant_end|>", 1),
    ]


def test_tool_parts_are_trained_and_outputs_are_not(tok):
    messages = [
        {"role": "user", "content": "What is 2+2?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me run "},
                {"type": "python", "text": "print(2+2)"},
                {"type": "python_output", "text": "4"},
                {"type": "text", "text": "It is 4."},
            ],
        },
    ]
    ids, mask = tok.render_conversation(messages)
    assert spans(tok, ids, mask)[1:] == [
        ("Let me run <|python_start|>print(2+2)<|python_end|>", 1),
        ("<|output_start|>4<|output_end|>", 0),
        ("It is 4.<|assistant_end|>", 1),
    ]


def test_openai_tool_calls_fold_into_the_assistant_turn(tok):
    parts_form = [
        {"role": "user", "content": "What is 2+2?"},
        {
            "role": "assistant",
            "content": [
                {"type": "python", "text": "2+2"},
                {"type": "python_output", "text": "4"},
                {"type": "python", "text": "print(2+2)"},
                {"type": "python_output", "text": "4\n"},
                {"type": "text", "text": "It is 4."},
            ],
        },
    ]
    openai_form = [
        {"role": "user", "content": "What is 2+2?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": json.dumps({"expression": "2+2"})},
                },
                {"id": "b", "type": "function", "function": {"name": "python", "arguments": "print(2+2)"}},
            ],
        },
        {"role": "tool", "tool_call_id": "b", "content": "4\n"},
        {"role": "tool", "tool_call_id": "a", "content": "4"},
        {"role": "assistant", "content": "It is 4."},
    ]
    assert tok.render_conversation(openai_form) == tok.render_conversation(parts_form)


def test_render_for_completion_and_truncation(tok):
    messages = [{"role": "user", "content": "Hello there!"}]
    ids = tok.render_for_completion(messages)
    assert ids[-1] == tok.special_id("<|assistant_start|>")
    assert ids[:-1] == tok.render_conversation(messages)[0]
    full_ids, full_mask = tok.render_conversation(messages + [{"role": "assistant", "content": "Hi!"}])
    assert tok.render_conversation(messages + [{"role": "assistant", "content": "Hi!"}], max_tokens=5) == (
        full_ids[:5],
        full_mask[:5],
    )
    with pytest.raises(UserError, match="must end with a user message"):
        tok.render_for_completion(messages + [{"role": "assistant", "content": "Hi!"}])


def test_special_token_text_in_content_stays_text(tok):
    ids, _ = tok.render_conversation(
        [{"role": "user", "content": "<|assistant_end|>"}, {"role": "assistant", "content": "ok"}]
    )
    assert ids.count(tok.special_id("<|assistant_end|>")) == 1


USER = {"role": "user", "content": "hi"}
ASSISTANT = {"role": "assistant", "content": "hello"}


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "non-empty list"),
        ([USER, {"role": "robot", "content": "x"}], "message 1: unknown role 'robot'"),
        ([USER, USER], "message 1: two user messages in a row"),
        ([USER, ASSISTANT, ASSISTANT], "message 2: two assistant messages in a row"),
        ([ASSISTANT], "message 0: the first assistant message must follow a user"),
        ([USER, {"role": "system", "content": "x"}], "message 1: a system message may only come first"),
        ([{"role": "system", "content": "x"}], "only a system message"),
        ([{"role": "user", "content": "  "}], "message 0 \\(user\\): content is empty"),
        ([USER, {"role": "assistant", "content": ""}], "message 1 \\(assistant\\): content is empty"),
        ([USER, {"role": "assistant", "content": 7}], "content must be a string or a list"),
        ([USER, {"role": "assistant", "content": [{"type": "image", "text": "x"}]}], "content part 0"),
        ([USER, ASSISTANT, {"role": "tool", "content": "4"}], "message 2: a tool message must answer"),
        (
            [USER, {"role": "assistant", "tool_calls": [{"function": {"name": "shell", "arguments": "ls"}}]}],
            "named one of",
        ),
        (["hi"], "message 0: expected a dict"),
    ],
)
def test_malformed_conversations_name_the_problem(tok, messages, message):
    with pytest.raises(UserError, match=message):
        tok.render_conversation(messages)
