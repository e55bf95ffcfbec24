"""Declarative YAML search spaces, parsed into a small typed tree (`automtl.search.space_nodes`)
and sampled into `TrialConfig`s.

The format is documented in ``search_spaces/README.md``. In short: ``params`` maps a dotted
`TrialConfig` path to either a fixed value, a range (``{int: [lo, hi]}``, ``{float: [lo, hi],
log: true}``), a categorical (``{choices: [a, b]}``), a conditional categorical whose choices carry
their own parameters (``{choices: {mmoe: {model.n_experts: ...}, ple: {...}}}``), or an optional
section (``{optional: {loss.pwiser.lam: ...}}``). ``requires: cascade`` (or ``sequences``) on a
choice or optional section drops it on datasets without that capability (``deep_cascade``: a
chain of at least three steps, e.g. click -> cart -> purchase, as ESM2 needs). ``{task}`` in a path
expands to every task of the dataset. Everything is checked on load against `TrialConfig`, and
errors name the file and YAML path.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from automtl._typed import from_dict
from automtl.config import TrialConfig
from automtl.errors import ConfigError
from automtl.resources import find_named_yaml, list_named_yaml
from automtl.search.space_nodes import (
    CAPABILITIES,
    KINDS,
    REPEATS,
    TASK,
    Choice,
    Fixed,
    Node,
    Option,
    Range,
    SearchSpace,
    Toggle,
    assign_path,
)
from automtl.yamlio import load_yaml

# ---------------------------------------------------------------------------------------------
# parsing


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _field_type(path: str) -> Any:
    """The declared type at a dotted `TrialConfig` path, or None if no such field."""
    tp: Any = TrialConfig
    for part in path.split("."):
        tp = _unwrap_optional(tp)
        if tp is Any:
            return Any
        if dataclasses.is_dataclass(tp):
            hints = get_type_hints(tp)
            if part not in hints:
                return None
            tp = hints[part]
        elif get_origin(tp) is dict:
            tp = (get_args(tp) or (Any, Any))[1]
        else:
            return None
    return tp


def _known_keys(path: str) -> str:
    parent = path.rsplit(".", 1)[0] if "." in path else ""
    tp = _unwrap_optional(_field_type(parent) if parent else TrialConfig)
    if dataclasses.is_dataclass(tp):
        prefix = f"{parent}." if parent else ""
        return ", ".join(prefix + f.name for f in dataclasses.fields(tp))
    return "a TrialConfig path such as model.arch"


class _Parser:
    def __init__(self, where: str) -> None:
        self.where = where
        # Optuna needs one distribution per parameter name across a study, so a path sampled in
        # several branches must be sampled the same way everywhere.
        self.signatures: dict[str, tuple[tuple[Any, ...], str]] = {}

    def register(self, ypath: str, path: str, signature: tuple[Any, ...]) -> None:
        known = self.signatures.setdefault(path, (signature, ypath))
        if known[0] != signature:
            self.fail(ypath, f"{path} is sampled differently at {known[1]}; a parameter must "
                      "have the same kind and choices wherever it appears")

    def fail(self, ypath: str, msg: str) -> typing.NoReturn:
        raise ConfigError(f"{self.where}: {ypath}: {msg}")

    def check_path(self, ypath: str, path: str) -> Any:
        if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
            self.fail(ypath, f"parameter names are dotted TrialConfig paths, got {path!r}")
        tp = _field_type(path)
        if tp is None:
            self.fail(ypath, f"unknown config path {path!r} (known here: {_known_keys(path)})")
        if path == "train.epochs" or path.split(".")[0] == "data":
            # the study's own (`trial_base`): sampled, they silently overrode it, and a budget
            # or the pruner counting `epochs` per full training miscounted
            self.fail(ypath, f"{path} is set by the study (its `epochs:` / `data:`, --epochs, "
                      "--dataset, --data-option), not sampled; remove it from the space")
        if TASK in path and TASK in path.split(".")[0]:
            self.fail(ypath, "{task} may only stand for a mapping key (e.g. "
                      "loss.weighting.weights.{task})")
        return tp

    def check_value(self, ypath: str, path: str, value: Any) -> None:
        """Type-check a value by loading a TrialConfig that sets only this path."""
        doc: dict[str, Any] = {}
        assign_path(doc, path.replace(TASK, "task"), value)
        try:
            from_dict(TrialConfig, doc)
        except ConfigError as exc:
            msg = str(exc)
            self.fail(ypath, f"value {value!r} does not fit {path}: {msg}")

    def requires(self, ypath: str, raw: Any) -> tuple[str, ...]:
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or any(r not in CAPABILITIES for r in items):
            self.fail(ypath, f"must be one of {', '.join(CAPABILITIES)} (or a list), "
                      f"got {raw!r}")
        return tuple(items)

    def nodes(self, ypath: str, raw: Any, seen: frozenset[str]) -> tuple[Node, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, dict):
            self.fail(ypath, f"expected a mapping of config paths to specs, got {raw!r}")
        out: list[Node] = []
        mine: set[str] = set()
        for key, spec in raw.items():
            sub = f"{ypath}.{key}" if ypath else str(key)
            if key == "requires":
                continue  # handled by the enclosing choice/optional
            tp = self.check_path(sub, key)
            if key in seen or key in mine:
                self.fail(sub, f"{key} is already set by an enclosing or earlier entry; "
                          "define each path once per branch")
            mine.add(key)
            out.append(self.node(sub, key, spec, tp, seen | mine))
        return tuple(out)

    def node(self, ypath: str, path: str, spec: Any, tp: Any, seen: frozenset[str]) -> Node:
        if not isinstance(spec, dict) or not (set(spec) & set(KINDS)):
            if isinstance(spec, dict) and spec:
                self.fail(ypath, f"a spec needs one of {', '.join(KINDS)}; for a fixed mapping "
                          "write {fixed: {...}}")
            self.check_value(ypath, path, spec)
            return Fixed(path, spec)
        kinds = [k for k in KINDS if k in spec]
        if len(kinds) > 1:
            self.fail(ypath, f"give only one of {', '.join(kinds)}")
        kind = kinds[0]
        if kind == "fixed":
            self._no_extra(ypath, spec, {"fixed"})
            self.check_value(ypath, path, spec["fixed"])
            return Fixed(path, spec["fixed"])
        if kind in ("int", "float"):
            return self.range(ypath, path, kind, spec, tp)
        if kind == "optional":
            self._no_extra(ypath, spec, {"optional"})
            if not dataclasses.is_dataclass(_unwrap_optional(tp)) or \
                    type(None) not in get_args(tp):
                self.fail(ypath, f"optional: {path} is not an optional section (use it for "
                          "loss.pwiser, loss.dependency, loss.calibrator)")
            body = spec["optional"] or {}
            if not isinstance(body, dict):
                self.fail(f"{ypath}.optional", "expected a mapping of the section's parameters")
            req = self.requires(f"{ypath}.optional.requires", body["requires"]) \
                if "requires" in body else ()
            for k in body:
                if k != "requires" and not str(k).startswith(path + "."):
                    self.fail(f"{ypath}.optional.{k}", f"parameters of an optional section must "
                              f"lie inside it ({path}.*)")
            self.register(ypath, path, ("optional",))
            return Toggle(path, req, self.nodes(f"{ypath}.optional", body, seen))
        return self.choice(ypath, path, spec, seen)

    def _no_extra(self, ypath: str, spec: dict, allowed: set[str]) -> None:
        extra = [k for k in spec if k not in allowed]
        if extra:
            self.fail(f"{ypath}.{extra[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def range(self, ypath: str, path: str, kind: str, spec: dict, tp: Any) -> Range:
        self._no_extra(ypath, spec, {kind, "log", "step", "repeat"})
        bounds = spec[kind]
        ok_type = (int,) if kind == "int" else (int, float)
        if (not isinstance(bounds, list) or len(bounds) != 2
                or any(isinstance(b, bool) or not isinstance(b, ok_type) for b in bounds)):
            self.fail(f"{ypath}.{kind}", f"expected [low, high] of {kind}s, got {bounds!r}")
        low, high = bounds
        if not all(math.isfinite(b) for b in bounds) or any(abs(b) > 2**53 for b in bounds):
            self.fail(f"{ypath}.{kind}", f"bounds must be finite numbers within ±2^53, got "
                      f"{bounds!r}")
        if low > high:
            self.fail(f"{ypath}.{kind}", f"low {low} > high {high}")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            self.fail(f"{ypath}.log", f"expected true/false, got {log!r}")
        if log and low <= 0:
            self.fail(f"{ypath}.{kind}", "a log range needs low > 0")
        step = spec.get("step")
        if step is not None:
            if (isinstance(step, bool) or not isinstance(step, ok_type) or not step > 0
                    or not math.isfinite(step)):
                self.fail(f"{ypath}.step", f"expected a positive {kind}, got {step!r}")
            if log:
                self.fail(f"{ypath}.step", "step and log cannot be combined")
            # Optuna would only warn and move `high` (a step past the range: a constant)
            steps = (Decimal(str(high)) - Decimal(str(low))) / Decimal(str(step))
            if steps != steps.to_integral_value():
                self.fail(f"{ypath}.step", f"[{low}, {high}] is not a whole number of steps of "
                          f"{step}; make high - low a multiple of the step")
        repeat = spec.get("repeat")
        if repeat is not None and repeat not in REPEATS:
            self.fail(f"{ypath}.repeat", f"must be one of {', '.join(REPEATS)}, got {repeat!r}")
        for b in (low, high):
            self.check_value(ypath, path, [b] if repeat else b)
        self.register(ypath, path, (kind,))
        return Range(path, kind, low, high, log, step, repeat)

    def choice(self, ypath: str, path: str, spec: dict, seen: frozenset[str]) -> Choice:
        self._no_extra(ypath, spec, {"choices"})
        raw = spec["choices"]
        options: list[Option] = []
        if isinstance(raw, list):
            for i, value in enumerate(raw):
                self.check_value(f"{ypath}.choices[{i}]", path, value)
                options.append(Option(value))
        elif isinstance(raw, dict):
            for value, body in raw.items():
                sub = f"{ypath}.choices.{value}"
                self.check_value(sub, path, value)
                body = body or {}
                if not isinstance(body, dict):
                    self.fail(sub, "expected a mapping of this choice's parameters (or {})")
                req = self.requires(f"{sub}.requires", body["requires"]) \
                    if "requires" in body else ()
                options.append(Option(value, req, self.nodes(sub, body, seen | {path})))
        else:
            self.fail(f"{ypath}.choices", f"expected a list or a mapping, got {raw!r}")
        if not options:
            self.fail(f"{ypath}.choices", "needs at least one choice")
        labels = [o.label for o in options]
        if len(set(map(repr, labels))) != len(labels):
            self.fail(f"{ypath}.choices", "choices must be distinct")
        self.register(ypath, path, ("choices", tuple(map(repr, labels))))
        return Choice(path, tuple(options))


def parse_space(doc: Any, where: str = "<space>", name: str | None = None) -> SearchSpace:
    """Parse a space document (already loaded YAML) into a `SearchSpace`; `ConfigError` on faults."""
    parser = _Parser(where)
    if not isinstance(doc, dict):
        parser.fail("<root>", "expected a mapping with `params:`")
    extra = [k for k in doc if k not in ("name", "description", "params")]
    if extra:
        parser.fail(str(extra[0]), "unknown key (known keys: description, name, params)")
    if not isinstance(doc.get("params"), dict) or not doc["params"]:
        parser.fail("params", "a space needs a non-empty `params:` mapping")
    space_name = doc.get("name", name or Path(where).stem)
    if not isinstance(space_name, str):
        parser.fail("name", f"expected a string, got {space_name!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        parser.fail("description", f"expected a string, got {description!r}")
    nodes = parser.nodes("params", doc["params"], frozenset())
    return SearchSpace(space_name, nodes, description.strip(), where)


def _find_space(name_or_path: str, option: str, base_dir: Path | None = None) -> Path:
    if base_dir is not None and (base_dir / name_or_path).is_file():
        return base_dir / name_or_path
    path = find_named_yaml("search_spaces", name_or_path)
    if path is None:
        avail = ", ".join(list_named_yaml("search_spaces"))
        raise ConfigError(f"{option} {name_or_path}: no such file or shipped space "
                          f"(shipped: {avail}); pass a name or a YAML path")
    return path


def load_space_doc(name_or_path: str) -> tuple[dict[str, Any], Path]:
    """The YAML document of a space with `extends:` resolved, and its file.

    ``extends: PARENT`` starts from the parent's ``params``: an entry of the child replaces the
    parent's top-level entry of the same path (in place), new entries are appended.
    """
    path = _find_space(name_or_path, "--space")
    doc = load_yaml(path)
    chain = [path.resolve()]
    while isinstance(doc, dict) and "extends" in doc:
        parent_name = doc.pop("extends")
        if not isinstance(parent_name, str):
            raise ConfigError(f"{chain[-1]}: extends: expected a space name or path, "
                              f"got {parent_name!r}")
        parent_path = _find_space(parent_name, f"{chain[-1]}: extends:", chain[-1].parent)
        if parent_path.resolve() in chain:
            raise ConfigError(f"{chain[-1]}: extends: {parent_name} makes a cycle; remove it")
        chain.append(parent_path.resolve())
        parent = load_yaml(parent_path)
        if not isinstance(parent, dict) or not isinstance(parent.get("params"), dict):
            raise ConfigError(f"{parent_path}: params: a space needs a non-empty `params:` mapping")
        params = dict(parent["params"])
        child = doc.get("params") or {}
        if not isinstance(child, dict):
            raise ConfigError(f"{path}: params: expected a mapping, got {child!r}")
        params.update(child)  # dict.update keeps the parent's order for replaced keys
        merged = {k: v for k, v in parent.items() if k not in ("params", "name", "description")}
        merged.update({k: v for k, v in doc.items() if k != "params"})
        merged["params"] = params
        doc = merged
    if isinstance(doc, dict):
        doc.setdefault("name", path.stem)
    return doc, path


def load_space(name_or_path: str) -> SearchSpace:
    """Load a shipped space by name (``default``, ``mmoe`` ...) or a YAML file by path."""
    doc, path = load_space_doc(name_or_path)
    return parse_space(doc, where=str(path), name=path.stem)


def list_spaces() -> list[str]:
    """Names of the shipped search spaces."""
    return list_named_yaml("search_spaces")


__all__ = ["list_spaces", "load_space", "load_space_doc", "parse_space"]
