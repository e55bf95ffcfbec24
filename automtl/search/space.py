"""Declarative YAML search spaces, parsed into a small typed tree and sampled into `TrialConfig`s.

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

import math

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import optuna

from automtl._typed import from_dict
from automtl.config import TrialConfig, load_yaml
from automtl.errors import ConfigError
from automtl.resources import find_named_yaml, list_named_yaml

TASK = "{task}"
CAPABILITIES = ("cascade", "deep_cascade", "sequences")
REPEATS = ("tasks", "pairs")
_KINDS = ("choices", "int", "float", "optional", "fixed")


@dataclass(frozen=True)
class Fixed:
    """A value written to `path` in every trial (not sampled)."""

    path: str
    value: Any


@dataclass(frozen=True)
class Range:
    """An int or float range; `repeat` turns the sampled scalar into a list (per task/pair)."""

    path: str
    kind: str  # "int" | "float"
    low: float
    high: float
    log: bool = False
    step: float | None = None
    repeat: str | None = None  # "tasks" | "pairs"


@dataclass(frozen=True)
class Option:
    """One choice of a categorical: its value, the capabilities it needs, its own parameters."""

    value: Any
    requires: tuple[str, ...] = ()
    children: tuple["Node", ...] = ()

    @property
    def label(self) -> Any:
        """The value as Optuna stores it (scalars as is, lists/mappings as JSON text)."""
        return _label(self.value)


@dataclass(frozen=True)
class Choice:
    """A categorical parameter; conditional when options carry children."""

    path: str
    options: tuple[Option, ...]


@dataclass(frozen=True)
class Toggle:
    """An optional config section (e.g. ``loss.pwiser``): sampled on/off; children apply if on."""

    path: str
    requires: tuple[str, ...] = ()
    children: tuple["Node", ...] = ()


Node = Union[Fixed, Range, Choice, Toggle]


@dataclass
class SpaceContext:
    """What the dataset offers that a space may depend on."""

    tasks: list[str]
    n_pairs: int = 0  # number of cascade edges (tasks with depends_on)
    capabilities: frozenset[str] = frozenset()

    @classmethod
    def from_dataset(cls, dataset: Any) -> "SpaceContext":
        """Context of a loaded `Dataset` (tasks, cascade edges, sequence fields)."""
        caps = set()
        n_pairs = sum(1 for t in dataset.tasks if t.depends_on)
        if n_pairs:
            caps.add("cascade")
        if _longest_chain(dataset.tasks) >= 3:
            caps.add("deep_cascade")
        if any(f.kind == "sequence" for f in dataset.features):
            caps.add("sequences")
        return cls([t.name for t in dataset.tasks], n_pairs, frozenset(caps))


def _longest_chain(tasks: Any) -> int:
    """Number of tasks on the longest `depends_on` chain (1 without a cascade)."""
    parent = {t.name: t.depends_on for t in tasks}
    best = 0
    for name in parent:
        seen = {name}
        while parent.get(name) is not None and parent[name] not in seen:
            name = parent[name]
            seen.add(name)
        best = max(best, len(seen))
    return best


@dataclass
class SearchSpace:
    """A parsed search space."""

    name: str
    nodes: tuple[Node, ...]
    description: str = ""
    source: str = ""

    def sample(self, trial: optuna.Trial, ctx: SpaceContext) -> dict[str, Any]:
        """Sample with `trial`; return {dotted path: value} in definition order."""
        out: dict[str, Any] = {}
        _sample_nodes(self.nodes, trial, ctx, out, self.source or self.name)
        return out

    def suggest(self, trial: optuna.Trial, ctx: SpaceContext,
                base: dict[str, Any] | None = None) -> TrialConfig:
        """Sample a `TrialConfig`: `base` (plain dict, e.g. data and train settings) + samples.

        An invalid combination raises `ConfigError` (the search records the trial as FAIL).
        """
        cfg = json.loads(json.dumps(base or {}))  # deep copy of plain data
        for path, value in self.sample(trial, ctx).items():
            _assign(cfg, path, value)
        return from_dict(TrialConfig, cfg, where=f"space {self.name}")

    def paths(self) -> list[str]:
        """Every path the space can set (conditional ones included)."""
        out: list[str] = []

        def walk(nodes: tuple[Node, ...]) -> None:
            for n in nodes:
                out.append(n.path)
                if isinstance(n, Choice):
                    for o in n.options:
                        walk(o.children)
                elif isinstance(n, Toggle):
                    walk(n.children)

        walk(self.nodes)
        return out


def _label(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


# ---------------------------------------------------------------------------------------------
# sampling


def expand_path(path: str, ctx: SpaceContext) -> list[str]:
    """The concrete parameter names of `path` (``{task}`` expanded to every task)."""
    return [path.replace(TASK, t) for t in ctx.tasks] if TASK in path else [path]


def option_allowed(requires: tuple[str, ...], ctx: SpaceContext) -> bool:
    """Whether a choice/optional section needing `requires` exists on this dataset."""
    return all(r in ctx.capabilities for r in requires)



def _sample_nodes(nodes: tuple[Node, ...], trial: optuna.Trial, ctx: SpaceContext,
                  out: dict[str, Any], where: str) -> None:
    for node in nodes:
        for path in expand_path(node.path, ctx):
            if isinstance(node, Fixed):
                out[path] = node.value
            elif isinstance(node, Range):
                if node.kind == "int":
                    v: Any = trial.suggest_int(path, int(node.low), int(node.high),
                                               step=int(node.step or 1), log=node.log)
                else:
                    v = trial.suggest_float(path, node.low, node.high, step=node.step,
                                            log=node.log)
                if node.repeat:
                    v = [v] * (len(ctx.tasks) if node.repeat == "tasks" else max(ctx.n_pairs, 1))
                out[path] = v
            elif isinstance(node, Choice):
                options = [o for o in node.options if option_allowed(o.requires, ctx)]
                if not options:
                    need = sorted({r for o in node.options for r in o.requires})
                    raise ConfigError(f"{where}: {path}: every choice needs "
                                      f"{'/'.join(need)}, which this dataset lacks; "
                                      "add a choice without `requires`")
                if len(options) == 1:  # nothing to sample (e.g. cascade-only choices dropped)
                    chosen = options[0]
                else:
                    labels = [o.label for o in options]
                    picked = trial.suggest_categorical(path, labels)
                    chosen = options[labels.index(picked)]
                out[path] = chosen.value
                _sample_nodes(chosen.children, trial, ctx, out, where)
            elif isinstance(node, Toggle):
                on = option_allowed(node.requires, ctx) and \
                    trial.suggest_categorical(path, [False, True])
                if on:
                    out.setdefault(path, {})
                    _sample_nodes(node.children, trial, ctx, out, where)
                else:
                    out[path] = None


def _assign(cfg: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    cur = cfg
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    if isinstance(value, dict) and isinstance(cur.get(parts[-1]), dict):
        cur[parts[-1]].update(json.loads(json.dumps(value)))  # enabling a section keeps children
    else:
        cur[parts[-1]] = json.loads(json.dumps(value))


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
        if TASK in path and TASK in path.split(".")[0]:
            self.fail(ypath, "{task} may only stand for a mapping key (e.g. "
                      "loss.weighting.weights.{task})")
        return tp

    def check_value(self, ypath: str, path: str, value: Any) -> None:
        """Type-check a value by loading a TrialConfig that sets only this path."""
        doc: dict[str, Any] = {}
        _assign(doc, path.replace(TASK, "task"), value)
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
        if not isinstance(spec, dict) or not (set(spec) & set(_KINDS)):
            if isinstance(spec, dict) and spec:
                self.fail(ypath, f"a spec needs one of {', '.join(_KINDS)}; for a fixed mapping "
                          "write {fixed: {...}}")
            self.check_value(ypath, path, spec)
            return Fixed(path, spec)
        kinds = [k for k in _KINDS if k in spec]
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


__all__ = [
    "CAPABILITIES", "Choice", "Fixed", "Node", "Option", "Range", "SearchSpace", "SpaceContext",
    "Toggle", "expand_path", "list_spaces", "load_space", "load_space_doc", "option_allowed",
    "parse_space",
]
