"""Strict conversion between plain dicts (from YAML/JSON) and typed dataclasses.

The one config mechanism of automtl: every config class is a dataclass; `from_dict` checks
keys and types recursively and raises `ConfigError` naming the exact path
(``trial.yaml: model.n_experts: expected int, got 'four'``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import (
    Annotated,
    Any,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from automtl.errors import ConfigError

T = TypeVar("T")

_NONE = type(None)
_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


@dataclass(frozen=True)
class OneOf:
    """Marks ``Annotated[str, OneOf(names)]``: a name from a vocabulary known only at run time
    (a registry), checked like a `Literal`. `names` is called at check time, so a name
    registered after the config class was defined (a new model file, a test) is accepted."""

    names: Callable[[], Iterable[str]]


@functools.lru_cache(maxsize=None)
def type_hints(cls: type) -> dict[str, Any]:
    """The field types of dataclass `cls`, `Annotated` markers kept."""
    return get_type_hints(cls, include_extras=True)


def _fail(where: str, path: str, msg: str) -> typing.NoReturn:
    prefix = f"{where}: " if where else ""
    raise ConfigError(f"{prefix}{path or '<root>'}: {msg}")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(tp: Any, value: Any, path: str, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        base, *marks = get_args(tp)
        value = _convert(base, value, path, where)
        for mark in marks:
            if isinstance(mark, OneOf):
                allowed = list(mark.names())
                if value not in allowed:
                    _fail(where, path, f"must be one of {', '.join(allowed)}; got {_describe(value)}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if _NONE in args:
                return None
            _fail(where, path, "must not be empty (null)")
        options = [a for a in args if a is not _NONE]
        if len(options) == 1:  # Optional[X]: X's own error names the precise path
            return _convert(options[0], value, path, where)
        errors = []
        for arg in args:
            if arg is _NONE:
                continue
            try:
                return _convert(arg, value, path, where)
            except ConfigError as exc:
                errors.append(str(exc))
        _fail(where, path, f"expected {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value
        _fail(where, path, f"must be one of {', '.join(map(str, allowed))}; got {_describe(value)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, path=path, where=where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            _fail(where, path, f"expected a list, got {_describe(value)}")
        (arg,) = get_args(tp)[:1] or (Any,)
        return [_convert(arg, v, f"{path}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            _fail(where, path, f"expected a mapping, got {_describe(value)}")
        kt, vt = get_args(tp) or (Any, Any)
        return {
            _convert(kt, k, f"{path}.{k}", where): _convert(vt, v, f"{path}.{k}", where)
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        _fail(where, path, f"expected true/false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return check_int(value, path, where)
        _fail(where, path, f"expected an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return check_float(value, path, where)
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            # PyYAML (YAML 1.1) reads `1e-5` (no dot) as a string; accept it as the number meant
            return check_float(float(value), path, where)
        _fail(where, path, f"expected a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        _fail(where, path, f"expected a string, got {_describe(value)}")
    raise TypeError(f"unsupported config type {tp!r} at {path}")  # a bug, not user input


SEED_MAX = 2**32 - 1  # numpy's RandomState and Optuna's samplers take seeds below 2^32


def check_int(value: int, path: str = "", where: str = "") -> int:
    """`value` if it fits a 64-bit integer (and, for a key named seed, the RNG's 0..2^32-1)."""
    key = path.rsplit(".", 1)[-1]
    if key == "seed" and not 0 <= value <= SEED_MAX:
        _fail(where, path, f"a seed must be an integer in 0..{SEED_MAX}, got {_describe(value)}")
    if not -(2**63) <= value < 2**63:
        _fail(where, path, f"{_describe(value)} does not fit a 64-bit integer; use a smaller one")
    return value


def check_float(value: float, path: str = "", where: str = "") -> float:
    """`value` as a float if it is finite (NaN and infinity are never a valid setting)."""
    try:
        out = float(value)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        _fail(where, path, f"must be a finite number, got {_describe(value)}")
    return out


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not _NONE)
    if origin is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    if origin is Annotated:
        base, *marks = get_args(tp)
        for mark in marks:
            if isinstance(mark, OneOf):
                return "one of " + ", ".join(mark.names())
        return _type_name(base)
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def from_dict(cls: type[T], data: Any, path: str = "", where: str = "") -> T:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types.

    `path` is the dotted location of `data` inside the document, `where` the file name; both
    appear in the error message.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        _fail(where, path, f"expected a mapping, got {_describe(data)}")
    hints = type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        known = ", ".join(sorted(fields))
        sub = f"{path}.{unknown[0]}" if path else str(unknown[0])
        _fail(where, sub, f"unknown key (known keys: {known})")
    kwargs = {}
    for name, value in data.items():
        sub = f"{path}.{name}" if path else name
        kwargs[name] = _convert(hints[name], value, sub, where)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        _fail(where, path, str(exc))
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            _fail(where, path, str(exc))
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML/JSON-ready) form of a config dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
