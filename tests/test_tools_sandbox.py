"""The Python sandbox runs ordinary code and contains the hostile kind, as root and as an unprivileged user.

Every attack runs in four ways where the machine allows: as root (mount, network and PID namespaces and a
uid of its own) and as an unprivileged user (the same walls, built from a user namespace), each with the
in-process audit guard and with the guard switched off, which is what hostile code gets when it removes the
guard itself (`GUARD_REMOVAL` below does it in a few lines). The unprivileged runs happen in a forked
helper that drops to `nobody` first when the tests run as root. A case the machine cannot run is skipped
with the reason. Every test also has a hard alarm.
"""

import contextlib
import ctypes
import functools
import glob
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from picochat.errors import UserError
from picochat.tools import ToolResult
from picochat.tools import sandbox as sandbox_module
from picochat.tools.sandbox import SANDBOX_UID_COUNT, SANDBOX_UID_FIRST, PythonSandbox, get_tool

NOBODY = 65534

# Replace the audit hook's code with a no-op of the same shape: what hostile code does to the guard.
GUARD_REMOVAL = """
import gc
for _obj in gc.get_objects():
    if callable(_obj) and getattr(_obj, "__name__", "") == "guard" and hasattr(_obj, "__code__"):
        _names = _obj.__code__.co_freevars
        _src = "def _outer():\\n" + "".join(f" {n} = None\\n" for n in _names)
        _src += " def guard(event, args):\\n  " + ("; ".join(_names) or "pass") + "\\n return guard\\n"
        _scope = {}
        exec(_src, _scope)
        _obj.__code__ = _scope["_outer"]().__code__
import socket
socket.socket  # the guard would have refused the next line; now nothing does
"""


# ---- running the sandbox as root or as an unprivileged user ------------------------------------------


def run_unprivileged(function, *args):
    """Call function(*args) in a forked child that runs as `nobody` (when we are root); return its value."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, run, send the JSON result, leave without cleanup handlers
        try:
            os.close(read_end)
            if sandbox_module.real_root():
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            if not os.access(sandbox_module.PYTHON, os.X_OK):  # e.g. a Python under /root: use the system's
                sandbox_module.PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sandbox_module.PYTHON
            value = function(*args)
            payload = json.dumps({"value": value})
        except BaseException as error:  # noqa: BLE001 - everything goes back to the test
            payload = json.dumps({"error": f"{type(error).__name__}: {error}"})
        with os.fdopen(write_end, "w") as out:
            out.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as source:
        payload = json.loads(source.read() or '{"error": "the helper died"}')
    os.waitpid(pid, 0)
    if "error" in payload:
        raise RuntimeError(payload["error"])
    return payload["value"]


def _sandbox_run(code: str, options: dict) -> list:
    result = PythonSandbox(**options).run(code)
    return [result.ok, result.output]


def _walls_missing(isolation: str) -> str | None:
    return sandbox_module.walls_available(isolation)


def root_walls_missing() -> str | None:
    if sys.platform != "linux" or not sandbox_module.real_root():
        return "needs root on Linux"
    return sandbox_module.walls_available("root")


def unprivileged_walls_missing() -> str | None:
    if sys.platform != "linux":
        return "needs Linux"
    try:
        return run_unprivileged(_walls_missing, "user")
    except RuntimeError as error:
        return str(error)


ROOT_MISSING = root_walls_missing()
UNPRIVILEGED_MISSING = unprivileged_walls_missing()
# The tests of ordinary behaviour run on any machine: behind walls where there are some, else unsafe.
Sandbox = functools.partial(
    PythonSandbox, unsafe=sandbox_module.walls_available(sandbox_module.isolation_mode()) is not None
)

USERS = [
    pytest.param("root", id="root", marks=pytest.mark.skipif(bool(ROOT_MISSING), reason=f"{ROOT_MISSING}")),
    pytest.param(
        "unprivileged",
        id="unprivileged",
        marks=pytest.mark.skipif(
            bool(UNPRIVILEGED_MISSING), reason=f"no unprivileged user namespaces: {UNPRIVILEGED_MISSING}"
        ),
    ),
]
GUARDS = [pytest.param(True, id="guard"), pytest.param(False, id="no-guard")]


def run_as(user: str, code: str, **options) -> ToolResult:
    if user == "root":
        return PythonSandbox(**options).run(code)
    ok, output = run_unprivileged(_sandbox_run, code, options)
    return ToolResult(ok=ok, output=output)


def run_attack(user: str, guard: bool, code: str, **options) -> ToolResult:
    """Run hostile code; without the guard, the code also removes the guard first (as an attacker would)."""
    if not guard:
        code = GUARD_REMOVAL + code
    return run_as(user, code, **options)


def processes_named(token: str) -> list[int]:
    """Host processes whose name (/proc/PID/comm) is `token`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().strip() == token:
                found.append(int(entry))
        except OSError:
            continue
    return found


def sandbox_uid_processes() -> list[int]:
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


@pytest.fixture(autouse=True)
def hard_timeout():
    """Fail, rather than hang, any test that runs past 30 s."""

    def expire(signum, frame):
        raise TimeoutError("test ran past its 30 s alarm")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ---- ordinary code -------------------------------------------------------------------------------------


def test_ordinary_code_works():
    code = "import math\ntotal = 0\nfor i in range(10):\n    total += i\nprint(total, math.sqrt(16))\n"
    assert Sandbox().run(code).output == "45 4.0\n"
    assert Sandbox().run("print(2**10)").output == "1024\n"


@pytest.mark.parametrize("user", USERS)
def test_ordinary_code_works_for_every_user(user):
    assert run_as(user, "x = 6\nx * 7") == ToolResult(ok=True, output="42\n")


def test_final_expression_is_printed_like_the_repl():
    assert Sandbox().run("x = 6\nx * 7").output == "42\n"
    assert Sandbox().run("None").output == ""


def test_stdout_and_stderr_are_captured_and_errors_reported():
    result = Sandbox().run("import sys\nprint('out')\nprint('err', file=sys.stderr)\n1/0")
    assert not result.ok
    assert "out\n" in result.output and "err\n" in result.output
    assert "ZeroDivisionError: division by zero" in result.output
    assert "sandbox_child" not in result.output  # the traceback shows the model's code only


def test_output_is_truncated():
    result = Sandbox(max_output_chars=100).run("for i in range(100_000): print('x' * 50)")
    assert result.ok
    assert result.output.startswith("x" * 50)
    assert "[output truncated to 100 characters]" in result.output
    assert len(result.output) < 200


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("PICOCHAT_SECRET_TOKEN", "hunter2")
    output = Sandbox().run("import os\nprint(sorted(os.environ))").output
    assert "PICOCHAT_SECRET_TOKEN" not in output
    assert output.strip() == "['HOME', 'LANG', 'PATH', 'TMPDIR']"


@pytest.mark.parametrize("user", USERS)
def test_working_directory_is_writable_and_private(user):
    code = "open('notes.txt', 'w').write('hi')\nimport os\nprint(open('notes.txt').read(), os.listdir('.'))"
    result = run_as(user, code)
    assert result.ok, result.output
    assert "hi" in result.output and "notes.txt" in result.output


def test_working_directory_is_removed_afterwards():
    workdir = Sandbox().run("import os\nprint(os.getcwd())").output.strip()
    assert workdir and not os.path.exists(workdir)


def test_guard_checks_where_a_symlink_is_made_and_what_it_opens():
    code = "import os\nos.symlink('/etc', 'etc')\nprint(len(os.listdir('etc')) > 0)\nopen('etc/evil', 'w')"
    result = Sandbox().run(code)
    assert result.output.startswith("True\n")
    assert "PermissionError: sandbox: writing 'etc/evil'" in result.output
    assert "os.symlink on '/tmp/link" in Sandbox().run("import os\nos.symlink('x', '/tmp/link')").output


@pytest.mark.parametrize("user", USERS)
def test_runs_as_pid_1_of_its_own_namespace(user):
    result = run_as(
        user, "import os\nprint(os.getpid(), len([p for p in os.listdir('/proc') if p.isdigit()]))"
    )
    assert result.output.split()[0] == "1", result.output  # PID 1, and the host's processes are not in /proc
    assert int(result.output.split()[1]) <= 2


@pytest.mark.parametrize("user", USERS)
def test_every_namespace_is_the_sandboxs_own(user):
    kinds = ["cgroup", "ipc", "mnt", "net", "pid", "uts"] + (["user"] if user == "unprivileged" else [])
    code = f"import os\nfor kind in {kinds!r}:\n    print(os.readlink(f'/proc/self/ns/{{kind}}'))"
    inside = run_as(user, code).output.split()
    outside = [os.readlink(f"/proc/self/ns/{kind}") for kind in kinds]
    assert len(inside) == len(kinds) and not set(inside) & set(outside), (inside, outside)


def test_guard_removal_really_removes_the_guard():
    """The attack prelude works: with it, the guard no longer refuses sockets (so the walls are tested)."""
    result = Sandbox().run(GUARD_REMOVAL + "socket.socket(socket.AF_INET, socket.SOCK_STREAM)\nprint('made')")
    assert "made" in result.output, result.output


# ---- attacks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("user", USERS)
def test_infinite_loop_is_stopped(user, guard):
    start = time.monotonic()
    result = run_attack(user, guard, "while True:\n    pass", timeout_s=1.0)
    assert time.monotonic() - start < 8
    assert result == ToolResult(ok=False, output="error: timed out after 1 s")
    assert sandbox_uid_processes() == []


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("user", USERS)
def test_memory_bomb_is_stopped(user, guard):
    result = run_attack(
        user, guard, "hoard = []\nwhile True:\n    hoard.append(bytearray(10**6))", memory_mb=128
    )
    assert not result.ok
    assert "MemoryError" in result.output


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("user", USERS)
def test_fork_bomb_is_contained(user, guard):
    start = time.monotonic()
    result = run_attack(user, guard, "import os\nwhile True:\n    os.fork()", timeout_s=2.0)
    assert time.monotonic() - start < 15
    assert not result.ok
    if guard:
        assert "starting a process is not allowed" in result.output
    else:
        assert "Resource temporarily unavailable" in result.output  # fork() hit RLIMIT_NPROC
    assert sandbox_uid_processes() == []


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("user", USERS)
def test_writes_outside_the_working_directory_never_reach_the_host(user, guard):
    outside = Path("/var/tmp") / f"picochat_sandbox_test_{uuid.uuid4().hex}"
    outside.mkdir(mode=0o777)
    os.chmod(outside, 0o777)  # writable by any uid: only the read-only mount stands in the way
    escape_tmp = f"/tmp/escape_{uuid.uuid4().hex}"
    code = (
        "import os\n"
        f"for path in [{escape_tmp!r}, {str(outside / 'escape')!r}, os.path.expanduser('~/../escape')]:\n"
        "    try:\n"
        "        open(path, 'w').write('out')\n"
        "        print('wrote', path)\n"
        "    except OSError as error:\n"
        "        print('refused', path, error)\n"
    )
    try:
        result = run_attack(user, guard, code)
        assert not os.path.exists(escape_tmp)  # /tmp in the sandbox is its own, empty and discarded
        assert list(outside.iterdir()) == [], result.output
        assert f"refused {outside / 'escape'}" in result.output
    finally:
        for child in outside.iterdir():
            child.unlink()
        outside.rmdir()


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("user", USERS)
def test_network_is_unreachable(user, guard, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        )
        result = run_attack(user, guard, code)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected
    assert not result.ok
    assert "connected" not in result.output.splitlines()
    assert "network access is not allowed" in result.output or "unreachable" in result.output


def host_meeting_places() -> list[str]:
    """/run and the host's world-writable directories in the first two levels (not inside one another)."""
    found = ["/run"] if os.path.isdir("/run") else []
    for path in sorted(glob.glob("/*/") + glob.glob("/*/*/")):
        path = path.rstrip("/")
        if path.startswith(("/proc/", "/sys/")) or any(path.startswith(f"{top}/") for top in found):
            continue
        mode = os.lstat(path).st_mode
        if not stat.S_ISLNK(mode) and mode & stat.S_IWOTH:
            found.append(path)
    return found


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("user", USERS)
def test_host_unix_sockets_are_out_of_reach(user, guard):
    """A socket anyone may connect to, in /run and in every world-writable host directory, and an abstract
    one: the code reaches none of them."""
    token = uuid.uuid4().hex[:12]
    with contextlib.ExitStack() as stack:
        listeners = {}
        for address in [f"\0picochat_test_{token}"] + [
            f"{d}/picochat_test_{token}.sock" for d in host_meeting_places()
        ]:
            listener = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            try:
                listener.bind(address)
            except OSError:  # e.g. /dev/mqueue holds no sockets
                continue
            if not address.startswith("\0"):
                os.chmod(address, 0o777)
                stack.callback(os.unlink, address)
            listener.listen()
            listener.setblocking(False)
            listeners[address] = listener
        assert {"/tmp", "/var/tmp"} <= {os.path.dirname(a) for a in listeners}
        code = (
            "import socket\n"
            f"for address in {list(listeners)!r}:\n"
            "    try:\n"
            "        socket.socket(socket.AF_UNIX).connect(address)\n"
            "        print('connected', repr(address))\n"
            "    except OSError as error:\n"
            "        print('refused', repr(address), error)\n"
        )
        result = run_attack(user, guard, code)
        for listener in listeners.values():
            with pytest.raises(BlockingIOError):
                listener.accept()  # nothing ever connected
    assert not [line for line in result.output.splitlines() if line.startswith("connected")], result.output
    assert "refused" in result.output or "network access is not allowed" in result.output


def ipc_attack(key: int, name: str) -> str:
    """SysV shared memory, message queue and semaphores under `key`, a POSIX queue and shared memory named
    `name`: each printed as made or refused."""
    return (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "made = {}\n"
        f"made['shm'] = libc.shmget({key}, 64 << 20, 0o1666)  # IPC_CREAT | 0666\n"
        f"made['msg'] = libc.msgget({key}, 0o1666)\n"
        f"made['sem'] = libc.semget({key}, 1, 0o1666)\n"
        f"made['mqueue'] = libc.mq_open({name.encode()!r}, os.O_CREAT | os.O_RDWR, 0o666, None)\n"
        "try:\n"
        f"    made['posix shm'] = os.open('/dev/shm{name}', os.O_CREAT | os.O_RDWR, 0o666)\n"
        "except OSError:\n"
        "    made['posix shm'] = -1\n"
        "for what, result in made.items():\n"
        "    print('made' if result >= 0 else 'refused', what)\n"
    )


def host_ipc_keys() -> set[int]:
    keys = set()
    for kind in ("shm", "msg", "sem"):
        keys |= {int(line.split()[0]) for line in Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]}
    return keys


def host_has_mqueue(name: str) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    queue = libc.mq_open(name.encode(), os.O_RDONLY)
    if queue >= 0:
        libc.mq_close(queue)
        libc.mq_unlink(name.encode())
    return queue >= 0


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("user", USERS)
def test_no_ipc_object_outlives_the_call(user, guard):
    """Shared memory and queues live in the sandbox's own IPC namespace and die with it; none appear on the
    host (where one call could otherwise pin memory for good)."""
    key, name = int(uuid.uuid4().hex[:7], 16) + 1, f"/picochat_test_{uuid.uuid4().hex[:12]}"
    result = run_attack(user, guard, ipc_attack(key, name), timeout_s=2.0)
    try:
        assert key not in host_ipc_keys(), result.output
        assert not host_has_mqueue(name), result.output
        assert not os.path.exists(f"/dev/shm{name}"), result.output
    finally:
        if shutil.which("ipcrm"):  # only an escape leaves something to remove
            subprocess.run(["ipcrm", "-M", str(key), "-Q", str(key), "-S", str(key)], capture_output=True)
        Path(f"/dev/shm{name}").unlink(missing_ok=True)
    if guard:
        assert "ctypes" in result.output and "not allowed" in result.output
    else:  # the objects were made, inside: the namespace, not a failed call, kept them off the host
        assert "made shm\nmade msg\nmade sem\nmade mqueue\nrefused posix shm\n" in result.output


@pytest.mark.parametrize("user", USERS)
def test_the_host_name_is_the_sandboxs_own(user):
    host_name = socket.gethostname()
    code = GUARD_REMOVAL + (
        "import ctypes, os\nprint(os.uname().nodename, ctypes.CDLL(None).sethostname(b'evil', 4))\n"
    )
    assert run_as(user, code).output == "sandbox -1\n"
    assert socket.gethostname() == host_name


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("user", USERS)
def test_host_processes_cannot_be_signalled(user, guard):
    as_nobody = (
        {"user": NOBODY, "group": NOBODY} if user == "unprivileged" and sandbox_module.real_root() else {}
    )
    victim = subprocess.Popen(["sleep", "30"], **as_nobody)  # same uid as the sandboxed code
    try:
        code = (
            "import os, signal\n"
            f"for target in ({victim.pid}, -1):\n"
            "    try:\n"
            "        os.kill(target, signal.SIGKILL)\n"
            "        print('sent', target)\n"
            "    except OSError as error:\n"
            "        print('refused', target, error)\n"
        )
        result = run_attack(user, guard, code)
        time.sleep(0.2)
        assert victim.poll() is None, result.output  # still alive
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize("user", USERS)
def test_no_process_survives_the_call(user):
    """A daemon that leaves the process group and undoes PDEATHSIG still dies with the call."""
    token = f"pcsbx{uuid.uuid4().hex[:8]}"
    code = (
        "import os, time, ctypes\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        ctypes.CDLL(None).prctl(1, 0)  # PR_SET_PDEATHSIG 0\n"
        f"        open('/proc/self/comm', 'w').write({token!r})\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(0.5)\n"
        "print('daemon started')\n"
    )
    result = run_attack(user, False, code, timeout_s=3.0)
    assert "daemon started" in result.output, result.output
    time.sleep(0.2)
    assert processes_named(token) == []
    assert sandbox_uid_processes() == []


# ---- where the walls cannot be built ------------------------------------------------------------------


def test_without_walls_the_sandbox_refuses_unless_told_unsafe(monkeypatch):
    monkeypatch.setattr(sandbox_module, "walls_available", lambda isolation: "no namespaces (test)")
    with pytest.raises(UserError, match="--unsafe-python"):
        PythonSandbox()
    with pytest.raises(UserError, match="--unsafe-python"):
        get_tool("python")
    with pytest.raises(UserError, match="no barrier"):
        PythonSandbox(unsafe=True, audit_guard=False)
    tool = get_tool("python", unsafe=True)
    assert tool.isolation == "none"
    assert tool.run("print(6 * 7)") == ToolResult(ok=True, output="42\n")
    assert "network access is not allowed" in tool.run("import socket\nsocket.socket()").output


def test_get_tool_returns_a_tool_object_as_it_is():
    tool = Sandbox(timeout_s=2.0)
    assert get_tool(tool) is tool


@pytest.mark.parametrize("user", USERS)
def test_the_code_holds_no_power_to_undo_the_walls(user):
    code = GUARD_REMOVAL + (
        "import ctypes\n"
        "status = dict(line.split(':\\t') for line in open('/proc/self/status').read().splitlines() if ':\\t' in line)\n"
        "print('CapEff', status['CapEff'], 'NoNewPrivs', status['NoNewPrivs'])\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('remount', libc.mount(None, b'/', None, 32 | 4096, None))  # MS_REMOUNT | MS_BIND, read-write\n"
        "print('userns', libc.unshare(0x10000000))\n"
    )
    result = run_as(user, code)
    assert "CapEff 0000000000000000 NoNewPrivs 1" in result.output, result.output
    assert "remount -1" in result.output
    if user == "unprivileged":
        assert "userns -1" in result.output  # no nested user namespace, so no capabilities again


def test_chat_refuses_the_python_tool_without_walls_unless_told_unsafe(monkeypatch, capsys):
    from picochat import cli

    monkeypatch.setattr(sandbox_module, "walls_available", lambda isolation: "no namespaces (test)")
    assert cli.main(["chat", "--tool", "python", "-p", "hi"]) == 2  # before any model is loaded
    assert "--unsafe-python" in capsys.readouterr().err
    assert cli.main(["chat", "--tool", "python", "--unsafe-python", "-p", "hi"]) == 2  # now: no checkpoint
    assert "no trained model" in capsys.readouterr().err


def _refusal_where_the_kernel_denies_user_namespaces() -> list:
    """In a process that may create no user namespace: does the sandbox refuse, and does unsafe run?"""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    libc.prctl(4, 1)  # PR_SET_DUMPABLE: after setuid, /proc/self would still belong to root
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER: a namespace of our own, to forbid nested ones in
        return ["setup failed"]
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        Path(f"/proc/self/{name}").write_text(text)
    Path("/proc/sys/user/max_user_namespaces").write_text("0")
    sandbox_module.walls_available.cache_clear()
    try:
        PythonSandbox()
        refused = "started"
    except UserError as error:
        refused = str(error)
    result = PythonSandbox(unsafe=True).run("print(6 * 7)")
    return [refused, result.ok, result.output]


@pytest.mark.skipif(
    bool(UNPRIVILEGED_MISSING), reason=f"no unprivileged user namespaces: {UNPRIVILEGED_MISSING}"
)
def test_a_kernel_that_denies_namespaces_makes_the_sandbox_refuse():
    """Not a mock: the probe really fails (user namespaces are forbidden in the helper), so the tool
    refuses to start, naming --unsafe-python; with unsafe=True it runs behind the guard."""
    refused, ok, output = run_unprivileged(_refusal_where_the_kernel_denies_user_namespaces)
    assert "cannot build its walls" in refused and "--unsafe-python" in refused, refused
    assert ok and output == "42\n"
