"""Choosing a point inside a preference-conditioned trial (issue 16).

A conditioned trial stores K sweep points (`Store.sweeps`). ``--trial N`` together with another
rule chooses among them (`Selection.within`):

- ``--weights ctr=0.7,cvr=0.3``: the trial conditioned on that vector (names: task names, their
  conditional-metric names such as ``cvr`` for ``ctcvr``, with or without ``_auc``; normalised
  to sum 1; tasks not named weigh 0). A vector on the sweep grid brings its stored metrics; any
  other vector is still a valid serving point (the network takes any vector) whose metrics are
  known once `automtl train --config` evaluates it.
- ``--pick knee``: the knee of the trial's own front (its non-dominated sweep points);
- ``--min ... [--maximize ...]``: the constraint rule over all of the trial's sweep points.

The chosen row's config has ``loss.weighting.preference`` set to the point's vector, so a YAML
export reproduces it with `automtl train --config`.
"""

from __future__ import annotations

import math

import optuna

from automtl.config import direction
from automtl.errors import AutomtlError
from automtl.search.front import FrontRow, nondominated_mask, point_row, row_from_trial
from automtl.search.meta import TrialMeta
from automtl.search.selection import Direction, Selection, select
from automtl.search.storage import objective_names
from automtl.search.store import Store


def trial_points(study: optuna.Study, store: Store, number: int) -> list[FrontRow]:
    """Every sweep point of completed conditioned trial `number`, as front rows."""
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None or trial.state != optuna.trial.TrialState.COMPLETE:
        state = "missing" if trial is None else trial.state.name
        raise AutomtlError(f"--trial {number}: no completed trial with that number ({state})")
    sweep = store.sweeps(study.study_name).get(number)
    if not sweep:
        raise AutomtlError(f"--trial {number}: the trial is not preference-conditioned "
                           "(loss.weighting.scheme: conditioned), so it has one point; use "
                           "--trial N alone, or the rule without --trial")
    names = objective_names(study)
    base = row_from_trial(trial, names)
    return [point_row(base, sp, names) for sp in sweep]


def _vector(weights: dict[str, float], aliases: dict[str, str],
            tasks: list[str]) -> dict[str, float]:
    vec = {t: 0.0 for t in tasks}
    named: dict[str, str] = {}
    for name, w in weights.items():
        task = aliases.get(name, name if name in tasks else None)
        if task is None:
            raise AutomtlError(f"--weights: unknown task {name!r}; the trial's tasks are "
                               f"{', '.join(tasks)}")
        if task in named:  # two spellings of one task would silently add up
            raise AutomtlError(f"--weights: task {task!r} is given twice ({named[task]!r} and "
                               f"{name!r}); give each task once")
        named[task] = name
        vec[task] = w
    return dict(zip(vec, direction(list(vec.values()))))  # huge weights do not overflow


def choose_within(study: optuna.Study, store: Store, rule: Selection,
                  directions: dict[str, Direction] | None = None) -> FrontRow:
    """The point of conditioned trial `rule.within` that `rule` names (see module docstring)."""
    assert rule.within is not None
    points = trial_points(study, store, rule.within)
    names = objective_names(study)
    if rule.weights:
        tasks = list(points[0].weights or {})
        aliases = _aliases(study, rule.within)
        vec = _vector(rule.weights, aliases, tasks)
        for p in points:
            if all(math.isclose(vec[t], (p.weights or {}).get(t, 0.0), abs_tol=1e-6)
                   for t in tasks):
                return p
        base = points[0]
        config = dict(base.config)
        config["loss"] = dict(config.get("loss", {}))
        config["loss"]["weighting"] = dict(config["loss"].get("weighting", {}), preference=vec)
        return FrontRow(base.trial_number, {}, {}, config, dict(base.params), dict(base.attrs),
                        weights=vec, point=None)
    inner = Selection(pick=rule.pick, minimums=rule.minimums, maximize=rule.maximize)
    own = [p for p in points if all(math.isfinite(p.values.get(n, math.nan)) for n in names)]
    if rule.pick:  # the knee of the trial's own front
        keep = nondominated_mask([[p.values[n] for n in names] for p in own])
        own = [p for p, k in zip(own, keep) if k]
    return select(own, names, inner, directions)


def _aliases(study: optuna.Study, number: int) -> dict[str, str]:
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            return dict(TrialMeta.read(t).weight_names or {})
    return {}


__all__ = ["choose_within", "trial_points"]
