"""automtl: AutoML / hyper-parameter search for multi-task recommendation models.

The Python API (see `automtl.api`): ``automtl.search(...)``, ``automtl.load_front(...)``,
``automtl.export(...)``, ``automtl.train(...)``. They load lazily: ``import automtl`` imports
neither torch nor optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

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
