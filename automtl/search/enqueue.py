"""Start a study from known-good configurations: baselines (``enqueue:`` in a preset) and warm
start (the Pareto front of another study).

Both turn a `TrialConfig` into the Optuna parameters of the study's search space
(`config_params`) and enqueue them (`optuna.Study.enqueue_trial`), so they run first, as trials
0..k-1 of a new study, and the sampler learns from them like from any other trial. A
configuration the space cannot express exactly (a value outside a range, a choice the space lacks,
a field the space does not set but the configuration changes) is refused with one line naming the
parameter: an enqueued trial must train the configuration it claims to be.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import optuna

from automtl._typed import from_dict, to_dict
from automtl.config import TrialConfig
from automtl.errors import AutomtlError, ConfigError
from automtl.search.meta import TrialMeta
from automtl.search.space_nodes import (
    Choice,
    Fixed,
    Node,
    Range,
    SearchSpace,
    SpaceContext,
    Toggle,
    expand_path,
    option_allowed,
)

_WEIGHTS = "loss.weighting.weights."


@dataclass(frozen=True)
class Seed:
    """One configuration to enqueue: where it came from and its Optuna parameters."""

    source: str  # e.g. "baseline examples/mmoe.yaml" or "warm start study-a #12"
    params: dict[str, Any]


def _get(cfg: dict[str, Any], path: str) -> Any:
    cur: Any = cfg
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _range_value(node: Range, path: str, value: Any, ctx: SpaceContext) -> Any:
    if node.repeat:
        n = len(ctx.tasks) if node.repeat == "tasks" else max(ctx.n_pairs, 1)
        if not isinstance(value, list) or len(value) != n or any(not _same(v, value[0])
                                                                 for v in value):
            raise ValueError(f"{path} is {value!r}; the space samples one value repeated {n}x")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path} is {value!r}, not a number")
    if node.kind == "int" and float(value) != int(value):
        raise ValueError(f"{path} is {value!r}; the space samples integers")
    tol = 1e-9 * max(abs(node.low), abs(node.high), 1.0)
    if not node.low - tol <= value <= node.high + tol:
        raise ValueError(f"{path} is {value!r}, outside the space's range "
                         f"[{node.low}, {node.high}]")
    if node.step:
        k = (value - node.low) / node.step
        if abs(k - round(k)) > 1e-6:
            raise ValueError(f"{path} is {value!r}, not on the space's grid "
                             f"{node.low} + k * {node.step}")
    return int(value) if node.kind == "int" else float(value)


def _walk(nodes: tuple[Node, ...], cfg: dict[str, Any], ctx: SpaceContext,
          out: dict[str, Any]) -> None:
    for node in nodes:
        for path in expand_path(node.path, ctx):
            value = _get(cfg, path)
            if value is None and path.startswith(_WEIGHTS):
                value = 1.0  # WeightingConfig: a task without a weight gets 1.0
            if isinstance(node, Fixed):
                if not _same(value, node.value):
                    raise ValueError(f"{path} is {value!r}; the space fixes it to {node.value!r}")
            elif isinstance(node, Range):
                out[path] = _range_value(node, path, value, ctx)
            elif isinstance(node, Choice):
                options = [o for o in node.options if option_allowed(o.requires, ctx)]
                match = [o for o in options if _same(o.value, value)]
                if not match:
                    have = ", ".join(json.dumps(o.value) for o in options)
                    raise ValueError(f"{path} is {json.dumps(value)}; the space offers {have} "
                                     "on this dataset")
                if len(options) > 1:
                    out[path] = match[0].label
                _walk(match[0].children, cfg, ctx, out)
            elif isinstance(node, Toggle):
                on = value is not None
                if not option_allowed(node.requires, ctx):
                    if on:
                        raise ValueError(f"{path} is set but needs "
                                         f"{'/'.join(node.requires)}, which this dataset lacks")
                    continue
                out[path] = on
                if on:
                    _walk(node.children, cfg, ctx, out)


def _normalised(cfg: dict[str, Any], tasks: list[str]) -> dict[str, Any]:
    doc = json.loads(json.dumps(cfg))
    weights = doc["loss"]["weighting"]["weights"]
    doc["loss"]["weighting"]["weights"] = {t: weights.get(t, 1.0) for t in tasks}
    return doc


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            diff = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if diff:
                return diff
        return None
    return None if _same(a, b) else path


def config_params(space: SearchSpace, config: dict[str, Any], ctx: SpaceContext,
                  base: dict[str, Any], where: str) -> dict[str, Any]:
    """The Optuna parameters with which `space` reproduces `config`'s model, losses and sampled
    training settings; `ConfigError` (one line, prefixed with `where`) if it cannot."""
    try:
        full = to_dict(from_dict(TrialConfig, config, where=where))
    except ConfigError:
        raise
    params: dict[str, Any] = {}
    try:
        _walk(space.nodes, full, ctx, params)
    except ValueError as exc:
        raise ConfigError(f"{where}: space {space.name!r} cannot express it: {exc}") from None
    rebuilt = to_dict(space.suggest(optuna.trial.FixedTrial(params), ctx, base))
    want, got = _normalised(full, ctx.tasks), _normalised(rebuilt, ctx.tasks)
    sampled_train = {p.split(".", 1)[1] for p in space.paths() if p.startswith("train.")}
    want["train"] = {k: v for k, v in want["train"].items() if k in sampled_train}
    got["train"] = {k: v for k, v in got["train"].items() if k in sampled_train}
    diff = _first_difference({k: want[k] for k in ("model", "loss", "train")},
                             {k: got[k] for k in ("model", "loss", "train")}, "")
    if diff:
        raise ConfigError(f"{where}: space {space.name!r} cannot express it: {diff} is "
                          f"{json.dumps(_get(want, diff))} but the space does not set it "
                          f"(it stays {json.dumps(_get(got, diff))}); add it to the space")
    return params


@dataclass(frozen=True)
class WarmStart:
    """Where to take a warm start from: a study name and its storage URL."""

    study: str
    storage: str


def check_warm_start(source: WarmStart, study_name: str, storage: str) -> None:
    """Refuse, reading only, a warm start from an empty name, from the study being searched
    (it enqueued its own front into itself), or from a study that does not exist."""
    from automtl.search.dbopen import readonly_study
    from automtl.search.naming import check_study_name
    from automtl.search.storage import close_storage

    if not source.study.strip():  # else silently no warm start
        raise ConfigError("--warm-start: empty; give the name of the study to start from")
    check_study_name(source.study, "--warm-start")
    if source.study == study_name and source.storage == storage:
        raise ConfigError(f"--warm-start {source.study}: that is the study being searched (a "
                          "resumed study keeps its trials anyway); warm-start from another study")
    try:
        _, rdb = readonly_study(source.storage, source.study)
    except AutomtlError as exc:
        raise ConfigError(f"--warm-start: {exc}") from None
    close_storage(rdb)


def warm_start_seeds(source: WarmStart, space: SearchSpace, ctx: SpaceContext,
                     base: dict[str, Any], n_trials: int) -> list[Seed]:
    """Seeds from the source study's Pareto front (feasible COMPLETE trials, validation values),
    best mean metric objective first, at most ceil(n_trials / 2) of them so the sampler still explores.
    Every point must be expressible in `space`: one that is not is a `ConfigError`."""
    from automtl.search.dburl import mask_url
    from automtl.search.objectives import is_cost
    from automtl.search.storage import objective_names, open_study

    study = open_study(source.storage, source.study)
    # the mean over the metric objectives (a cost objective is not on their scale)
    keep = [i for i, n in enumerate(objective_names(study)) if not is_cost(n)]

    def mean(t: optuna.trial.FrozenTrial) -> float:
        return sum(t.values[i] for i in keep) / max(len(keep), 1)

    front = sorted(study.best_trials, key=lambda t: (-mean(t), t.number))
    if not front:
        raise ConfigError(f"--warm-start {source.study}: the study has no completed trial yet "
                          f"(in {mask_url(source.storage)}); finish some trials first")
    seeds = []
    for trial in front[:max(1, math.ceil(n_trials / 2))]:
        where = f"--warm-start {source.study} trial #{trial.number}"
        config = TrialMeta.read(trial).config
        if not isinstance(config, dict):
            raise ConfigError(f"{where}: no automtl config stored with the trial; warm-start "
                              "from a study made by `automtl search`")
        seeds.append(Seed(f"warm start {source.study} #{trial.number}",
                          config_params(space, config, ctx, base, where)))
    return seeds


def redo_trial(study: optuna.Study, number: int) -> bool:
    """Enqueue trial `number`'s configuration again after it was stopped from outside
    (`TrialMeta.stopped`) when the study promised to train it: an enqueued baseline, preset
    probe, warm-start point or budget final (a sampled trial is just replaced by the sampler).
    The copy keeps the origin label (`enqueued`, `final_of`) and names its predecessor as
    Optuna's retries do (`retry_history`), so it takes the stopped trial's slot. True when
    one was enqueued."""
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    meta = TrialMeta.read(trial)
    params = trial.system_attrs.get("fixed_params") or trial.params
    if meta.enqueued is None or not params:
        return False
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    origin = {"enqueued": meta.enqueued} | ({} if meta.final_of is None
                                            else {"final_of": meta.final_of})
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, user_attrs=TrialMeta.attrs(**origin),
        system_attrs={"fixed_params": dict(params), "failed_trial": trial.number,
                      "retry_history": history}))
    return True


def enqueue_seeds(study: optuna.Study, seeds: list[Seed]) -> None:
    """Enqueue `seeds` in order (ones whose parameters the study already holds are skipped)."""
    for seed in seeds:
        study.enqueue_trial(seed.params, user_attrs=TrialMeta.attrs(enqueued=seed.source),
                            skip_if_exists=True)


__all__ = ["Seed", "WarmStart", "check_warm_start", "config_params", "enqueue_seeds", "redo_trial",
           "warm_start_seeds"]
