"""The terminal chat: a multi-turn conversation with a trained model, streamed as it is written.

    picochat chat                              # the newest SFT checkpoint (else the newest base model)
    picochat chat -p "What is 2+3?"            # answer once and exit, for scripts
    picochat chat --system "Answer briefly." --temperature 0.8 --tool python --checkpoint DIR

In the conversation: /clear starts over (the system prompt stays), /temperature X changes the sampling
temperature, /save FILE and /load FILE keep a conversation as OpenAI-style JSON ({"messages": [...]}),
/help lists the commands, /quit or Ctrl-D leaves, Ctrl-C cuts a reply short. Lines are read from stdin, so
it works in a terminal, under tmux, and with input piped in (one message per line). In a terminal, lines
can be edited and earlier ones recalled with the arrow keys (readline); the history is kept in
$PICOCHAT_HOME/chat_history.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from picochat.engine import Engine, SamplingParams
from picochat.errors import UserError

# Where `picochat sft` and `picochat pretrain` keep their runs (under paths.checkpoints_dir()), best first.
DEFAULT_RUNS = ("sft", "base")

COMMANDS_HELP = """\
/clear          start a new conversation (the system prompt stays)
/temperature X  sample at temperature X (0 = always the most likely token); without X, show it
/save FILE      write the conversation to FILE as JSON: {"messages": [...]}
/load FILE      continue the conversation saved in FILE
/help           this list
/quit           leave (Ctrl-D too); Ctrl-C stops a reply"""

# How tool calls look on screen: "[tool: 2+3 → 5]" instead of the raw special tokens, set off by a space
# from the words around it (the model writes "...<|output_end|>2+3 = 5", which must not read "52+3 = 5").
ON_SCREEN = {
    "<|python_start|>": "[tool: ",
    "<|python_end|>": "",
    "<|output_start|>": " → ",
    "<|output_end|>": "]",
}
PART_OPENED_BY = {"<|python_start|>": "python", "<|output_start|>": "python_output"}
MARKER = re.compile("(" + "|".join(re.escape(marker) for marker in ON_SCREEN) + ")")


class ScreenText:
    """A reply's text deltas as shown to the person, one after another: tool-call markers replaced (they
    never straddle two deltas), a space before "[tool:" and after its "]" unless one is there already (or
    a punctuation mark follows)."""

    def __init__(self):
        self.last = " "  # the last character shown
        self.space_after_call = False  # a call just closed: the next text needs a space unless it has one

    def show(self, delta: str) -> str:
        shown = []
        for piece in MARKER.split(delta):
            if not piece:
                continue
            text = ON_SCREEN.get(piece, piece)
            wants_space = self.space_after_call or piece == "<|python_start|>"
            if (
                wants_space
                and text
                and not (text[0].isspace() or text[0] in ".,;:!?)")
                and not self.last.isspace()
            ):
                text = " " + text
            self.space_after_call = piece == "<|output_end|>" or (self.space_after_call and not text)
            if text:
                shown.append(text)
                self.last = text[-1]
        return "".join(shown)


def assistant_message(reply: str) -> dict | None:
    """The reply as an assistant message for the history, tool calls as python / python_output parts so it
    renders back into the same tokens; None for a reply with nothing in it."""
    if not MARKER.search(reply):
        return {"role": "assistant", "content": reply} if reply.strip() else None
    parts, kind = [], "text"
    for piece in MARKER.split(reply):
        if piece in ON_SCREEN:
            kind = PART_OPENED_BY.get(piece, "text")
        elif piece.strip() or (piece and kind == "python_output"):
            parts.append({"type": kind, "text": piece})
    return {"role": "assistant", "content": parts} if parts else None


class ChatSession:
    """A conversation: the messages so far, the sampling settings, and the engine that answers."""

    def __init__(self, engine: Engine, params: SamplingParams, system: str | None = None):
        self.engine = engine
        self.params = params
        self.system = system
        self.messages: list[dict] = []
        self.clear()

    def clear(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def reply(self, text: str, out: TextIO) -> str:
        """Stream the model's answer to `text` into `out`; keep both turns in the history."""
        self.messages.append({"role": "user", "content": text})
        reply, screen = "", ScreenText()
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
        """Write the conversation as {"messages": [...]} (atomically: an old file is never half replaced)."""
        from picochat.atomic import atomic_write_json

        try:
            atomic_write_json(path, {"messages": self.messages}, indent=2)
        except OSError as error:
            raise UserError(f"cannot write {path}: {error}") from error

    def load(self, path: Path) -> None:
        """Continue the conversation saved in `path`; on any problem the current one is kept."""
        from picochat.tokenizer.chat import parse_conversation

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
        if name in ("/quit", "/exit"):
            return False
        if name == "/clear":
            self.clear()
            out.write("(new conversation)\n")
        elif name == "/temperature" and argument.strip():
            try:
                self.params = replace(self.params, temperature=float(argument))
                out.write(f"(temperature {self.params.temperature:g})\n")
            except (ValueError, UserError) as error:
                out.write(f"/temperature needs a number >= 0, got {argument.strip()!r} ({error})\n")
        elif name == "/temperature":
            out.write(f"(temperature {self.params.temperature:g})\n")
        elif name in ("/save", "/load") and not argument.strip():
            out.write(f"{name} needs a file name, e.g. {name} chat.json\n")
        elif name in ("/save", "/load"):
            try:
                if name == "/save":
                    self.save(Path(argument.strip()).expanduser())
                    out.write(f"(saved {len(self.messages)} messages to {argument.strip()})\n")
                else:
                    self.load(Path(argument.strip()).expanduser())
                    out.write(f"(loaded {len(self.messages)} messages from {argument.strip()})\n")
            except UserError as error:
                out.write(f"error: {error}\n")
        elif name == "/help":
            out.write(COMMANDS_HELP + "\n")
        else:
            out.write(f"unknown command {name}; /help lists the commands\n")
        return True


HISTORY_LINES = 1000


def history_file() -> Path:
    from picochat.paths import picochat_home

    return picochat_home() / "chat_history"


class LineHistory:
    """Readline's line editing, with earlier lines loaded from and saved to `path` (where readline exists)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            import readline
        except ImportError:  # Windows without pyreadline: plain input() still works
            self.readline = None
            return
        self.readline = readline
        readline.set_history_length(HISTORY_LINES)
        try:
            readline.read_history_file(path)
        except OSError:
            pass  # no history yet, or unreadable: start empty

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


def default_checkpoint() -> Path:
    """The run directory of the newest SFT model, else of the newest base model."""
    from picochat.checkpoint import list_checkpoints
    from picochat.paths import checkpoints_dir

    for name in DEFAULT_RUNS:
        if list_checkpoints(checkpoints_dir() / name, quiet=True):
            if name != DEFAULT_RUNS[0]:
                print(
                    f"no SFT model yet; chatting with the base model in {checkpoints_dir() / name}",
                    file=sys.stderr,
                )
            return checkpoints_dir() / name
    raise UserError(
        f"no trained model under {checkpoints_dir()}: train one with 'picochat run' (the whole pipeline) or "
        "'picochat sft' (after 'picochat pretrain'), or point --checkpoint at a checkpoint directory"
    )


def load_engine(
    checkpoint: Path | None, tool: str | None, dtype: str | None = None, compile: bool | None = None
) -> Engine:
    """An engine for the model in `checkpoint` (a checkpoint or run directory; None: the default one).
    `compile` None compiles the decode step where it can run (`runtime.can_compile`); a compiled step on a
    CPU has the weights frozen in (`Engine(freeze=True)`: a chat never changes them)."""
    from picochat.checkpoint import load_model
    from picochat.runtime import pick_device

    path = Path(checkpoint).expanduser() if checkpoint is not None else default_checkpoint()
    model, tokenizer, meta = load_model(path, device=pick_device())
    print(f"loaded {path} (step {meta.get('step', '?')})", file=sys.stderr)
    return Engine(model, tokenizer, tool=tool, dtype=dtype, compile=compile, freeze=True)


def chat(
    engine: Engine,
    params: SamplingParams,
    prompt: str | None = None,
    system: str | None = None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """Answer `prompt` once, or hold a conversation over `stdin`. Returns the exit status."""
    stdin, out = stdin or sys.stdin, out or sys.stdout
    session = ChatSession(engine, params, system)
    if prompt is not None:
        session.reply(prompt, out)
        return 0
    if stdin.isatty():
        out.write("picochat chat: /help for commands, /quit to leave\n")
    converse(session, stdin, out)
    return 0
