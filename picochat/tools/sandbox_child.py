"""The inside of the Python sandbox: this script starts as the child of `PythonSandbox.run`, locks itself
down, then runs the model's code.

It is run as `python -I -S -B -u sandbox_child.py CONFIG_JSON` with the model's code on stdin, and imports
only the standard library. Steps, in order, all before a line of the model's code runs:

1. Read the code from stdin.
2. When root (Linux): new mount, network and PID namespaces; every mount read-only; a fresh, size-bounded
   tmpfs as the working directory; fork so the code runs as PID 1 of its namespace, where killing it kills
   every process it started.
3. Resource limits: address space, CPU seconds, processes, file size, open files.
4. When root: drop to the run's own unprivileged uid (no supplementary groups).
5. The audit-hook guard (a second, in-process layer): refuse sockets, process creation, ctypes, and writes
   outside the working directory.
6. Run the code as `__main__`; like the REPL, a final bare expression has its value printed.
"""

import ast
import builtins
import json
import os
import re
import resource
import signal
import sys
import traceback

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 1 << 14, 1 << 18
MOUNT_OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024}
PR_SET_PDEATHSIG = 1

PROCESS_EVENTS = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                  "subprocess.Popen"}  # fmt: skip
PATH_EVENTS = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.chmod", "os.chown", "os.link", "os.symlink",
               "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile"}  # fmt: skip
BLOCKED_MODULES = {"ctypes", "_ctypes", "_posixsubprocess"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def main() -> None:
    config = json.loads(sys.argv[1])
    code = sys.stdin.read()
    workdir, uid = config["workdir"], config["uid"]
    if uid is not None and sys.platform == "linux" and enter_namespaces(workdir, uid, config["disk_mb"]):
        become_namespace_init()
    with open(os.path.join(workdir, "main.py"), "w") as file:
        file.write(code)
    set_limits(config)
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    os.chdir(workdir)
    if config["audit_guard"]:
        install_guard(workdir)
    sys.exit(run_code(code))


def enter_namespaces(workdir: str, uid: int, disk_mb: int) -> bool:
    """Unshare mount, network and PID namespaces, make every mount read-only, mount a tmpfs on workdir.

    Returns False (and changes nothing) where the kernel refuses to unshare, e.g. in a container without
    CAP_SYS_ADMIN; the sandbox then relies on the uid, the limits and the guard. Once unshared, failing to
    mount the working directory is fatal: the run fails rather than write into the host's /tmp.
    """
    import ctypes  # loaded here and dropped below, so the model's code cannot reach it through us

    libc = ctypes.CDLL(None, use_errno=True)
    try:
        if libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID) != 0:
            return False
        # Private propagation first, so nothing below leaks back into the host's mount table.
        libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None)
        for mount_point, options in read_mounts():
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY
            flags |= sum(MOUNT_OPTION_FLAGS.get(option, 0) for option in set(options))
            # Best effort: a mount that refuses to go read-only stays protected by the dropped uid.
            libc.mount(None, mount_point.encode(), None, flags, None)
        expose_standard_library(libc)
        tmpfs_options = f"size={disk_mb}m,mode=0700,uid={uid},gid={uid}".encode()
        if libc.mount(b"tmpfs", workdir.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, tmpfs_options) != 0:
            raise OSError(ctypes.get_errno(), f"cannot mount a tmpfs on {workdir}")
        return True
    finally:
        del libc
        for name in ("ctypes", "_ctypes"):
            sys.modules.pop(name, None)


def expose_standard_library(libc) -> None:
    """Make the standard library readable by the unprivileged uid, and hide the private directory it sits in.

    Python is often installed in a home directory that only root may enter (e.g. pyenv in /root): the
    dropped uid could not import `math`. For each such directory on sys.path, a small tmpfs goes over the
    private ancestor (hiding everything else in it) and the library directory is bind-mounted back, read-only,
    at its own path.
    """
    covered = set()
    for directory in sys.path:
        private = first_private_ancestor(directory) if os.path.isdir(directory) else None
        if private is None:
            continue
        handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)  # reaches it after the tmpfs hides it
        if private not in covered:
            libc.mount(b"tmpfs", private.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755")
            covered.add(private)
        os.makedirs(directory, exist_ok=True)
        libc.mount(f"/proc/self/fd/{handle}".encode(), directory.encode(), None, MS_BIND, None)
        libc.mount(None, directory.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        os.close(handle)
    for private in covered:
        libc.mount(None, private.encode(), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def first_private_ancestor(directory: str) -> str | None:
    """The first directory on the way to `directory` that other users may not enter, if any."""
    path = "/"
    for part in os.path.abspath(directory).strip("/").split("/"):
        path = os.path.join(path, part)
        if not os.stat(path).st_mode & 0o001:
            return path
    return None


def read_mounts() -> list[tuple[str, list[str]]]:
    """(mount point, per-mount options) for every mount, parents before children."""
    mounts = []
    with open("/proc/self/mountinfo") as file:
        for line in file:
            fields = line.split()
            # Paths escape space, tab, newline and backslash as octal: "\040" is a space.
            mount_point = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), fields[4])
            mounts.append((mount_point, fields[5].split(",")))
    return mounts


def become_namespace_init() -> None:
    """Fork: the child goes on as PID 1 of the new PID namespace; this process waits and mirrors its exit.

    When PID 1 of a namespace dies the kernel kills every other process in it, so killing the child (or
    this parent, through PDEATHSIG) reliably ends fork bombs and daemons that escaped the process group.
    """
    pid = os.fork()
    if pid == 0:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # A /proc of our own, so the code sees its own processes and none of the host's.
        libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        del libc
        for name in ("ctypes", "_ctypes"):
            sys.modules.pop(name, None)
        return
    sys.stdin.close()
    _, status = os.waitpid(pid, 0)
    exit_code = os.waitstatus_to_exitcode(status)
    if exit_code < 0:  # killed by a signal: die by the same one, so the host sees what happened
        signal.signal(-exit_code, signal.SIG_DFL)
        os.kill(os.getpid(), -exit_code)
    os._exit(exit_code if exit_code >= 0 else 128 - exit_code)


def set_limits(config: dict) -> None:
    """Kernel resource limits; each applies to every process the code starts."""
    memory_bytes = config["memory_mb"] * 1024 * 1024
    max_processes = config["max_processes"]
    if config["uid"] is None and sys.platform == "linux":
        # Without a uid of its own, RLIMIT_NPROC counts all of this user's processes: allow a few more.
        max_processes += count_processes(os.getuid())
    limits = {
        resource.RLIMIT_AS: memory_bytes,
        resource.RLIMIT_CPU: config["cpu_seconds"],
        resource.RLIMIT_FSIZE: config["disk_mb"] * 1024 * 1024,
        resource.RLIMIT_NOFILE: config["max_open_files"],
        resource.RLIMIT_CORE: 0,
    }
    if hasattr(resource, "RLIMIT_NPROC"):
        limits[resource.RLIMIT_NPROC] = max_processes
    for limit, value in limits.items():
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):
            pass  # e.g. macOS refuses RLIMIT_AS; the other layers still hold


def count_processes(uid: int) -> int:
    """How many processes uid owns now (Linux /proc)."""
    count = 0
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                count += 1
        except OSError:
            pass  # the process ended while we looked
    return count


def install_guard(workdir: str) -> None:
    """An audit hook that refuses network, new processes, ctypes and writes outside workdir.

    Audit hooks are a speed bump, not a wall: code that tampers with the interpreter can get around them.
    The walls are the namespaces, the uid and the limits; the guard gives clear errors and covers
    systems where the walls are missing.
    """
    root = os.path.realpath(workdir)

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return True  # a file descriptor: the file was already opened, and checked, by path
        resolved = os.path.realpath(os.fsdecode(path))
        return resolved == root or resolved.startswith(root + os.sep)

    def refuse(what: str) -> None:
        raise PermissionError(f"sandbox: {what} is not allowed")

    def guard(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (flags or 0) & WRITE_FLAGS or (isinstance(mode, str) and set(mode) & set("wax+"))
            if writing and path is not None and not inside(path):
                refuse(f"writing {os.fsdecode(path)!r} (outside {root})")
        elif event.startswith("socket."):
            refuse("network access")
        elif event in PROCESS_EVENTS:
            refuse("starting a process")
        elif event.startswith("ctypes.") or (event == "import" and args[0] in BLOCKED_MODULES):
            refuse(f"{event} {args[0] if args else ''}".strip())
        elif event in PATH_EVENTS:
            # A symlink may point anywhere (opening through it is checked); where it is made must be inside.
            paths = {
                "os.rename": args[:2],
                "os.link": args[:2],
                "shutil.move": args[:2],
                "os.symlink": args[1:2],
            }
            for path in paths.get(event, args[:1]):
                if not inside(path):
                    refuse(f"{event} on {os.fsdecode(path)!r} (outside {root})")

    sys.addaudithook(guard)


def run_code(code: str) -> int:
    """Run the code as __main__; print the value of a final bare expression. Returns the exit status."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        tree = ast.parse(code, filename="main.py")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "main.py", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "main.py", "eval"), namespace)
            if value is not None:
                print(repr(value))
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            return exit.code or 0
        print(exit.code, file=sys.stderr)
        return 1
    except BaseException as error:
        # Show the traceback of the model's code only, without this script's frames (run_code, the guard).
        report = traceback.TracebackException.from_exception(error)
        frames = [] if isinstance(error, SyntaxError) else [f for f in report.stack if f.filename != __file__]
        report.stack = traceback.StackSummary.from_list(frames)
        print("".join(report.format()), end="", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    main()
