"""Device and numeric-precision choice of a training run."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from contextlib import AbstractContextManager as ContextManager

import torch

from automtl.errors import ConfigError


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """"auto" (or None) = CUDA when available else CPU; "cpu", "cuda", "cuda:N" as given."""
    if isinstance(name, torch.device):
        return name
    text = (name or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError(f"train.device: unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.device: unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device: {name!r} requested but CUDA is not available here; "
                              "use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device: {name!r} does not exist "
                              f"({torch.cuda.device_count()} CUDA device(s)); use cuda:0..")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """"fp32" or "bf16": "auto" is bf16 on CUDA and fp32 on CPU."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"train.precision: must be auto, fp32 or bf16; got {precision!r}")
    return precision


def autocast(device: torch.device, precision: str) -> ContextManager[object]:
    """bf16 autocast on `device` for precision "bf16", a no-op context for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (timing only; a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
_allocator_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Keep freed training buffers in the process heap (glibc `mallopt`), once per process.

    A CPU training step allocates and frees the same tens-of-MB activations and gradients every
    step; glibc's default returns them to the OS, so every step page-faults them in again
    (~5,000 faults per MMoE step, measured 4-10% of its CPU time). Fixing the mmap threshold at
    its 32 MB maximum and trimming only above 256 MB keeps them resident. A no-op (False)
    off glibc Linux.
    """
    global _allocator_tuned
    if _allocator_tuned is None:
        _allocator_tuned = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _allocator_tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20))
            except (OSError, AttributeError):  # musl or no libc: keep the defaults
                _allocator_tuned = False
    return _allocator_tuned
