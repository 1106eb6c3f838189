"""Small talk between people (PyPI chitchat-dataset 0.9.0, MIT): 7,168 casual conversations.

The wheel (its sha256 pinned) is fetched and unpacked, never installed or imported, into
$PICOCHAT_HOME/data/sources/chitchat, and `chitchat_dataset/dataset.json` is read from it. The first
speaker becomes the user, the second the assistant; consecutive messages of one speaker join into one turn.
"""

import json
from pathlib import Path

from picochat.data.fetch import fetch_package
from picochat.data.sources import Package
from picochat.errors import UserError
from picochat.paths import data_dir
from picochat.tasks.common import Task

SHA256 = "7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e"
PACKAGE = Package("pypi", "chitchat-dataset", "0.9.0", SHA256)
MAX_TURNS = 8


def load_chitchat(root: Path | None = None) -> list[list[dict]]:
    """Conversations as alternating user/assistant messages; fetches the package file when needed."""
    root = root or fetch_package(PACKAGE, data_dir() / "sources" / "chitchat")
    dataset = next(Path(root).rglob("dataset.json"), None)
    if dataset is None:
        raise UserError(f"no chitchat_dataset/dataset.json under {root}; delete that folder and fetch again")
    raw = json.loads(dataset.read_text(encoding="utf-8"))
    conversations = []
    for key in sorted(raw):
        messages = []
        for i, turn in enumerate(raw[key].get("messages", [])[:MAX_TURNS]):
            text = " ".join(m.get("text", "").strip() for m in turn if m.get("text", "").strip())
            if not text:
                break
            messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
        messages = messages[: len(messages) // 2 * 2]  # end on the assistant
        if messages:
            conversations.append(messages)
    if not conversations:
        raise UserError("the chitchat dataset yielded no conversations")
    return conversations


class ChitchatTask(Task):
    name = "chitchat"

    def __init__(self, root: Path | None = None):
        self.conversations = load_chitchat(root)
        self.size = len(self.conversations)

    def conversation(self, index: int) -> list[dict]:
        return self.conversations[index % self.size]
