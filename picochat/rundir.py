"""One writer per run directory: `with RunDirLock(run_dir):` refuses a second training run on it, which
would overwrite the first's checkpoints (docs/reliability.md: an `fcntl.flock`, else O_EXCL and a pid).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from picochat.errors import UserError

try:
    import fcntl
except ImportError:  # not on POSIX
    fcntl = None

LOCK_FILE = "writer.lock"


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # it exists, it is just not ours
    except OSError:
        return False
    return True


def recorded_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class RunDirLock:
    """The writer lock of `run_dir` in a `with` block (a no-op unless `enabled`: ranks that do not write)."""

    def __init__(self, run_dir: Path | str, enabled: bool = True):
        self.path = Path(run_dir) / LOCK_FILE
        self.enabled = enabled
        self.fd: int | None = None

    def acquire(self) -> None:
        if not self.enabled:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot use {self.path.parent} as a run directory: {error.strerror}") from None
        fd = self._lock_flock() if fcntl is not None else self._create_exclusive()
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def _lock_flock(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise self._refusal() from None
        return fd

    def _create_exclusive(self) -> int:
        for _ in range(2):
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if process_alive(recorded_pid(self.path) or -1):
                    raise self._refusal() from None
                self.path.unlink(missing_ok=True)  # stale: its writer died without removing it
        raise self._refusal()

    def _refusal(self) -> UserError:
        pid = recorded_pid(self.path)
        holder = f"process {pid}" if pid is not None else "another process"
        return UserError(
            f"run directory {self.path.parent} is in use by {holder} (it holds {self.path}); "
            "wait for that run to finish or stop it, or choose another directory (--run-dir, --out)"
        )

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if fcntl is None:
                self.path.unlink()
            else:
                os.ftruncate(self.fd, 0)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
