"""The evaluation sweep of a preference-conditioned model, and the one point it reports.

A conditioned model is evaluated at K fixed task-weight vectors (the simplex grid of
`automtl.losses.simplex_grid`): after each epoch at the few coarse ones (`Sweeper`: the corners
and the centre, what early stopping and the pruner see), and at all K, on validation and test,
once, on the selected epoch's weights (what the trial stores). The trial's single validation
vector (what `fit` reports, what Optuna and the Pareto pruner see) is the metrics of ONE sweep
point, chosen by `pick_point` among the points evaluated (at an epoch: the coarse ones):

- the config's `preference` when it is set (a served model is judged where it is served);
- else the knee of the trial's own front: the non-dominated sweep points over `select_on`
  (the study's objectives in a search; every task's AUC otherwise), each metric scaled to
  [0, 1] over them, the knee rule of `automtl.search.selection` (farthest from the line through
  the extremes with two metrics, closest to utopia with more).

Why the trial's own knee (issue 16, item 4): it depends only on the trial, so the value a
sampler sees never changes after the fact and two workers agree on it; it is an actual point of
the curve (exportable, reproducible by `automtl train`), and it is the balanced operating point
a fixed-weight trial would be compared against. Early stopping scores an epoch by the mean over
the coarse sweep's corners and centre of the mean AUC (the curve's ends and middle, not one point
of it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from automtl.config import WeightingConfig
from automtl.data.batching import DeviceSplit, iter_batches
from automtl.data.schema import TaskSpec, metric_names
from automtl.errors import ConfigError
from automtl.models.film import preference_vector, set_preference
from automtl.train.device import autocast
from automtl.train.metrics import compute_metrics, evaluate


@dataclass
class SweepPoint:
    """One task-weight vector of a conditioned model and its metrics there."""

    weights: dict[str, float]
    val: dict[str, float]
    test: dict[str, float] = field(default_factory=dict)


def sweep_eval(model: torch.nn.Module, data: DeviceSplit, tasks: Sequence[TaskSpec],
               vectors: Sequence[dict[str, float]], batch_size: int,
               precision: str = "fp32") -> list[dict[str, float]]:
    """Metrics of `model` on `data` conditioned on each weight vector in turn (the same
    numbers as `evaluate` under `set_preference`; the bottom runs once per batch for all)."""
    names = [t.name for t in tasks]
    prefs = [preference_vector(w, names) for w in vectors]
    if not callable(getattr(model, "encode", None)) or not prefs:
        out = []
        try:
            for pref in prefs:
                set_preference(model, pref)
                out.append(evaluate(model, data, tasks, batch_size, precision))
        finally:
            set_preference(model, None)
        return out
    labels = data.labels.cpu().numpy()
    return [compute_metrics(logits.numpy(), labels, tasks)
            for logits in _sweep_logits(model, data, prefs, batch_size, precision)]


def _sweep_logits(model: torch.nn.Module, data: DeviceSplit, prefs: Sequence[torch.Tensor],
                  batch_size: int, precision: str) -> list[torch.Tensor]:
    """Host logits ``[N, T]`` per preference, batch by batch: `encode` once, `decode` per
    vector (as `predict_logits` does for one)."""
    was_training = model.training
    model.eval()
    chunks: list[list[torch.Tensor]] = [[] for _ in prefs]
    try:
        with torch.inference_mode(), autocast(data.device, precision):
            for batch in iter_batches(data, batch_size):
                encoded = model.encode(batch)  # type: ignore[operator]
                for k, pref in enumerate(prefs):
                    set_preference(model, pref)
                    logits = model.decode(encoded, batch)  # type: ignore[operator]
                    chunks[k].append(logits.t().float().cpu())
    finally:
        set_preference(model, None)
        model.train(was_training)
    return [torch.cat(c) for c in chunks]


def curve_score(points: Sequence[dict[str, float]]) -> float:
    """Mean over sweep points of their mean AUC (NaN when any is undefined)."""
    vals = [p.get("mean_auc", float("nan")) for p in points]
    return float(np.mean(vals)) if vals and all(math.isfinite(v) for v in vals) else float("nan")


@dataclass
class _Cand:
    trial_number: int
    values: dict[str, float]


def pick_point(vectors: Sequence[dict[str, float]], points: Sequence[dict[str, float]],
               cfg: WeightingConfig, task_names: Sequence[str]) -> int:
    """Index of the sweep point the trial reports (see module docstring)."""
    if cfg.preference:
        want = preference_vector(cfg.preference, task_names).tolist()
        return _nearest([[v.get(t, 0.0) for t in task_names] for v in vectors], want)
    metrics = list(cfg.select_on) or [f"{t}_auc" for t in task_names]
    return knee_index(points, metrics)


def knee_index(points: Sequence[dict[str, float]], metrics: Sequence[str]) -> int:
    """The knee (selection rule ``knee``) of the non-dominated `points` over `metrics`."""
    from automtl.search.pruner import nondominated_ranks
    from automtl.search.selection import knee_scores

    arr = np.array([[p.get(m, float("nan")) for m in metrics] for p in points], dtype=float)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.any():
        return 0
    ranks = nondominated_ranks(arr)
    front = [i for i in range(len(points)) if ranks[i] == 0 and finite[i]]
    cands = [_Cand(i, {m: float(arr[i, k]) for k, m in enumerate(metrics)}) for i in front]
    scores = knee_scores(cands, list(metrics))
    best = max(zip(cands, scores), key=lambda cs: (cs[1], -cs[0].trial_number))[0]
    return best.trial_number


__all__ = ["SweepPoint", "curve_score", "knee_index", "pick_point", "sweep_eval"]


class Sweeper:
    """Runs the sweep of a conditioned trial inside `fit` (built by `Sweeper.of`).

    Cost (issue 16: one conditioned trial within 1.5x the compute of one fixed trial): every
    vector is a full forward pass over the split, so every epoch sweeps only the *coarse* vectors
    (`coarse`: the T single-task corners, the grid vector nearest the uniform one and, when the
    config serves a `preference`, the one nearest it), and the full grid is evaluated once, on
    the selected epoch's weights (`validate(..., full=True, known=...)` re-using that epoch's
    coarse points). The early-stopping score is the curve score over the preference-independent
    coarse vectors (`scored`) in both modes, so it is the same number whichever mode computed
    it, and a trial trained again with a serving preference selects the same epoch.
    """

    def __init__(self, cfg: WeightingConfig, tasks: Sequence[TaskSpec], batch_size: int,
                 precision: str) -> None:
        from automtl.losses.conditioned import sweep_vectors

        self.cfg, self.tasks = cfg, list(tasks)
        self.names = [t.name for t in tasks]
        metrics = metric_names(tasks)
        unknown = [m for m in cfg.select_on if m not in metrics]
        if unknown:  # the knee over an unknown metric silently reported the first corner
            raise ConfigError(f"loss.weighting.select_on: {unknown[0]!r} is not a metric of "
                              f"the data (available: {', '.join(metrics)})")
        self.vectors = sweep_vectors(cfg, self.names)
        self.batch_size, self.precision = batch_size, precision
        grid = [[v[t] for t in self.names] for v in self.vectors]
        uniform = [1.0 / len(self.names)] * len(self.names)
        corners = [i for i, v in enumerate(grid) if max(v) >= 1.0 - 1e-9]
        self.scored = sorted(set(corners) | {_nearest(grid, uniform)})
        serve = set()
        if cfg.preference:
            serve = {_nearest(grid, preference_vector(cfg.preference, self.names).tolist())}
        self.coarse = sorted(set(self.scored) | serve)
        self.index = 0

    @classmethod
    def of(cls, cfg: WeightingConfig, tasks: Sequence[TaskSpec], batch_size: int,
           precision: str) -> "Sweeper | None":
        """A sweeper for a conditioned weighting, None otherwise."""
        return cls(cfg, tasks, batch_size, precision) if cfg.scheme == "conditioned" else None

    def validate(self, model: torch.nn.Module, data: DeviceSplit, full: bool = False,
                 known: Sequence[SweepPoint] = ()) -> tuple[dict[str, float], float,
                                                          list[SweepPoint]]:
        """(reported metrics, early-stopping score, sweep points) at the coarse vectors, or at
        every vector (`full`); `known`: points already evaluated on these same weights and
        split (not evaluated again). `index` is then the reported point's index in `vectors`."""
        wanted = list(range(len(self.vectors))) if full else self.coarse
        have = {_key(p.weights, self.names): p.val for p in known}
        todo = [i for i in wanted if _key(self.vectors[i], self.names) not in have]
        fresh = sweep_eval(model, data, self.tasks, [self.vectors[i] for i in todo],
                           self.batch_size, self.precision)
        got = dict(zip(todo, fresh))
        metrics = [dict(got[i]) if i in got else dict(have[_key(self.vectors[i], self.names)])
                   for i in wanted]
        points = [SweepPoint(dict(self.vectors[i]), m) for i, m in zip(wanted, metrics)]
        pick = pick_point([self.vectors[i] for i in wanted], metrics, self.cfg, self.names)
        self.index = wanted[pick]
        score = curve_score([metrics[wanted.index(i)] for i in self.scored])
        return dict(metrics[pick]), score, points

    def test(self, model: torch.nn.Module, data: DeviceSplit, points: list[SweepPoint],
             index: int) -> dict[str, float]:
        """Fill every point's test metrics; the reported point's test metrics."""
        metrics = sweep_eval(model, data, self.tasks, [p.weights for p in points],
                             self.batch_size, self.precision)
        for p, m in zip(points, metrics):
            p.test = m
        return dict(points[index].test)


def _nearest(grid: Sequence[Sequence[float]], target: Sequence[float]) -> int:
    """Index of the grid vector nearest `target` (the first on ties)."""
    return int(np.argmin([math.dist(v, target) for v in grid]))


def _key(weights: dict[str, float], names: Sequence[str]) -> tuple[float, ...]:
    return tuple(round(float(weights.get(t, 0.0)), 9) for t in names)


__all__ += ["Sweeper"]
