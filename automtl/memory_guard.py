"""Refuse sizes that cannot fit before allocating them (one line with the numbers, no traceback).

A model or data set too large for the machine would otherwise fail deep inside the allocator
(a traceback, or the kernel's OOM killer). The estimates here are cheap upper bounds:

- a model's parameters are counted on PyTorch's ``meta`` device (no memory is allocated), and
  training needs about 4 copies of them in fp32: weights, gradients and Adam's two moments;
- synthetic rows cost the bytes of their stored columns times a factor for the generator's
  temporaries.
"""

from __future__ import annotations

import os
from typing import Any

from automtl.errors import ConfigError

# Bytes per parameter while training: fp32 weights + gradients + Adam's exp_avg and exp_avg_sq.
TRAIN_BYTES_PER_PARAM = 16
# Share of the currently available memory a single allocation plan may take.
_HEADROOM = 0.9


def available_bytes(device: Any = "cpu") -> int:
    """Memory free for a new allocation on `device` (CPU: available RAM; CUDA: free memory)."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no psutil / no /proc: fall back to the page counts
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_fits(what: str, need: int, device: Any, fix: str) -> None:
    """Raise a one-line `ConfigError` when `need` bytes exceed the memory free on `device`."""
    free = available_bytes(device)
    if need > _HEADROOM * free:
        raise ConfigError(f"{what} needs about {_gib(need)}, more than the {_gib(free)} free on "
                          f"{device}; {fix}")


def count_model_parameters(cfg: Any, dataset: Any) -> int:
    """Parameters of the model of trial config `cfg` on `dataset`, counted without allocating."""
    import torch

    from automtl.models import build_model

    try:
        with torch.device("meta"):
            model = build_model(cfg.model, dataset.features, dataset.tasks, cfg.loss.weighting)
    except Exception:  # noqa: BLE001 - a module not buildable on meta: count its embeddings
        return _embedding_parameters(cfg, dataset)
    return sum(p.numel() for p in model.parameters())


def _embedding_parameters(cfg: Any, dataset: Any) -> int:
    # A lower bound (the embedding tables), so a fallback never refuses a model that fits.
    vocab = sum(int(getattr(f, "vocab_size", 0) or 0) for f in dataset.features)
    return vocab * int(cfg.model.embedding_dim)


def check_model_fits(cfg: Any, dataset: Any, device: Any) -> int:
    """Refuse a model whose training state cannot fit on `device`; returns its parameter count."""
    n = count_model_parameters(cfg, dataset)
    check_fits(f"the model ({n:,} parameters: weights, gradients and Adam state)",
               n * TRAIN_BYTES_PER_PARAM, device,
               "lower model.embedding_dim, model.n_experts or the layer sizes")
    return n


__all__ = ["TRAIN_BYTES_PER_PARAM", "available_bytes", "check_fits", "check_model_fits",
           "count_model_parameters"]
