"""Which device and dtype to use: bf16 where the hardware runs it fast, fp32 otherwise."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """AMX or AVX512-BF16 (this project's CPU has AMX: bf16 matmul ~5x faster than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bf16_supported() -> bool:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def torch_dtype(name: str):
    """params dtype name -> torch dtype; 'auto' picks bf16 where supported, else fp32."""
    import torch

    if name == "auto":
        return torch.bfloat16 if bf16_supported() else torch.float32
    return getattr(torch, name)


def dtype_name(name: str) -> str:
    """A params dtype as an engine reads it: 'auto' resolved here ('bfloat16' or 'float32'). vLLM
    reads its own 'auto' as the checkpoint's dtype (bf16 for every model here), and its CPU build
    runs bf16 on any x86 CPU: where the CPU has no bf16 instructions torch emulates them, measured
    12x slower per matmul and 2.2x slower decoding of the demo's 135M model than fp32 (2-core AMD
    EPYC without AVX512)."""
    return str(torch_dtype(name)).removeprefix("torch.")


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's <malloc.h>


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory in the process instead of returning it to the kernel.

    CPU training frees and re-allocates activations of the same sizes every step. glibc serves
    large blocks with a fresh mmap and unmaps them on free, so the kernel zero-fills every page
    again on first touch: on the 2-core demo machine that was a third of stage 05's wall time,
    spent in the kernel. Serving them from the heap and not trimming it made training ~1.3x
    faster and vLLM's CPU decoding ~1.07x. Process-wide and one-way (freed memory stays mapped),
    so it is called only where the process is CPU-only. Returns whether glibc accepted it."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
