"""A read-only, plain-data snapshot of one study: what the figures, report and dashboard draw.

`StudySnapshot.from_study` turns an Optuna study (plus automtl's per-epoch history) into plain
rows; `load_snapshot` opens a study from a storage URL without writing to the database.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, TypeVar

import optuna
from optuna.trial import FrozenTrial, TrialState
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from automtl.search.dbopen import readonly_study
from automtl.search.dburl import mask_url
from automtl.search.front import SweepRow, front_points
from automtl.search.meta import StudyMeta, TrialMeta
from automtl.search.stale import heartbeat_source, running_trials
from automtl.search.storage import close_storage, objective_names
from automtl.search.store import Store

T = TypeVar("T")

# Trial states in the order summaries list them.
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass
class TrialRow:
    """One trial as plain data: objective values (validation), params and automtl's attributes."""

    number: int
    state: str
    values: list[float] | None
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        """Wall time of the trial in seconds, None while it runs."""
        if self.datetime_start is None or self.datetime_complete is None:
            return None
        return (self.datetime_complete - self.datetime_start).total_seconds()

    @property
    def meta(self) -> TrialMeta:
        """automtl's record of the trial (config, metrics, reasons)."""
        return TrialMeta.read(self.user_attrs)

    @property
    def config(self) -> dict[str, Any] | None:
        """The TrialConfig dict recorded by search, if any."""
        return self.meta.config

    @property
    def arch(self) -> str:
        """The architecture label (`arch_label`, as `automtl search` prints it, e.g.
        "ple+esmm"); the sampled "arch" parameter for trials without a record."""
        meta = self.meta
        if meta.arch is None and not meta.model.get("arch"):
            arch = self.params.get("arch", self.params.get("model.arch"))
            return "?" if arch is None else str(arch)
        return meta.label()

    @property
    def loss_terms(self) -> list[str]:
        """Loss ingredients of this trial: optional terms that are on, plus the weighting scheme."""
        loss = (self.config or {}).get("loss") or {}
        terms = ["bce"] + [t for t in ("pwiser", "dependency", "calibrator") if loss.get(t)]
        scheme = (loss.get("weighting") or {}).get("scheme")
        if scheme:
            terms.append(f"weighting={scheme}")
        return terms

    @classmethod
    def from_frozen(cls, t: FrozenTrial) -> TrialRow:
        """Plain row of an Optuna trial."""
        values = list(t.values) if t.values is not None else None
        return cls(
            number=t.number,
            state=t.state.name,
            values=values,
            params=dict(t.params),
            user_attrs=dict(t.user_attrs),
            datetime_start=t.datetime_start,
            datetime_complete=t.datetime_complete,
        )


@dataclass
class StudySnapshot:
    """Everything drawn about one study at one moment (trials, front, per-epoch history)."""

    name: str
    objectives: list[str]
    directions: list[str]  # "maximize" / "minimize" per objective
    trials: list[TrialRow]
    front: list[int]  # trial numbers on the Pareto front
    histories: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    # trial -> {"val/<metric>" | "test/<metric>": {"mean", "std", "n"}} over re-run seeds
    reeval: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    storage: str = ""  # masked storage URL, for display and export commands
    study: optuna.Study | None = None  # kept for Optuna's importance API
    # preference-conditioned trials (issue 16): trial -> its sweep points, and the study front
    # over points as (trial, sweep point index or None for an ordinary trial)
    sweeps: dict[int, list[SweepRow]] = field(default_factory=dict)
    point_front: list[tuple[int, int | None]] = field(default_factory=list)
    # RUNNING trials whose process is gone (stale heartbeat / dead local owner) -> why
    stale: dict[int, str] = field(default_factory=dict)

    @property
    def meta(self) -> StudyMeta:
        """automtl's record of the study (dataset, space, objectives ...)."""
        return StudyMeta.read(self.user_attrs)

    def sweep_point(self, number: int, point: int) -> SweepRow | None:
        """Sweep point `point` of conditioned trial `number` (None when there is none)."""
        for sp in self.sweeps.get(number, []):
            if sp.point == point:
                return sp
        return None

    @property
    def complete(self) -> list[TrialRow]:
        """Finished trials with finite objective values."""
        return [
            t for t in self.trials
            if t.state == "COMPLETE" and t.values is not None
            and len(t.values) == len(self.objectives) and all(math.isfinite(v) for v in t.values)
        ]

    @property
    def front_set(self) -> set[int]:
        """Trial numbers of the front, as a set."""
        return set(self.front)

    def trial(self, number: int) -> TrialRow | None:
        """The trial with this number, or None."""
        for t in self.trials:
            if t.number == number:
                return t
        return None

    def state_counts(self) -> dict[str, int]:
        """Number of trials per state (all states listed in STATES order, zeros included)."""
        counts = {s: 0 for s in STATES}
        for t in self.trials:
            counts[t.state] = counts.get(t.state, 0) + 1
        return counts

    def best(self) -> dict[str, TrialRow]:
        """Best completed trial per objective (respecting its direction)."""
        out: dict[str, TrialRow] = {}
        for i, name in enumerate(self.objectives):
            rows = self.complete
            if not rows:
                continue
            pick = max if self.directions[i] == "maximize" else min
            out[name] = pick(rows, key=lambda t: t.values[i])  # type: ignore[index]
        return out

    @property
    def running(self) -> bool:
        """True while some trial is still running (a search is writing to the study)."""
        return any(t.state == "RUNNING" and t.number not in self.stale for t in self.trials)

    @classmethod
    def from_study(
        cls,
        study: optuna.Study,
        histories: dict[int, list[dict[str, Any]]] | None = None,
        front: list[int] | None = None,
        reeval: dict[int, dict[str, dict[str, float]]] | None = None,
        storage: str = "",
        sweeps: dict[int, list[SweepRow]] | None = None,
    ) -> StudySnapshot:
        """Snapshot of `study`; the front defaults to Optuna's non-dominated completed trials.

        `reeval` is `Store.reeval`'s shape; a trial user_attr "reeval" ({metric: stats}) counts
        as validation re-evaluation where the store has none for that trial.
        """
        frozen = study.get_trials(deepcopy=False)
        directions = [d.name.lower() for d in study.directions]
        attrs = dict(study.user_attrs)
        objectives = objective_names(study)
        trials = [TrialRow.from_frozen(t) for t in frozen]
        if front is None:
            front = _pareto_front(study, frozen)
        sweeps = dict(sweeps or {})
        points: list[tuple[int, int | None]] = []
        if sweeps and study.directions:
            done = [t for t in frozen if t.state == TrialState.COMPLETE]
            points = [(r.trial_number, r.point) for r in front_points(done, sweeps, objectives)]
        merged = dict(reeval or {})
        for t in trials:
            own = t.meta.reeval
            if isinstance(own, dict) and t.number not in merged:
                merged[t.number] = {(k if "/" in k else f"val/{k}"): v for k, v in own.items()
                                    if isinstance(v, dict)}
        return cls(
            name=study.study_name,
            objectives=objectives,
            directions=directions,
            trials=trials,
            front=sorted(front),
            histories=dict(histories or {}),
            user_attrs=attrs,
            reeval=merged,
            storage=storage,
            study=study,
            sweeps=sweeps,
            point_front=points,
        )


def _pareto_front(study: optuna.Study, frozen: list[FrozenTrial]) -> list[int]:
    if not any(t.state == TrialState.COMPLETE for t in frozen):
        return []
    try:
        return [t.number for t in study.best_trials]
    except ValueError:  # single objective with no completed trial
        return []


def _store_read(read: Callable[[], T], default: T) -> T:
    # A study written by plain Optuna has no automtl tables: draw it without them.
    try:
        return read()
    except sa_exc.SQLAlchemyError:
        return default


class StudyReader:
    """Read-only access to one stored study, kept open across refreshes (dashboard, report)."""

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.storage_url = storage_url
        self.study_name = study_name
        self.study, self._storage = readonly_study(storage_url, study_name)
        # Only read methods of Store are called; the read-only engine enforces it.
        self.store = Store.readonly(storage_url)

    def fingerprint(self) -> str:
        """Changes whenever a trial, an epoch record, the front or a re-evaluation changes."""
        trials = self.study.get_trials(deepcopy=False)
        counts = [_store_read(lambda: self.store.row_counts(self.study_name), {})]
        version = _store_read(lambda: self.store.front_version(self.study_name), -1)
        key = repr([(t.number, t.state.name, t.values) for t in trials] + counts + [version])
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    def snapshot(self) -> StudySnapshot:
        """The study as it is now."""
        name = self.study_name
        histories = _store_read(lambda: self.store.epoch_history(name), {})
        front = [r.trial_number for r in _store_read(lambda: self.store.front(name), [])]
        reeval = _store_read(lambda: self.store.reeval(name), {})
        sweeps = _store_read(lambda: self.store.sweeps(name), {})
        complete = any(t.state == TrialState.COMPLETE
                       for t in self.study.get_trials(deepcopy=False))
        # A study never refreshed by automtl (plain Optuna) gets Optuna's own front.
        snap = StudySnapshot.from_study(self.study, histories=histories,
                                        front=front if (front or not complete) else None,
                                        reeval=reeval, storage=mask_url(self.storage_url),
                                        sweeps=sweeps)
        snap.stale = {r.number: r.reason
                      for r in running_trials(self.study, heartbeat_source(self._storage))
                      if r.stale}
        return snap

    def close(self) -> None:
        """Release database connections."""
        self.store.dispose()
        close_storage(self._storage)


def load_snapshot(storage_url: str, study_name: str) -> StudySnapshot:
    """Snapshot of a stored study, opened read-only (per-epoch history, front and re-evaluation
    from automtl's tables where present)."""
    reader = StudyReader(storage_url, study_name)
    try:
        return reader.snapshot()
    finally:
        reader.close()


__all__ = ["STATES", "StudyReader", "StudySnapshot", "TrialRow", "load_snapshot"]
