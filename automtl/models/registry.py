"""Registries that let architectures ("bodies") and input bottoms plug into `build_model`.

- `register_arch(name)`: class decorator; the class is built as ``cls(cfg, in_dim, tasks)`` and its
  forward takes the bottom output (``[B, D]``, ``[T, B, D]`` or a list of T ``[B, D]``) and returns
  raw logits ``[T, B]`` (see `automtl.models.base.Body`; a body with ``reads_batch`` also gets
  ``features=`` and is called as ``body(x, batch)``).
- `register_bottom(name)`: class decorator; built as ``cls(cfg, features, tasks)``, with attribute
  `out_dim`; forward(batch) returns ``[B, D]`` (shared input) or per-task inputs (list of T
  ``[B, D]`` or one ``[T, B, D]`` tensor).
- `register_head(name)`: class decorator; built as ``cls(tasks)``; forward maps the body's raw
  logits ``[T, B]`` to the logits of the unconditional p(task) (class attribute `needs_cascade`).

Modules in `automtl/models/archs/` and `automtl/models/bottoms/` are imported automatically, so a
new file there that uses the decorator is all it takes to add an architecture or a bottom.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from automtl.errors import ConfigError

C = TypeVar("C", bound=type)

ARCHS: dict[str, type] = {}
BOTTOMS: dict[str, type] = {}
HEADS: dict[str, type] = {}
_TABLES = {"arch": ARCHS, "bottom": BOTTOMS, "head": HEADS}


def _register(table: dict[str, type], kind: str, name: str) -> Callable[[C], C]:
    def deco(cls: C) -> C:
        if name in table and table[name] is not cls:
            raise ValueError(
                f"{kind} {name!r} registered twice ({table[name].__name__}, {cls.__name__})"
            )
        table[name] = cls
        cls.registered_name = name  # type: ignore[attr-defined]
        return cls

    return deco


def register_arch(name: str) -> Callable[[C], C]:
    """Class decorator registering an MTL body under `name` (the `model.arch` value)."""
    return _register(ARCHS, "arch", name)


def register_bottom(name: str) -> Callable[[C], C]:
    """Class decorator registering an input bottom under `name` (the `model.bottom` value)."""
    return _register(BOTTOMS, "bottom", name)


def register_head(name: str) -> Callable[[C], C]:
    """Class decorator registering an output head under `name` (the `model.head` value)."""
    return _register(HEADS, "head", name)


def registered_names(kind: str) -> list[str]:
    """The names registered for `kind` ("arch", "bottom" or "head"), sorted."""
    import automtl.models  # noqa: F401  (importing the package registers every shipped model)

    return sorted(_TABLES[kind])


def lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    """The class registered as `name`, or a one-line `ConfigError` listing the known names."""
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "(none)"
        raise ConfigError(f"model.{kind}: {name!r} is not available; use one of {known}") from None


__all__ = ["ARCHS", "BOTTOMS", "HEADS", "lookup", "register_arch", "register_bottom", "register_head",
           "registered_names"]
