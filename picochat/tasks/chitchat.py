"""Small talk between people (PyPI chitchat-dataset 0.9.0, MIT): 7,168 casual conversations, fetched by
`data.fetch.fetch_task_data`; the task only reads them. The first speaker becomes the user, the second the
assistant; consecutive messages of one speaker join into one turn.
"""

import json
from pathlib import Path

from picochat.errors import UserError
from picochat.paths import chitchat_dir
from picochat.tasks.common import Task

MAX_TURNS = 8


def load_chitchat(root: Path | None = None) -> list[list[dict]]:
    """Conversations as alternating user/assistant messages, from the fetched package under `root`."""
    root = Path(root or chitchat_dir())
    dataset = next(root.rglob("dataset.json"), None) if root.exists() else None
    if dataset is None:
        raise UserError(
            f"no chitchat_dataset/dataset.json under {root}: `picochat sft` fetches it for a mixture with "
            "chitchat (from Python: picochat.data.fetch.fetch_task_data(mixture)); if the folder exists, "
            "delete it and fetch again"
        )
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
