"""The parsed form of a search space (fixed values, ranges, choices, optional sections) and its
sampling into `TrialConfig`s; `automtl.search.space` parses YAML into it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Union

import optuna

from automtl._typed import from_dict
from automtl.config import TrialConfig
from automtl.errors import ConfigError

TASK = "{task}"
# user_ad: user and ad fields (DeepMCP); bias_field: a position-like field (shallow tower)
CAPABILITIES = ("cascade", "deep_cascade", "sequences", "user_ad", "bias_field")
REPEATS = ("tasks", "pairs")
KINDS = ("choices", "int", "float", "optional", "fixed")


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
        from automtl.data.roles import field_roles  # lazy: automtl.data imports torch

        roles = field_roles(dataset.features)
        if roles.user and roles.ad:
            caps.add("user_ad")
        if roles.bias:
            caps.add("bias_field")
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
            assign_path(cfg, path, value)
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


def assign_path(cfg: dict[str, Any], path: str, value: Any) -> None:
    """Set dotted `path` in the plain config dict `cfg` (copies `value`; a mapping value updates
    an existing section instead of replacing it)."""
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


__all__ = [
    "CAPABILITIES", "KINDS", "REPEATS", "TASK", "Choice", "Fixed", "Node", "Option", "Range",
    "SearchSpace", "SpaceContext", "Toggle", "assign_path", "expand_path", "option_allowed",
]
