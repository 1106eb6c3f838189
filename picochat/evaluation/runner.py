"""Running a suite on one process or many: problems split across torchrun ranks, results gathered, and a
progress bar on rank 0.

Rank r takes problems r, r + W, r + 2W, ... of each task (W = world size), scores them and returns
{problem index: outcome}; `gather` merges every rank's dict with `all_gather_object`, so each rank ends with
all outcomes in the problems' order: the same numbers as one process, whatever W is.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from picochat.runtime import DistInfo


def my_share(indices: list[int], dist: DistInfo) -> list[int]:
    """The problems this rank scores."""
    return indices[dist.rank :: dist.world_size]


def gather(outcomes: dict[int, object], dist: DistInfo) -> dict[int, object]:
    """Every rank's outcomes merged (a no-op on one process)."""
    if not dist.is_distributed:
        return outcomes
    import torch.distributed

    parts: list[dict | None] = [None] * dist.world_size
    torch.distributed.all_gather_object(parts, outcomes)
    merged: dict[int, object] = {}
    for part in parts:
        merged.update(part or {})
    return merged


class Progress:
    """A rich progress bar (rank 0, on a terminal); otherwise one line per task when it finishes."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    @contextlib.contextmanager
    def task(self, name: str, total: int) -> Iterator:
        """Yields advance(k): call it as problems finish."""
        if not self.enabled or not sys.stdout.isatty():
            yield lambda k: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        columns = (
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with RichProgress(*columns, transient=True) as bar:
            handle = bar.add_task(name, total=total)
            yield lambda k: bar.advance(handle, k)
