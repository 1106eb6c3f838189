"""Start cost of one sandboxed Python call: picochat's PythonSandbox against bubblewrap, as root and as nobody.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_sandbox.py --runs 30

Four ways to run `pass`, alternated, median and 90th percentile of --runs each: the bare interpreter
(`python -I -S -B -c pass`), bwrap with the walls closest to ours (`--unshare-all`, the host tree
read-only, its own /proc, /dev and /tmp), the same with bwrap's minimal root (only /usr and Python's
prefix bound in), bwrap starting our sandbox_child.py with isolation "none" (what using bwrap for the walls
would cost: the child still sets the limits and the guard), and `PythonSandbox().run("pass")`. Needs Linux and `bwrap` (Debian: bubblewrap); the
nobody half needs root to drop to nobody, and uses /usr/bin/python3 (root's Python may be out of its reach).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from picochat.tools import sandbox  # noqa: E402
from picochat.tools.sandbox import SANDBOX_CHILD  # noqa: E402

NOBODY = 65534
# What our child needs when something else has built the walls: limits, the guard, the code.
CHILD_CONFIG = {"workdir": "/tmp/w", "uid": None, "isolation": "none", "memory_mb": 256, "cpu_seconds": 6}
CHILD_CONFIG |= {"max_processes": 16, "max_open_files": 64, "disk_mb": 64, "audit_guard": True}
BWRAP_WALLS = ["--unshare-all", "--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev"]


def ways(python: str) -> dict:
    bare = [os.path.realpath(python), "-I", "-S", "-B", "-c", "pass"]
    child = [os.path.realpath(python), "-I", "-S", "-B", "-u", str(SANDBOX_CHILD), json.dumps(CHILD_CONFIG)]
    prefix = os.path.realpath(sys.base_prefix if python == sys.executable else "/usr")
    root_links = [arg for name in ("bin", "lib", "lib64") for arg in ("--symlink", f"usr/{name}", f"/{name}")]
    minimal_root = ["--ro-bind", "/usr", "/usr", "--ro-bind", prefix, prefix, *root_links]
    bwrap, tmp = ["bwrap", *BWRAP_WALLS], ["--tmpfs", "/tmp"]  # after the binds, or "/" would cover it
    return {
        "bare python": lambda: subprocess.run(bare, check=True),
        "bwrap, host tree read-only": lambda: subprocess.run(
            [*bwrap, "--ro-bind", "/", "/", *tmp, *bare], check=True
        ),
        "bwrap, minimal root": lambda: subprocess.run([*bwrap, *minimal_root, *tmp, *bare], check=True),
        "bwrap, host tree read-only, + sandbox_child": lambda: subprocess.run(
            [*bwrap, "--ro-bind", "/", "/", *tmp, "--dir", "/tmp/w", "--chdir", "/tmp/w", *child],
            input=b"pass",
            check=True,
        ),
        "PythonSandbox": lambda: sandbox.PythonSandbox().run("pass"),
    }


def measure(runs: int, python: str) -> dict[str, list[float]]:
    candidates = ways(python)
    times = {name: [] for name in candidates}
    for _ in range(runs + 1):  # the first round warms the page cache and is dropped
        for name, call in candidates.items():
            start = time.perf_counter()
            call()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: values[1:] for name, values in times.items()}


def report(user: str, times: dict[str, list[float]]) -> None:
    for name, values in times.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"| {user} | {name} | {statistics.median(values):.0f} | {p90:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    if shutil.which("bwrap") is None:
        sys.exit("bwrap is not installed (Debian: apt-get install bubblewrap)")
    print("| user | way | median ms | p90 ms |\n|---|---|---|---|")
    report("root" if sandbox.real_root() else "user", measure(runs, sys.executable))
    if not sandbox.real_root():
        return
    sys.stdout.flush()
    if os.fork() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        sandbox.PYTHON = "/usr/bin/python3"
        report("nobody", measure(runs, sandbox.PYTHON))
        sys.stdout.flush()
        os._exit(0)
    os.wait()


if __name__ == "__main__":
    main()
