"""Local conversations: a JSONL file, one {"messages": [...]} object (or a bare list of messages) a line."""

from __future__ import annotations

import json
from pathlib import Path

from picochat.errors import UserError
from picochat.tasks.common import Task


class JsonlTask(Task):
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
                raise UserError(
                    f'{self.path}:{number}: expected {{"messages": [...]}} with at least one message'
                )
            self.conversations.append(messages)
        if not self.conversations:
            raise UserError(f"{self.path} holds no conversations")
        self.size = len(self.conversations)

    def conversation(self, index: int) -> list[dict]:
        return self.conversations[index % self.size]
