"""The Python sandbox runs ordinary code and contains the hostile kind.

Each hostile test runs twice where it can: with the in-process audit guard (the default) and, when we are
root on Linux with namespaces, without it, to prove the operating-system layer holds on its own. The child
sets its limits before any of the model's code runs; every test also has a hard alarm.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from picochat.tools import PythonSandbox
from picochat.tools.sandbox import SANDBOX_UID_COUNT, SANDBOX_UID_FIRST


def namespaces_work() -> bool:
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "true"], capture_output=True)
    return probe.returncode == 0


GUARDS = [
    pytest.param(True, id="guard"),
    pytest.param(
        False,
        id="os-only",
        marks=pytest.mark.skipif(not namespaces_work(), reason="needs root and Linux namespaces"),
    ),
]


@pytest.fixture(autouse=True)
def hard_timeout():
    """Fail, rather than hang, any test that runs past 20 s."""

    def expire(signum, frame):
        raise TimeoutError("test ran past its 20 s alarm")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def sandbox_processes() -> list[int]:
    """Processes on this machine that belong to a sandbox uid: there must be none after a run."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        if entry.isdigit() and SANDBOX_UID_FIRST <= uid < SANDBOX_UID_FIRST + SANDBOX_UID_COUNT:
            pids.append(int(entry))
    return pids


def test_ordinary_code_works():
    code = "import math\ntotal = 0\nfor i in range(10):\n    total += i\nprint(total, math.sqrt(16))\n"
    assert PythonSandbox().run(code).output == "45 4.0\n"
    assert PythonSandbox().run("print(2**10)").output == "1024\n"


def test_final_expression_is_printed_like_the_repl():
    assert PythonSandbox().run("x = 6\nx * 7").output == "42\n"
    assert PythonSandbox().run("None").output == ""


def test_stdout_and_stderr_are_captured_and_errors_reported():
    result = PythonSandbox().run("import sys\nprint('out')\nprint('err', file=sys.stderr)\n1/0")
    assert not result.ok
    assert "out\n" in result.output and "err\n" in result.output
    assert "ZeroDivisionError: division by zero" in result.output
    assert "sandbox_child" not in result.output  # the traceback shows the model's code only


def test_output_is_truncated():
    result = PythonSandbox(max_output_chars=100).run("for i in range(100_000): print('x' * 50)")
    assert result.ok
    assert result.output.startswith("x" * 50)
    assert "[output truncated to 100 characters]" in result.output
    assert len(result.output) < 200


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("PICOCHAT_SECRET_TOKEN", "hunter2")
    output = PythonSandbox().run("import os\nprint(sorted(os.environ))").output
    assert "PICOCHAT_SECRET_TOKEN" not in output
    assert output.strip() == "['HOME', 'LANG', 'PATH', 'TMPDIR']"


def test_working_directory_is_writable_and_private():
    code = "open('notes.txt', 'w').write('hi')\nimport os\nprint(open('notes.txt').read(), os.listdir('.'))"
    result = PythonSandbox().run(code)
    assert result.ok, result.output
    assert "hi" in result.output and "notes.txt" in result.output


@pytest.mark.parametrize("audit_guard", GUARDS)
def test_infinite_loop_is_stopped(audit_guard):
    start = time.monotonic()
    result = PythonSandbox(timeout_s=1.0, audit_guard=audit_guard).run("while True:\n    pass")
    assert time.monotonic() - start < 5
    assert result == result.__class__(ok=False, output="error: timed out after 1 s")
    assert sandbox_processes() == []


@pytest.mark.parametrize("audit_guard", GUARDS)
@pytest.mark.parametrize(
    "code",
    ["bytearray(10**10)", "hoard = []\nwhile True:\n    hoard.append(bytearray(10**6))"],
    ids=["big", "growing"],
)
def test_memory_bomb_is_stopped(code, audit_guard):
    result = PythonSandbox(timeout_s=5.0, memory_mb=128, audit_guard=audit_guard).run(code)
    assert not result.ok
    assert "MemoryError" in result.output


@pytest.mark.parametrize("audit_guard", GUARDS)
def test_fork_bomb_is_contained(audit_guard):
    start = time.monotonic()
    result = PythonSandbox(timeout_s=2.0, audit_guard=audit_guard).run(
        "import os\nwhile True:\n    os.fork()"
    )
    assert time.monotonic() - start < 10
    assert not result.ok
    if audit_guard:
        assert "starting a process is not allowed" in result.output
    else:
        assert "Resource temporarily unavailable" in result.output  # fork() hit RLIMIT_NPROC
    assert sandbox_processes() == []


@pytest.mark.parametrize("audit_guard", GUARDS)
def test_writes_outside_the_directory_fail(audit_guard):
    escape = f"/tmp/escape_{uuid.uuid4().hex}"
    code = f"open({escape!r}, 'w').write('out')"
    result = PythonSandbox(audit_guard=audit_guard).run(code)
    assert not result.ok
    assert "PermissionError" in result.output or "Read-only file system" in result.output
    assert not os.path.exists(escape)


@pytest.mark.parametrize("audit_guard", GUARDS)
def test_network_is_unreachable(audit_guard):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        )
        result = PythonSandbox(audit_guard=audit_guard).run(code)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected
    assert not result.ok
    assert "connected" not in result.output.splitlines()
    assert "network access is not allowed" in result.output or "unreachable" in result.output


def test_guard_checks_where_a_symlink_is_made_and_what_it_opens():
    code = "import os\nos.symlink('/etc', 'etc')\nprint(len(os.listdir('etc')) > 0)\nopen('etc/evil', 'w')"
    result = PythonSandbox().run(code)
    assert result.output.startswith("True\n")
    assert "PermissionError: sandbox: writing 'etc/evil'" in result.output
    assert "os.symlink on '/tmp/link" in PythonSandbox().run("import os\nos.symlink('x', '/tmp/link')").output


def test_working_directory_is_removed_afterwards():
    workdir = PythonSandbox().run("import os\nprint(os.getcwd())").output.strip()
    assert workdir and not os.path.exists(workdir)


@pytest.mark.skipif(not namespaces_work(), reason="needs root and Linux namespaces")
def test_runs_unprivileged_as_pid_1():
    result = PythonSandbox(audit_guard=False).run("import os\nprint(os.getuid() != 0, os.getpid())")
    assert result.output == "True 1\n"  # an unprivileged uid, PID 1 of its own namespace
