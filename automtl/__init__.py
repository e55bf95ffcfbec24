"""automtl: AutoML / hyper-parameter search for multi-task recommendation models.

The Python API (see `automtl.api`): ``automtl.search(...)``, ``automtl.load_front(...)``,
``automtl.export(...)``, ``automtl.train(...)``. They load lazily: ``import automtl`` imports
neither torch nor optuna.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__version__ = "0.1.0"

# torch's OpenMP threads sleep between parallel regions instead of spinning (libgomp spins
# ~300k iterations by default). When a machine has more runnable threads than cores (several
# search workers, other jobs) the spinning threads take the cores from the ones doing work:
# measured on 2 shared cores at load ~30, an MMoE bf16 training step took 5.3-6.1 s (spinning)
# vs 0.68-0.79 s (passive), with 6x the CPU time. libgomp reads this when torch loads, so it
# applies where automtl is imported before torch (the CLI, its workers); export
# OMP_WAIT_POLICY=ACTIVE to spin on a machine with idle cores to spare.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_API = ("search", "load_front", "export", "train")


def __getattr__(name: str) -> Any:
    # search/export/train are subpackages made callable by automtl.api.call_through
    if name == "load_front":
        from automtl.api import load_front

        return load_front
    if name in _API:
        return importlib.import_module(f"automtl.{name}")
    raise AttributeError(f"module 'automtl' has no attribute {name!r}")


__all__ = ["__version__", "export", "load_front", "search", "train"]
