"""Pareto-aware multi-fidelity pruning: asynchronous successive halving by non-dominated rank.

Optuna's pruners are single-objective (optuna/optuna#3450). This follows the MO-ASHA idea
(Schmucker et al., "Multi-objective asynchronous successive halving", 2021): at each epoch rung,
a trial's vector of objective values is ranked by non-dominated sorting (Deb et al., NSGA-II,
IEEE TEVC 2002) together with every other trial that reached the same rung; the trial continues
only if fewer than ceil(n / eta) trials have a strictly better rank (ties at the cut-off are
kept), i.e. it belongs to the best 1/eta of the rung. Decisions read the per-epoch metrics table,
not process memory, so parallel workers prune against each other's trials.

A trial's point at a rung is (`score: best`, the default) the values of its best epoch so far by
mean validation AUC: the trainer returns the best epoch's model and values, so a trial that
peaked early and is now overfitting is ranked by what it would report; or (`score: epoch`) that
epoch's values, which pruned trials whose best epoch was on the final front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import optuna

from automtl.train.loop import Callback, EpochRecord
from automtl.search.meta import TrialMeta
from automtl.search.objectives import signs
from automtl.search.store import Store
from automtl.search.study_config import PrunerConfig


@dataclass(frozen=True)
class PruneDecision:
    """Outcome of one rung decision."""

    prune: bool
    reason: str
    rank: int = 0  # 1-based non-dominated rank of the trial at this rung (0 = not ranked)
    n_at_rung: int = 0  # trials compared (this one included)
    keep: int = 0  # how many of them the rung keeps


def nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """0-based non-dominated sorting rank of each row of `points` (every column maximised).

    A row with any non-finite value counts as worst on every objective. Rank 0 is the Pareto front; rank 1 the front once rank 0
    is removed, and so on.
    """
    pts = np.asarray(points, dtype=float).copy()
    pts[~np.isfinite(pts).all(axis=1)] = -np.inf
    n = len(pts)
    ranks = np.full(n, -1, dtype=int)
    if n == 0:
        return ranks
    ge = (pts[:, None, :] >= pts[None, :, :]).all(axis=2)
    gt = (pts[:, None, :] > pts[None, :, :]).any(axis=2)
    dominates = ge & gt  # dominates[i, j]: i dominates j
    remaining = np.ones(n, dtype=bool)
    rank = 0
    while remaining.any():
        dominated = (dominates[remaining][:, remaining]).any(axis=0)
        idx = np.flatnonzero(remaining)[~dominated]
        ranks[idx] = rank
        remaining[idx] = False
        rank += 1
    return ranks


def is_rung(epoch: int, cfg: PrunerConfig) -> bool:
    """Whether `epoch` is a decision point under `cfg`."""
    if epoch < cfg.min_epoch:
        return False
    if cfg.rungs == "every":
        return True
    k = math.log(epoch / cfg.min_epoch, cfg.reduction_factor)
    return abs(k - round(k)) < 1e-9


def rung_point(records: Sequence[Mapping[str, float]], objectives: Sequence[str],
               score: str = "epoch") -> list[float]:
    """A trial's objective vector at the rung of its last record (`records`: its epochs 1..k in
    order). `score` "epoch": the last epoch's values; "best": the values of the epoch with the
    highest finite `mean_auc` (the first such epoch on ties, as early stopping keeps it), or the
    last epoch when none is finite."""
    chosen = records[-1]
    if score == "best":
        best = -math.inf
        for rec in records:
            v = float(rec.get("mean_auc", math.nan))
            if math.isfinite(v) and v > best:
                best, chosen = v, rec
    return [float(chosen.get(o, math.nan)) for o in objectives]


def decide(own: Sequence[float], peers: Sequence[Sequence[float]], epoch: int,
           cfg: PrunerConfig) -> PruneDecision:
    """Prune or keep a trial whose objective vector at `epoch` is `own`, given the vectors of
    the other trials at the same epoch (`peers`); all objectives are maximised."""
    if cfg.kind == "none":
        return PruneDecision(False, "pruning off")
    if not is_rung(epoch, cfg):
        return PruneDecision(False, f"epoch {epoch} is not a rung")
    if len(peers) < cfg.warmup_trials:
        return PruneDecision(False, f"warm-up: {len(peers)} of {cfg.warmup_trials} other trials "
                                    f"at epoch {epoch}")
    points = np.asarray([list(own)] + [list(p) for p in peers], dtype=float)
    ranks = nondominated_ranks(points)
    n = len(points)
    keep = math.ceil(n / cfg.reduction_factor)
    better = int((ranks[1:] < ranks[0]).sum())
    rank = int(ranks[0]) + 1
    if better >= keep:
        return PruneDecision(True, f"epoch {epoch}: Pareto rank {rank}; {better} of {n} trials at "
                                   f"this rung rank better, the rung keeps the best {keep} "
                                   f"(1/{cfg.reduction_factor:g})", rank, n, keep)
    return PruneDecision(False, f"epoch {epoch}: Pareto rank {rank}, within the best {keep} of {n}",
                         rank, n, keep)


class EpochRecorder(Callback):
    """Trainer callback: writes each epoch's validation metrics (and training figures, and the
    `fixed` values, e.g. a cost objective) to the per-epoch metrics table, and forwards them to
    an optional `on_metrics(epoch, metrics)`."""

    def __init__(self, store: Store, study_name: str, trial_number: int,
                 on_metrics: Any = None, fixed: Mapping[str, float] | None = None) -> None:
        self.store, self.study_name, self.trial_number = store, study_name, trial_number
        self.on_metrics = on_metrics
        self.fixed = fixed if fixed is not None else {}  # e.g. a cost objective, same every epoch

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> None:
        metrics = {**record.val, **self.fixed}
        metrics.update(train_loss=record.train_loss, samples_per_s=record.samples_per_s,
                       seconds=record.seconds)
        self.store.record_epoch(self.study_name, self.trial_number, epoch, metrics)
        if self.on_metrics is not None:
            self.on_metrics(epoch, metrics)


class ParetoPruner(Callback):
    """Trainer callback: at each rung, reads the other trials' objective vectors at that epoch
    from the metrics table and raises `optuna.TrialPruned` when `decide` says so (after setting
    the trial's "pruned_rung" and "prune_reason" user attributes). Put it after `EpochRecorder`.
    A `protected` trial (an enqueued baseline or warm-start point) is never pruned: the front
    must not lose the configurations it started from. Minimised objectives (a cost objective,
    whose value comes from `fixed`) are negated before ranking.
    """

    def __init__(self, store: Store, trial: optuna.Trial, objectives: Sequence[str],
                 cfg: PrunerConfig, max_epoch: int | None = None,
                 protected: bool = False, fixed: Mapping[str, float] | None = None) -> None:
        self.store, self.trial = store, trial
        self.fixed = fixed if fixed is not None else {}
        self.protected = protected
        self.max_epoch = max_epoch  # the last epoch is never pruned: its training is done
        self.objectives = list(objectives)
        self.cfg = cfg
        self.study_name = trial.study.study_name
        self.own: list[dict[str, float]] = []  # this trial's epochs so far (for score "best")

    def _peers(self, epoch: int) -> list[list[float]]:
        """The other trials' points at `epoch` (trials that reached it), unsigned."""
        wanted = self.objectives if self.cfg.score == "epoch" else [*self.objectives, "mean_auc"]
        rung = self.store.rung_values(self.study_name, epoch, wanted)
        numbers = [n for n, vals in rung.items()
                   if n != self.trial.number and all(o in vals for o in self.objectives)]
        if self.cfg.score == "epoch":
            return [[rung[n][o] for o in self.objectives] for n in numbers]
        records: dict[int, list[dict[str, float]]] = {n: [] for n in numbers}
        for k in range(1, epoch):
            earlier = self.store.rung_values(self.study_name, k, wanted)
            for n in numbers:
                if n in earlier:
                    records[n].append(earlier[n])
        for n in numbers:
            records[n].append(rung[n])
        return [rung_point(records[n], self.objectives, "best") for n in numbers]

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> None:
        if self.cfg.kind == "none" or self.protected:
            return
        self.own.append({**record.val, **self.fixed})
        if not is_rung(epoch, self.cfg) or (self.max_epoch is not None
                                            and epoch >= self.max_epoch):
            return
        sign = signs(self.objectives)
        own = [s * v for s, v in zip(sign, rung_point(self.own, self.objectives, self.cfg.score))]
        peers = [[s * v for s, v in zip(sign, point)] for point in self._peers(epoch)]
        decision = decide(own, peers, epoch, self.cfg)
        if decision.prune:
            TrialMeta.write(self.trial, pruned_rung=epoch, prune_reason=decision.reason)
            raise optuna.TrialPruned(decision.reason)


__all__ = ["EpochRecorder", "ParetoPruner", "PruneDecision", "decide", "is_rung", "rung_point",
           "nondominated_ranks"]
