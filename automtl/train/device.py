"""Device and numeric-precision choice of a training run."""

from __future__ import annotations

import contextlib
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
