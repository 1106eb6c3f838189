"""The machine picochat runs on: allocator, device, precision, seeding, torchrun and the peak MFU counts against.

The command line imports this module first (`preload_tcmalloc`), so torch is imported inside the functions
that need it: `picochat --help` stays instant.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import functools
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from picochat.errors import UserError
from picochat.paths import picochat_home

TCMALLOC_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/local/lib")


def find_tcmalloc() -> str | None:
    """Path of tcmalloc-minimal if installed (Debian: libtcmalloc-minimal4), else None."""
    for directory in TCMALLOC_DIRS:
        if (path := Path(directory) / "libtcmalloc_minimal.so.4").exists():
            return str(path)
    return ctypes.util.find_library("tcmalloc_minimal")


def preload_tcmalloc() -> None:
    """Re-execute once with tcmalloc preloaded, faster than glibc's malloc on CPUs (bench/README.md)."""
    if os.environ.get("PICOCHAT_NO_TCMALLOC") or "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    lib = find_tcmalloc()
    if lib is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = f"{lib}:{env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else lib
    env["PICOCHAT_NO_TCMALLOC"] = "1"  # never loop, even if the preload silently fails
    with contextlib.suppress(OSError):
        os.execve(sys.executable, [sys.executable, "-m", "picochat", *sys.argv[1:]], env)


def pick_device(name: str = "auto"):
    """'auto' picks cuda, then mps, then cpu."""
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", launcher_number("LOCAL_RANK", 0))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def can_compile(device) -> bool:
    """torch.compile can build kernels here: C++ ones on a CPU (needs a C compiler), Triton ones on CUDA."""
    if device.type == "cpu":
        return bool(shutil.which("cc") or shutil.which("gcc"))
    return device.type == "cuda"


def compute_dtype(device, override: str | None = None):
    """The autocast dtype of matmuls: bf16 where native and faster, else fp32; `override` wins."""
    import torch

    if override not in (None, "auto"):
        names = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}
        if names.get(override, override) not in names.values():
            raise UserError(f"unknown dtype {override!r}; use one of bf16, fp32, fp16 or auto")
        return getattr(torch, names.get(override, override))
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_prefers_bf16() else torch.float32
    return torch.float32


def cpu_prefers_bf16() -> bool:
    """Native bf16 and a faster timed bf16 GEMM: some CPUs run bf16 slower (bench/results/model.md)."""
    import torch

    cpu = torch.device("cpu")
    return cpu_supports_bf16() and peak_flops(cpu, torch.bfloat16) > peak_flops(cpu, torch.float32)


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmul (AVX512-BF16 or AMX)."""
    try:
        return any(flag in Path("/proc/cpuinfo").read_text() for flag in ("avx512_bf16", "amx_bf16"))
    except OSError:
        return False


def autocast(device, dtype):
    """Autocast context for the forward pass; a no-op for fp32."""
    import torch

    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def launcher_number(name: str, default: int) -> int:
    """A process number torchrun puts in the environment (RANK, LOCAL_RANK, WORLD_SIZE)."""
    text = os.environ.get(name, str(default))
    if not (text.isascii() and text.isdigit()) or (name == "WORLD_SIZE" and int(text) < 1):
        raise UserError(f"${name} is {text!r}, not a process number; unset it, or start with torchrun")
    return int(text)


def init_distributed(device_name: str = "auto") -> tuple[DistInfo, object]:
    """Join the torchrun process group if launched by torchrun (gloo on CPU, NCCL on GPU)."""
    import torch
    import torch.distributed as dist

    world_size = launcher_number("WORLD_SIZE", 1)
    info = DistInfo(launcher_number("RANK", 0), launcher_number("LOCAL_RANK", 0), world_size)
    device = pick_device(device_name)
    if info.is_distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return info, device


# Peak dense bf16 matmul throughput of known accelerators (FLOP/s), for MFU.
GPU_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}

_CPU_PEAKS: dict[str, float] = {}  # the cache file's CPU peaks, held in memory: the file is read once


def peak_flops(device, dtype) -> float:
    """MFU's peak: the GPU's datasheet bf16 figure (fp32: half), or a timed CPU GEMM, cached on disk."""
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in GPU_PEAKS.items() if k in name), 312e12)
        return peak if dtype != torch.float32 else peak / 2
    key = f"{device.type}-{str(dtype).removeprefix('torch.')}-{torch.get_num_threads()}"
    if key in _CPU_PEAKS:  # Muon's dtype choice asks for every matrix (`optim.newton_schulz_dtype`)
        return _CPU_PEAKS[key]
    cache = picochat_home() / "peak_flops.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = measure_gemm_flops(dtype)
        with contextlib.suppress(OSError):
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(known))
    _CPU_PEAKS[key] = float(known[key])
    return _CPU_PEAKS[key]


def measure_gemm_flops(dtype, n: int = 1024) -> float:
    """FLOP/s of an n × n GEMM in `dtype` on this CPU's threads: the best of five timings of four products."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):  # warm up
        a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        best = min(best, (time.perf_counter() - t0) / 4)
    return 2 * n**3 / best
