"""Rows of a study's Pareto front and the non-dominated points over trials and sweep points
(plain data: no database access; `Store` persists and reads them)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import optuna

from automtl.search.meta import FRONT_FIELDS, TrialMeta
from automtl.search.objectives import signs


@dataclass
class FrontRow:
    """One trial on a study's Pareto front."""

    trial_number: int
    values: dict[str, float]  # objective name -> validation value (what Optuna optimised)
    test: dict[str, float]  # metric -> test value at the best epoch (reported, never selected on)
    config: dict[str, Any]  # TrialConfig as a plain dict
    params: dict[str, Any]  # the Optuna parameters sampled for the trial
    attrs: dict[str, Any] = field(default_factory=dict)  # arch, bottom, n_params, checkpoint ...
    reeval: dict[str, dict[str, float]] | None = None  # "val/ctr_auc" -> {"mean", "std", "n"}
    # a point of a conditioned trial: its task-weight vector and index in the trial's sweep
    weights: dict[str, float] | None = None
    point: int | None = None

    @property
    def meta(self) -> TrialMeta:
        """The trial's record, as far as the front table keeps it (`FRONT_FIELDS`, config)."""
        return TrialMeta.read({**self.attrs, "config": self.config})


@dataclass
class SweepRow:
    """One stored sweep point of a conditioned trial."""

    trial_number: int
    point: int
    weights: dict[str, float]
    val: dict[str, float]
    test: dict[str, float]
    trial_front: bool


def nondominated_mask(points: list[list[float]]) -> list[bool]:
    """Per point, whether no other point dominates it (all maximised; non-finite = dominated);
    equal points do not dominate each other (both kept, as in Optuna's best_trials)."""
    out = []
    for i, p in enumerate(points):
        if not all(math.isfinite(x) for x in p):
            out.append(False)
            continue
        out.append(not any(
            all(math.isfinite(x) for x in q) and all(a >= b for a, b in zip(q, p))
            and any(a > b for a, b in zip(q, p)) for j, q in enumerate(points) if j != i))
    return out


def point_row(base: FrontRow, sp: SweepRow, names: list[str]) -> FrontRow:
    """The front row of one sweep point of a conditioned trial whose own row is `base`: the
    point's metrics, and the trial's config served at the point's weight vector."""
    config = json.loads(json.dumps(base.config))
    config.setdefault("loss", {}).setdefault("weighting", {})["preference"] = dict(sp.weights)
    # a metric the sweep does not record (a cost objective) is the trial's, the same everywhere
    return FrontRow(base.trial_number,
                    {n: sp.val.get(n, base.values.get(n, float("nan"))) for n in names},
                    dict(sp.test), config, dict(base.params), dict(base.attrs),
                    weights=dict(sp.weights), point=sp.point)


def _points(bases: Iterable[FrontRow], sweeps: dict[int, list[SweepRow]],
            names: list[str]) -> list[FrontRow]:
    """One point per ordinary trial's row, one per sweep point of a conditioned trial."""
    cands: list[FrontRow] = []
    for base in bases:
        if base.trial_number not in sweeps:
            cands.append(base)
            continue
        cands += [point_row(base, sp, names) for sp in sweeps[base.trial_number]]
    return cands


def front_points(trials: Iterable[optuna.trial.FrozenTrial], sweeps: dict[int, list[SweepRow]],
                 names: list[str]) -> list[FrontRow]:
    """The non-dominated points of completed `trials` over objectives `names` (each in its
    direction, `automtl.search.objectives`): one point per ordinary trial, one per sweep point of
    a conditioned trial; sorted by trial, point.
    """
    cands = _points((row_from_trial(tr, names) for tr in trials), sweeps, names)
    sign = signs(names)
    keep = nondominated_mask([[s * c.values[n] for s, n in zip(sign, names)] for c in cands])
    return [c for c, k in zip(cands, keep) if k]


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial satisfies its constraints (all <= 0; none set = feasible), as in Optuna's
    `Study.best_trials`."""
    return all(float(c) <= 0.0 for c in trial.constraints.values())


def fold_front(stored: list[FrontRow], new: list[FrontRow], sweeps: dict[int, list[SweepRow]],
               names: list[str]) -> list[FrontRow]:
    """The trial rows of the front after adding the rows `new` (feasible COMPLETE trials) to a
    front whose rows are `stored`: front(S + N) = front(front(S) + N), so a refresh needs the
    stored front and the new trials only, never the whole history. Points as in `front_points`
    (`sweeps` must hold the sweeps of every conditioned trial among both), each objective in
    its direction (`automtl.search.objectives`). Sorted by trial."""
    sign = signs(names)
    fresh = {r.trial_number for r in new}
    bases = [r for r in stored if r.trial_number not in fresh] + list(new)
    cands = _points(bases, sweeps, names)
    keep = nondominated_mask([[s * c.values[n] for s, n in zip(sign, names)] for c in cands])
    on = {c.trial_number for c, k in zip(cands, keep) if k}
    return sorted((r for r in bases if r.trial_number in on), key=lambda r: r.trial_number)


def row_from_trial(trial: optuna.trial.FrozenTrial, names: list[str]) -> FrontRow:
    """The front-table row of a finished trial (`names`: the study's objectives)."""
    meta = TrialMeta.read(trial)
    return FrontRow(
        trial_number=trial.number,
        values={n: float(v) for n, v in zip(names, trial.values or [])},
        test={k: float(v) for k, v in meta.test_metrics.items()},
        config=dict(meta.config or {}),
        params=dict(trial.params),
        attrs=TrialMeta.pick(trial.user_attrs, FRONT_FIELDS),
    )


__all__ = ["FrontRow", "SweepRow", "feasible", "fold_front", "front_points", "nondominated_mask",
           "point_row", "row_from_trial"]
