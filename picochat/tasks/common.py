"""The base of every SFT task, the simplest one (a JSONL file), and the phrasings of the others as data."""

import json
from importlib.resources import files
from pathlib import Path

from picochat.errors import UserError


class Task:
    """A named, deterministic source of conversations: `conversation(i)` is the same every time."""

    name = "task"
    size: int | None = None  # None: procedural, every index is a new conversation

    def conversation(self, index: int) -> list[dict]:
        raise NotImplementedError


def phrasings(name: str) -> dict:
    """The questions, answers and templates of tasks/data/`name`.json: data, so the code stays short."""
    return json.loads(files(__package__).joinpath("data", f"{name}.json").read_text(encoding="utf-8"))


class JsonlTask(Task):
    """The simplest task: local conversations, a JSONL file of {"messages": [...]} (or a bare list) a line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = f"jsonl:{self.path.name}"
        if not self.path.is_file():
            raise UserError(f"no JSONL file at {self.path}")
        self.conversations: list[list[dict]] = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise UserError(f"{self.path}:{number}: not valid JSON ({error})") from error
            messages = record.get("messages") if isinstance(record, dict) else record
            if not isinstance(messages, list) or not messages:
                raise UserError(f'{self.path}:{number}: expected a non-empty {{"messages": [...]}}')
            self.conversations.append(messages)
        if not self.conversations:
            raise UserError(f"{self.path} holds no conversations")
        self.size = len(self.conversations)

    def conversation(self, index: int) -> list[dict]:
        return self.conversations[index % self.size]
