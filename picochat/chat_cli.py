"""The terminal chat: a multi-turn conversation with a trained model, streamed as it is written.

    picochat chat                              # the newest SFT checkpoint (else the newest base model)
    picochat chat -p "What is 2+3?"            # answer once and exit, for scripts
    picochat chat --system "Answer briefly." --temperature 0.8 --tool python --checkpoint DIR

/help lists the commands; Ctrl-C cuts a reply short. Lines come from stdin (a terminal, or piped in, one
message per line); in a terminal, readline edits them and keeps them in $PICOCHAT_HOME/chat_history.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from picochat.atomic import atomic_write_json
from picochat.decode import WarmSlots
from picochat.engine import (
    TOOL_MARKER,
    TOOL_MARKERS,
    TOOL_ON_SCREEN,
    Engine,
    SamplingParams,
    assistant_message,
)
from picochat.errors import UserError
from picochat.paths import picochat_home
from picochat.settings import ChatOptions, check_value
from picochat.tokenizer.chat import parse_conversation

COMMANDS_HELP = """\
/clear          start a new conversation (the system prompt stays)
/temperature X  sample at temperature X (0 = always the most likely token); without X, show it
/save FILE      write the conversation to FILE as JSON: {"messages": [...]}
/load FILE      continue the conversation saved in FILE
/help           this list
/quit           leave (Ctrl-D too); Ctrl-C stops a reply"""


class ScreenText:
    """A reply's deltas as shown: tool-call markers replaced by TOOL_ON_SCREEN (never split across deltas),
    with a space before "[tool:" and after "]" unless one is there or punctuation follows (so the output
    "5" and the reply "2+3 = 5" never run together). Without a tool (`--tool none`) a call the model
    writes anyway is not shown."""

    def __init__(self, tools: bool = True):
        self.last = " "  # the last character shown
        self.space_after_call = False  # a call just closed: the next text needs a space unless it has one
        self.tools, self.hiding = tools, False  # hiding: inside a call that no tool will answer

    def show(self, delta: str) -> str:
        shown = []
        for piece in TOOL_MARKER.split(delta):
            if not self.tools and (piece in TOOL_MARKERS or self.hiding):
                self.hiding = piece in ("<|python_start|>", "<|output_start|>") or (
                    self.hiding and piece not in TOOL_MARKERS
                )
                continue
            if not piece:
                continue
            text = TOOL_ON_SCREEN.get(piece, piece)
            glued = text and not (text[0].isspace() or text[0] in ".,;:!?)" or self.last.isspace())
            if glued and (self.space_after_call or piece == "<|python_start|>"):
                text = " " + text
            self.space_after_call = piece == "<|output_end|>" or (self.space_after_call and not text)
            if text:
                shown.append(text)
                self.last = text[-1]
        return "".join(shown)


class ChatSession:
    """A conversation: the messages so far, the sampling settings, and the engine that answers."""

    def __init__(self, engine: Engine, params: SamplingParams, system: str | None = None, warming=None):
        """`warming`: a `decode.WarmSlots` whose compiled step takes over from the reply after it is warm."""
        self.engine, self.params, self.system, self.warming = engine, params, system, warming
        self.clear()

    def clear(self) -> None:
        self.messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []

    def reply(self, text: str, out: TextIO) -> str:
        """Stream the model's answer to `text` into `out`; keep both turns in the history."""
        if self.warming is not None and self.warming.take() is not None:
            self.engine.use_slots(self.warming.take())
            self.warming = None
        self.messages.append({"role": "user", "content": text})
        reply, screen = "", ScreenText(tools=self.engine.tool is not None)
        try:
            for delta in self.engine.stream_chat(self.messages, self.params):
                out.write(screen.show(delta))
                out.flush()
                reply += delta
        except BaseException:  # an error or Ctrl-C: the question stays unanswered, so forget it
            self.messages.pop()
            raise
        finally:
            out.write("\n")
            out.flush()
        message = assistant_message(reply)
        if message is None:  # the history must alternate user / assistant with non-empty turns
            self.messages.pop()
            out.write("(the model gave an empty reply; ask again or /clear)\n")
        else:
            self.messages.append(message)
        return reply

    def save(self, path: Path) -> None:
        try:
            atomic_write_json(path, {"messages": self.messages}, indent=2)
        except OSError as error:
            raise UserError(f"cannot write {path}: {error}") from error

    def load(self, path: Path) -> None:
        """Continue the conversation saved in `path`; on any problem the current one is kept."""
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise UserError(f"cannot read {path}: {error}") from error
        except ValueError as error:
            raise UserError(f"{path} is not JSON ({error})") from error
        messages = saved.get("messages") if isinstance(saved, dict) else None
        if not isinstance(messages, list):
            raise UserError(f'{path} holds no conversation: expected {{"messages": [...]}}')
        if messages:
            turns = parse_conversation(messages)  # a UserError naming the bad message, if any
            if turns[-1].role == "user":
                raise UserError(f"{path} ends with an unanswered user message; remove it, then /load again")
        self.messages = messages
        system = [m for m in messages[:1] if m.get("role") == "system"]
        self.system = system[0]["content"] if system else None

    def command(self, line: str, out: TextIO) -> bool:
        """Carry out a /command; False means leave."""
        name, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/clear":
            self.clear()
            out.write("(new conversation)\n")
        elif name == "/temperature":
            try:
                if argument:  # checked by the declaration of --temperature
                    temperature = check_value(ChatOptions, "temperature", argument, "/temperature")
                    self.params = replace(self.params, temperature=temperature)
                out.write(f"(temperature {self.params.temperature:g})\n")
            except UserError as error:
                out.write(f"/temperature needs a number: {error}\n")
        elif name in ("/save", "/load") and not argument:
            out.write(f"{name} needs a file name, e.g. {name} chat.json\n")
        elif name in ("/save", "/load"):
            try:
                if name == "/save":
                    self.save(Path(argument).expanduser())
                    out.write(f"(saved {len(self.messages)} messages to {argument})\n")
                else:
                    self.load(Path(argument).expanduser())
                    out.write(f"(loaded {len(self.messages)} messages from {argument})\n")
            except UserError as error:
                out.write(f"error: {error}\n")
        elif name == "/help":
            out.write(COMMANDS_HELP + "\n")
        else:
            out.write(f"unknown command {name}; /help lists the commands\n")
        return True


def history_file() -> Path:
    return picochat_home() / "chat_history"


class LineHistory:
    """Readline's line editing, with earlier lines loaded from and saved to `path` (where readline exists)."""

    def __init__(self, path: Path):
        try:
            import readline
        except ImportError:  # Windows without pyreadline: plain input() still works
            readline = None
        self.path, self.readline = path, readline
        if readline is not None:
            readline.set_history_length(1000)
            with contextlib.suppress(OSError):  # no history yet, or unreadable: start empty
                readline.read_history_file(path)

    def close(self) -> None:
        if self.readline is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.readline.write_history_file(self.path)
        except OSError as error:
            print(f"(could not save the chat history to {self.path}: {error})", file=sys.stderr)


def read_lines(stdin: TextIO) -> Iterator[str]:
    """Lines typed or piped in; in a terminal with line editing, history and a prompt."""
    if stdin is sys.stdin and stdin.isatty():
        history = LineHistory(history_file())
        try:
            while True:
                try:
                    yield input("you> ")
                except EOFError:
                    print()
                    return
        finally:
            history.close()
    for line in iter(stdin.readline, ""):
        yield line.rstrip("\n")


def converse(session: ChatSession, stdin: TextIO, out: TextIO) -> None:
    """The interactive loop: each line is a message or a /command."""
    for line in read_lines(stdin):
        if not line.strip():
            continue
        if line.startswith("/"):
            if not session.command(line, out):
                return
            continue
        try:
            session.reply(line.strip(), out)
        except KeyboardInterrupt:
            out.write("(stopped)\n")
        except UserError as error:
            out.write(f"error: {error}\n")


def chat(
    engine: Engine, params: SamplingParams, prompt=None, system=None, stdin=None, out=None, warm=False
) -> int:
    """Answer `prompt` once, or hold a conversation over `stdin`. Returns the exit status. `warm` (an eager
    engine, a conversation): compile the decode step in the background; it takes over once warm."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    warming = WarmSlots(engine.model, engine.dtype) if warm and prompt is None else None
    session = ChatSession(engine, params, system, warming)
    if prompt is not None:
        session.reply(prompt, out)
        return 0
    if stdin.isatty():
        out.write("picochat chat: /help for commands, /quit to leave\n")
    converse(session, stdin, out)
    return 0
