"""The inside of the Python sandbox (standard library only): started with CONFIG_JSON and the model's code
on stdin, `main` builds the walls (Linux namespaces), forks so the code is PID 1 of its own PID namespace,
sets resource limits, drops privilege, installs the audit-hook guard, then runs the code (docs/tools.md).
If the walls cannot be built the run fails, unless isolation is "none" (the user's explicit `unsafe=True`).
"""

import ast
import builtins
import contextlib
import json
import os
import re
import resource
import signal
import socket
import stat
import sys
import traceback

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWUSER = 0x00020000, 0x20000000, 0x40000000, 0x10000000
CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP = 0x08000000, 0x04000000, 0x02000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 1 << 14, 1 << 18
MOUNT_OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024}
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 1, 24, 28, 38
# SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP, SECBIT_KEEP_CAPS_LOCKED, SECBIT_NO_CAP_AMBIENT_RAISE, all locked:
# uid 0 of the namespace never regains a capability, not even through execve.
LOCKED_SECUREBITS = 0b1110_1111
CAPABILITY_VERSION_3 = 0x20080522
EXIT_NO_WALLS = 125  # the walls could not be built; the host turns this into a clear error
# Where host processes meet: daemons' sockets, lock files, shared memory. Each gets an empty, read-only tmpfs,
# and so does every other world-writable directory in the first two levels of the tree.
MEETING_PLACES = ("/run", "/var/run", "/var/lock", "/var/tmp", "/dev/shm", "/dev/mqueue")

PROCESS_EVENTS = set("os.system os.exec os.posix_spawn os.spawn os.fork os.forkpty subprocess.Popen".split())
PATH_EVENTS = set(
    "os.remove os.rename os.mkdir os.rmdir os.chmod os.chown os.link os.symlink os.truncate os.utime "
    "shutil.rmtree shutil.move shutil.copyfile".split()
)
TWO_PATH_EVENTS = {"os.rename", "os.link", "shutil.move"}
BLOCKED_MODULES = {"ctypes", "_ctypes", "_posixsubprocess"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def main() -> None:
    config = json.loads(sys.argv[1])
    code = "" if config.get("probe") else sys.stdin.read()
    workdir, uid, isolation = config["workdir"], config["uid"], config["isolation"]
    report = socket.socket(fileno=config["report_fd"]) if config.get("report_fd") is not None else None
    if isolation != "none":
        try:
            enter_namespaces(workdir, uid, config["disk_mb"], isolation)
        except OSError as error:
            print(f"sandbox: cannot build its walls: {error}", file=sys.stderr)
            os._exit(EXIT_NO_WALLS)
        if config.get("probe"):
            os._exit(0)
        become_namespace_init(report)
    elif report is not None:
        report.close()
    with open(os.path.join(workdir, "main.py"), "w") as file:
        file.write(code)
    set_limits(config)
    drop_privileges(uid, isolation)
    os.chdir(workdir)
    if config["audit_guard"]:
        install_guard(workdir)
    sys.exit(run_code(code))


@contextlib.contextmanager
def libc_calls():
    """(ctypes, libc, check: OSError if a call failed) for one step; ctypes is forgotten afterwards, so the
    model's code cannot reach it through us."""
    import ctypes  # imported here for that reason

    def check(result: int, what: str) -> None:
        if result != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    try:
        yield ctypes, ctypes.CDLL(None, use_errno=True), check
    finally:
        for name in ("ctypes", "_ctypes"):
            sys.modules.pop(name, None)


def enter_namespaces(workdir: str, uid: int | None, disk_mb: int, isolation: str) -> None:
    """Unshare the namespaces, make every mount read-only, hide the meeting places, mount a private /tmp;
    OSError if refused."""
    with libc_calls() as (_, libc, check):
        uid = unshare(libc, check, uid, isolation)
        check(libc.sethostname(b"sandbox", 7), "naming the UTS namespace")
        # Private propagation first, so nothing below leaks back into the host's mount table.
        check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
        for mount_point, options in read_mounts():
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY
            flags |= sum(MOUNT_OPTION_FLAGS.get(option, 0) for option in set(options))
            # Best effort: a mount that refuses to go read-only stays protected by the uid alone.
            libc.mount(None, mount_point.encode(), None, flags, None)
        if isolation == "root":
            expose_standard_library(libc)
        hide_meeting_places(libc, check)
        mount_private_tmpfs(libc, check, workdir, uid, disk_mb)


def unshare(libc, check, uid: int | None, isolation: str) -> int:
    """New mount, network, PID, IPC (SysV and POSIX shared memory, queues, semaphores: all gone with the
    namespace), UTS and cgroup namespaces ("user": in a new user namespace where we are root); return the
    uid the code will run as, seen from inside."""
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    if isolation != "user":
        check(libc.unshare(flags), "unshare(mount, net, pid, ipc, uts, cgroup)")
        return 0 if uid is None else uid  # None: a probe, which runs nothing
    outer_uid, outer_gid = os.getuid(), os.getgid()
    check(libc.unshare(CLONE_NEWUSER | flags), "unshare(user, mount, net, pid, ipc, uts, cgroup)")
    # Root inside is us outside: no file, process or uid of anyone else becomes reachable.
    write_file("/proc/self/setgroups", "deny")
    write_file("/proc/self/uid_map", f"0 {outer_uid} 1")
    write_file("/proc/self/gid_map", f"0 {outer_gid} 1")
    # No nested user namespace: it would hand the code capabilities again (over new namespaces).
    write_file("/proc/sys/user/max_user_namespaces", "0")
    return 0


def hide_meeting_places(libc, check) -> None:
    """An empty, read-only tmpfs over each meeting place: a read-only mount alone would still let the code
    connect to a Unix socket there, or open a POSIX queue in /dev/mqueue."""
    hidden = {*MEETING_PLACES, *world_writable_directories("/", 2), "/tmp"}
    for directory in hidden:
        if any(path.startswith(directory + "/") for path in sys.path):
            raise OSError(f"Python's standard library is under {directory}, which the sandbox hides")
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    for directory in sorted(hidden - {"/tmp"}):  # /tmp gets a private, writable tmpfs of its own
        if os.path.isdir(directory) and not os.path.islink(directory):  # not already hidden by its parent
            hiding = libc.mount(b"tmpfs", directory.encode(), b"tmpfs", flags, b"size=4k,mode=0555")
            check(hiding, f"hiding {directory}")


def world_writable_directories(top: str, depth: int) -> list[str]:
    """Directories anyone may write to, down to `depth` levels below `top` (not looking inside those)."""
    try:
        with os.scandir(top) as listing:
            entries = [entry for entry in listing if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return []  # a directory we may not list
    found = []
    for entry in entries:
        with contextlib.suppress(OSError):  # an entry that went away while we looked
            if entry.path in ("/proc", "/sys"):
                continue
            if entry.stat(follow_symlinks=False).st_mode & stat.S_IWOTH:
                found.append(entry.path)
            elif depth > 1:
                found += world_writable_directories(entry.path, depth - 1)
    return found


def mount_private_tmpfs(libc, check, workdir: str, uid: int, disk_mb: int) -> None:
    """A private, empty, bounded /tmp, with the working directory inside (the host made it in /tmp)."""
    options = f"size={disk_mb}m,mode=0700,uid={uid},gid={uid}".encode()
    check(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, options), "mounting /tmp")
    os.makedirs(workdir, mode=0o700)
    os.chown(workdir, uid, uid)


def write_file(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def expose_standard_library(libc) -> None:
    """As root: Python may live where only root may enter (pyenv in /root), so a tmpfs hides each private
    ancestor of sys.path and the library directory is bind-mounted back, read-only, at its own path."""
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


def become_namespace_init(report: socket.socket | None) -> None:
    """Fork: the child goes on as PID 1 of the new PID namespace (its death kills every process in it); we
    mirror its exit and send the host its pidfd, so the host can kill it even if the code undoes PDEATHSIG."""
    pid = os.fork()
    if pid == 0:
        if report is not None:
            report.close()  # the code must not talk to the host
        with libc_calls() as (_, libc, _):
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            # A /proc of our own, so the code sees its own processes and none of the host's.
            libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        return
    sys.stdin.close()
    if report is not None:
        pidfd = os.pidfd_open(pid)  # cannot name another process: only we can reap `pid`
        socket.send_fds(report, [b"pidfd"], [pidfd])
        os.close(pidfd)
        report.close()
    _, status = os.waitpid(pid, 0)
    exit_code = os.waitstatus_to_exitcode(status)
    if exit_code < 0:  # killed by a signal: die by the same one, so the host sees what happened
        signal.signal(-exit_code, signal.SIG_DFL)
        os.kill(os.getpid(), -exit_code)
    os._exit(exit_code if exit_code >= 0 else 128 - exit_code)


def drop_privileges(uid: int | None, isolation: str) -> None:
    """Leave the code no privilege to undo the walls with: "root" moves to the run's own uid, "user" drops
    every capability (bounding set, locked securebits, capset); both set no_new_privs."""
    with libc_calls() as (ctypes, libc, check):  # while we may still read every directory
        if isolation == "root" or (isolation == "none" and uid is not None):
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)  # from root to an unprivileged uid: the kernel clears every capability
        if isolation == "user":
            for capability in range(64):  # past the last capability the kernel answers EINVAL
                libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
            check(libc.prctl(PR_SET_SECUREBITS, LOCKED_SECUREBITS, 0, 0, 0), "cannot lock securebits")
            header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
            check(libc.capset(header, (ctypes.c_uint32 * 6)()), "cannot drop capabilities")
        if sys.platform == "linux":
            libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def set_limits(config: dict) -> None:
    max_processes = config["max_processes"]
    if config["isolation"] == "none" and config["uid"] is None and sys.platform == "linux":
        # Without a uid of its own (outside a user namespace) RLIMIT_NPROC counts all this user's processes.
        max_processes += len(processes_of(os.getuid()))
    limits = {
        resource.RLIMIT_AS: config["memory_mb"] * 1024 * 1024,
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


def processes_of(uid: int) -> dict[int, str]:
    """pid -> state ("Z" for a zombie) of every process uid owns now (Linux /proc)."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                with open(f"/proc/{entry}/stat") as file:
                    found[int(entry)] = file.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            pass  # the process ended while we looked
    return found


def install_guard(workdir: str) -> None:
    """An audit hook that refuses network, new processes, ctypes and writes outside workdir: a speed bump
    (code that tampers with the interpreter gets around it) that gives clear errors, not a wall."""
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
            paths = args[1:2] if event == "os.symlink" else args[:2] if event in TWO_PATH_EVENTS else args[:1]
            for path in paths:
                if not inside(path):
                    refuse(f"{event} on {os.fsdecode(path)!r} (outside {root})")

    sys.addaudithook(guard)


def run_code(code: str) -> int:
    """Run the code as __main__, print the value of a final bare expression; return the exit status."""
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
