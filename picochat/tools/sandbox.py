"""The Python sandbox, host side: start `sandbox_child.py` (which locks itself down), feed it the code,
collect its output within a time limit, and leave no process behind (docs/tools.md)."""

import contextlib
import functools
import json
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from picochat.errors import UserError
from picochat.tools import TOOL_NAMES
from picochat.tools.calculator import Calculator, ToolResult
from picochat.tools.sandbox_child import EXIT_NO_WALLS, processes_of

SANDBOX_CHILD = Path(__file__).with_name("sandbox_child.py")
PYTHON = sys.executable  # the child needs only the standard library; any Python 3.9+ will do
MAX_PROCESSES = 16  # processes and threads together, for the run's own uid
MAX_OPEN_FILES = 64
DISK_MB = 64  # the working directory's tmpfs, and the largest file anywhere
MAX_CODE_CHARS = 100_000
# Each run, when we are root, gets a uid of its own from this range: no file on the machine belongs to it,
# it counts its own processes for RLIMIT_NPROC, and no other run can signal or read it.
SANDBOX_UID_FIRST, SANDBOX_UID_COUNT = 1_500_000_000, 1_000_000
KILL_SWEEPS = 50
PIDFD_WAIT_S = 5.0  # how long the child may take to build its walls and report its PID 1
# The working directory is made here, so that it keeps its path inside the child's private /tmp.
WORKDIR_PARENT = "/tmp" if sys.platform == "linux" else None


def real_root() -> bool:
    """euid 0 with the sandbox uids mapped (not the uid 0 of a rootless container's user namespace)."""
    if os.geteuid() != 0:
        return False
    try:
        uid_map = Path("/proc/self/uid_map").read_text()
    except OSError:
        return sys.platform != "linux"
    for first, _, count in (
        map(int, line.split()) for line in uid_map.splitlines() if len(line.split()) == 3
    ):
        if first <= SANDBOX_UID_FIRST and first + count >= SANDBOX_UID_FIRST + SANDBOX_UID_COUNT:
            return True
    return False


def isolation_mode() -> str:
    return "root" if real_root() else "user"


@functools.cache
def walls_available(isolation: str) -> str | None:
    """None if the child can build its namespaces here, else why not (probed once per process)."""
    if sys.platform != "linux":
        return f"namespaces are Linux only (this is {sys.platform})"
    with tempfile.TemporaryDirectory(prefix="picochat_sandbox_probe_", dir=WORKDIR_PARENT) as workdir:
        config = {"workdir": workdir, "uid": None, "isolation": isolation, "disk_mb": 1, "probe": True}
        command = [PYTHON, "-I", "-S", "-B", str(SANDBOX_CHILD), json.dumps(config)]
        try:
            probe = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=workdir)
        except (OSError, subprocess.TimeoutExpired) as error:
            return str(error)
    if probe.returncode == 0:
        return None
    lines = probe.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {probe.returncode}"


class PythonSandbox:
    """Runs Python code in a subprocess with time, memory, process, file and network limits. Tests turn
    `audit_guard` (sandbox_child.install_guard) off to prove that the operating-system walls hold alone."""

    def __init__(
        self,
        timeout_s: float = 5.0,
        memory_mb: int = 256,
        max_output_chars: int = 2000,
        *,
        audit_guard: bool = True,
        unsafe: bool = False,
    ):
        self.timeout_s, self.memory_mb, self.max_output_chars = timeout_s, memory_mb, max_output_chars
        self.audit_guard = audit_guard
        self.isolation = isolation_mode()
        missing = walls_available(self.isolation)
        if missing is not None:
            if not unsafe:
                raise UserError(
                    f"the Python sandbox cannot build its walls here ({missing}): it needs Linux namespaces "
                    "(root, or unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1 / "
                    "user.max_user_namespaces > 0). Use the calculator tool, or pass --unsafe-python "
                    "(unsafe=True) to run code behind the in-process guard and resource limits only"
                )
            if not audit_guard:
                raise UserError("unsafe=True without the audit guard would run code with no barrier at all")
            self.isolation = "none"

    def run(self, code: str) -> ToolResult:
        """Run `code`: its stdout and stderr interleaved, truncated, and an error line if it failed."""
        if len(code) > MAX_CODE_CHARS:
            return ToolResult(False, f"error: code is {len(code)} characters; the limit is {MAX_CODE_CHARS}")
        uid = SANDBOX_UID_FIRST + secrets.randbelow(SANDBOX_UID_COUNT) if real_root() else None
        with tempfile.TemporaryDirectory(
            prefix="picochat_sandbox_", dir=WORKDIR_PARENT, ignore_cleanup_errors=True
        ) as workdir:
            if uid is not None:
                os.chown(workdir, uid, uid)
            host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                process = self._start(workdir, uid, child_end.fileno())
            finally:
                child_end.close()
            namespace_init = None
            try:
                send_code(process, code)
                if self.isolation != "none":
                    namespace_init = receive_pidfd(host_end, PIDFD_WAIT_S)
                output, timed_out = read_output(process, self.timeout_s, 4 * self.max_output_chars)
            finally:
                host_end.close()
                kill_everything(process, uid, namespace_init)
        if process.returncode == EXIT_NO_WALLS:
            return ToolResult(ok=False, output="error: the sandbox could not build its walls; nothing ran")
        return self._result(output, timed_out, process.returncode)

    def _start(self, workdir: str, uid: int | None, report_fd: int) -> subprocess.Popen:
        """The child, in its own process group (so one killpg ends it), with a bare environment."""
        config = {
            "workdir": workdir,
            "uid": uid,
            "isolation": self.isolation,
            "report_fd": report_fd,
            "memory_mb": self.memory_mb,
            "cpu_seconds": int(self.timeout_s) + 1,
            "max_processes": MAX_PROCESSES,
            "max_open_files": MAX_OPEN_FILES,
            "disk_mb": DISK_MB,
            "audit_guard": self.audit_guard,
        }
        return subprocess.Popen(
            [PYTHON, "-I", "-S", "-B", "-u", str(SANDBOX_CHILD), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir},
            start_new_session=True,
            pass_fds=(report_fd,),
        )

    def _result(self, raw_output: bytes, timed_out: bool, returncode: int) -> ToolResult:
        output = raw_output.decode("utf-8", errors="replace")
        if len(output) > self.max_output_chars or len(raw_output) >= 4 * self.max_output_chars:
            note = f"\n[output truncated to {self.max_output_chars} characters]\n"
            output = output[: self.max_output_chars] + note
        if timed_out:
            return ToolResult(ok=False, output=output + f"error: timed out after {self.timeout_s:g} s")
        if returncode < 0:
            reason = {signal.SIGXCPU: "CPU time limit", signal.SIGKILL: "SIGKILL"}.get(-returncode)
            name = reason or signal.Signals(-returncode).name
            return ToolResult(ok=False, output=output + f"error: killed by {name}")
        if returncode != 0 and not output:
            return ToolResult(ok=False, output=f"error: exit status {returncode}")
        return ToolResult(ok=returncode == 0, output=output)


def send_code(process: subprocess.Popen, code: str) -> None:
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(code.encode("utf-8", errors="surrogatepass"))
        process.stdin.close()


def read_output(process: subprocess.Popen, timeout_s: float, limit_bytes: int) -> tuple[bytes, bool]:
    """(output, timed_out): read until the child exits or time runs out, keeping at most limit_bytes and
    discarding the rest (a chatty child must not block on a full pipe)."""
    deadline = time.monotonic() + timeout_s
    kept = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(kept), True
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:  # end of file: every process holding the pipe has exited or closed it
                break
            kept += chunk[: max(0, limit_bytes - len(kept))]
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return bytes(kept), True
    return bytes(kept), False


def receive_pidfd(connection: socket.socket, timeout_s: float) -> int | None:
    """The pidfd of the PID 1 of the sandbox's namespace, sent by the child before the code runs."""
    connection.settimeout(timeout_s)
    try:
        _, fds, _, _ = socket.recv_fds(connection, 16, 1)
    except OSError:  # timeout, or the child died first
        return None
    return fds[0] if fds else None


def kill_everything(process: subprocess.Popen, uid: int | None, namespace_init: int | None = None) -> None:
    """SIGKILL the namespace's PID 1 through its pidfd (a recycled pid cannot be hit), every process of the
    run's uid (those that left the group with setsid()), then the child's process group; reap the child."""
    if namespace_init is not None:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(namespace_init, signal.SIGKILL)
        os.close(namespace_init)
    if uid is not None and os.path.isdir("/proc"):
        for _ in range(KILL_SWEEPS):
            survivors = [pid for pid, state in processes_of(uid).items() if state != "Z"]
            if not survivors:
                break
            for pid in survivors:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()


def get_tool(name, unsafe: bool = False) -> Calculator | PythonSandbox | None:
    """The tool called `name` ("calculator", "python" or "none") with default limits; a tool object as is."""
    if name is None or isinstance(name, (Calculator, PythonSandbox)):
        return name
    if name == "none":
        return None
    if name == "calculator":
        return Calculator()
    if name == "python":
        return PythonSandbox(unsafe=unsafe)
    raise UserError(f"unknown tool {name!r}: choose one of {', '.join(TOOL_NAMES)}")
