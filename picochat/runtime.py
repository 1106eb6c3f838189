"""The machine picochat runs on: allocator, device, precision, seeding and distributed setup.

One place decides the compute dtype (`compute_dtype`); every stage asks it, and `--dtype` overrides it.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import functools
import os
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

TCMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/local/lib/libtcmalloc_minimal.so.4",
)


def find_tcmalloc() -> str | None:
    """Path of tcmalloc-minimal if installed (Debian: libtcmalloc-minimal4), else None."""
    for path in TCMALLOC_CANDIDATES:
        if Path(path).exists():
            return path
    name = ctypes.util.find_library("tcmalloc_minimal")
    return name


def preload_tcmalloc() -> None:
    """Re-execute the current command once with tcmalloc preloaded.

    glibc malloc costs 1.1-1.9x per CPU training step (PyTorch frees and reallocates activation buffers
    every step); tcmalloc's thread caches remove that. Set PICOCHAT_NO_TCMALLOC=1 to opt out.
    """
    if os.environ.get("PICOCHAT_NO_TCMALLOC") or "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    lib = find_tcmalloc()
    if lib is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = f"{lib}:{env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else lib
    env["PICOCHAT_NO_TCMALLOC"] = "1"  # never loop, even if the preload silently fails
    argv = [sys.executable, "-m", "picochat", *sys.argv[1:]]
    with contextlib.suppress(OSError):
        os.execve(sys.executable, argv, env)


def pick_device(name: str = "auto"):
    """'auto' picks cuda, then mps, then cpu."""
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")



def can_compile(device) -> bool:
    """torch.compile can build kernels here: C++ ones on a CPU (needs a C compiler), Triton ones on CUDA."""
    if device.type == "cpu":
        return bool(shutil.which("cc") or shutil.which("gcc"))
    return device.type == "cuda"


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmul (AVX512-BF16 or AMX); otherwise bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def compute_dtype(device, override: str | None = None):
    """The dtype matmuls run in under autocast. Master weights, softmax and the loss stay fp32.

    bf16 where the hardware runs it natively (CUDA with bf16 support, CPUs with AVX512-BF16/AMX), fp32
    elsewhere. `override` ('bf16', 'fp32', 'fp16') wins.
    """
    import torch

    names = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp32": torch.float32,
        "float32": torch.float32,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if override not in (None, "auto"):
        if override not in names:
            from picochat.errors import UserError

            raise UserError(f"unknown dtype {override!r}; use one of bf16, fp32, fp16 or auto")
        return names[override]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_prefers_bf16() else torch.float32
    return torch.float32


def cpu_prefers_bf16() -> bool:
    """True when bf16 matmuls beat fp32 ones on this CPU: it has native bf16 instructions and a GEMM timed
    in each dtype (`peak_flops`, measured once and cached) runs faster in bf16. The flag alone is not
    enough: an Intel Xeon VM with AVX512-BF16 ran bf16 GEMMs at half fp32's speed, and training steps
    1.4x slower in bf16 (bench/results/model.md)."""
    import torch

    if not cpu_supports_bf16():
        return False
    cpu = torch.device("cpu")
    return peak_flops(cpu, torch.bfloat16) > peak_flops(cpu, torch.float32)


def autocast(device, dtype):
    """Autocast context for the forward pass; a no-op for fp32."""
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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


def init_distributed(device_name: str = "auto") -> tuple[DistInfo, object]:
    """Join the torchrun process group if launched by torchrun (gloo on CPU, NCCL on GPU)."""
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", 1))
    info = DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), world_size)
    device = pick_device(device_name)
    if info.is_distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return info, device


# Peak dense bf16 matmul throughput of known accelerators (FLOP/s), for MFU.
GPU_PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10": 125e12,
    "4090": 165e12,
}


_MEASURED_PEAKS: dict[str, float] = {}  # this process's CPU peaks, so the file is read once


def peak_flops(device, dtype) -> float:
    """The matmul peak MFU is measured against.

    GPUs: the datasheet dense bf16 figure of the card (fp32 counts as bf16's half). CPUs: measured once,
    a 1024³ GEMM in `dtype` timed on this machine's threads, cached in $PICOCHAT_HOME/peak_flops.json.
    """
    import json
    import time

    import torch

    from picochat.paths import picochat_home

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in GPU_PEAK_BF16.items() if k in name), 312e12)
        return peak if dtype != torch.float32 else peak / 2
    key = f"{device.type}-{str(dtype).removeprefix('torch.')}-{torch.get_num_threads()}"
    if key in _MEASURED_PEAKS:  # first: Muon asks for every matrix it updates (`optim.newton_schulz_dtype`)
        return _MEASURED_PEAKS[key]
    cache = picochat_home() / "peak_flops.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        _MEASURED_PEAKS[key] = float(known[key])
        return _MEASURED_PEAKS[key]
    n = 1024
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        best = min(best, (time.perf_counter() - t0) / 4)
    peak = 2 * n**3 / best
    known[key] = _MEASURED_PEAKS[key] = peak
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))
    except OSError:
        pass
    return peak
