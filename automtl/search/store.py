"""automtl's records beside Optuna's, in the same database (opening storages: `storage`).

Optuna's RDB storage keeps studies, trials, parameters and objective values. `Store` reads and
writes automtl's own tables (`automtl.search.tables`: per-epoch metrics, the Pareto front and its
version, seed re-evaluations, sweep points of conditioned trials). Whenever a trial finishes the
front is updated from Optuna's stored values in one transaction, so concurrent workers converge
on the same front: every COMPLETE trial not folded in yet is compared with the stored front
only (`fold_front`), so a refresh costs the same at 10 trials and at 10,000. With conditioned
trials it is the non-dominated set over points (`point_front`): an ordinary trial is one point,
a conditioned trial one per sweep vector.
"""

from __future__ import annotations

import json
import math
import statistics
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, TypeVar

import optuna
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from automtl.search.dburl import is_proxy_url, mask_url
from automtl.search.defaults import DEFAULT_STORAGE
from automtl.search.front import (
    FrontRow,
    SweepRow,
    feasible,
    fold_front,
    front_points,
    nondominated_mask,
    row_from_trial,
)
from automtl.search.meta import FRONT_FIELDS
from automtl.search.storage import db_error, engine_kwargs, objective_names
from automtl.search.tables import (
    epoch_metrics,
    front_folded,
    front_version,
    metadata,
    pareto_front,
    reeval_metrics,
    sweep_points,
    unfolded_trials,
)

# Trial fields copied into the front table's attrs column (for tables and exports).
FRONT_ATTRS = FRONT_FIELDS


def _finite_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Store:
    """automtl's tables in the database at `storage_url` (created on first use).

    For a storage proxy (``grpc://host:port``) `Store(url)` is a `proxy.RemoteStore`: the same
    methods, run on the proxy host. `engine`: an existing engine on that database to share."""

    def __new__(cls, storage_url: str = DEFAULT_STORAGE, **kwargs: Any) -> Any:
        if cls is Store and is_proxy_url(storage_url):
            from automtl.search.proxy import RemoteStore

            return RemoteStore(storage_url)
        return super().__new__(cls)

    def __init__(self, storage_url: str = DEFAULT_STORAGE, *, create: bool = True,
                 engine: sa.Engine | None = None) -> None:
        self.url = storage_url
        try:
            self.engine = engine or sa.create_engine(storage_url, **engine_kwargs(storage_url))
            if create:
                metadata.create_all(self.engine)
        except (sa_exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise db_error(storage_url, exc) from None

    @classmethod
    def readonly(cls, storage_url: str) -> "Store":
        """A Store whose engine cannot write (SQLite mode=ro, PostgreSQL read-only); for the
        read methods of `studies`, `pareto`, `report` and `dashboard`. Tables are not created:
        read through `read_or` where a plain-Optuna database may lack them."""
        from automtl.search.dbopen import readonly_url

        if is_proxy_url(storage_url):
            from automtl.search.proxy import RemoteStore

            return RemoteStore(storage_url, readonly=True)  # type: ignore[return-value]
        ro, kwargs = readonly_url(storage_url)
        store = cls.__new__(cls)
        store.url = storage_url
        try:
            store.engine = sa.create_engine(ro, **kwargs)
        except (sa_exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise db_error(storage_url, exc) from None
        return store

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r})"

    def dispose(self) -> None:
        """Close pooled connections (the Store stays usable)."""
        self.engine.dispose()

    # -- per-epoch metrics -------------------------------------------------------------------

    def record_epoch(self, study_name: str, trial_number: int, epoch: int,
                     metrics: dict[str, float]) -> None:
        """Store (replace) the metrics of one epoch of one trial."""
        rows = [
            {"study_name": study_name, "trial_number": int(trial_number), "epoch": int(epoch),
             "metric": str(k), "value": _finite_or_none(v)}
            for k, v in metrics.items()
        ]
        t = epoch_metrics.c
        with self.engine.begin() as conn:
            conn.execute(sa.delete(epoch_metrics).where(
                t.study_name == study_name, t.trial_number == int(trial_number),
                t.epoch == int(epoch)))
            if rows:
                conn.execute(sa.insert(epoch_metrics), rows)

    def epoch_history(self, study_name: str) -> dict[int, list[dict[str, float]]]:
        """Trial number -> [{"epoch": e, metric: value, ...}] in epoch order (NaN for non-finite)."""
        t = epoch_metrics.c
        q = (sa.select(t.trial_number, t.epoch, t.metric, t.value)
             .where(t.study_name == study_name, t.epoch >= 1)  # 0: a rows rung (budget.py)
             .order_by(t.trial_number, t.epoch))
        out: dict[int, dict[int, dict[str, float]]] = {}
        with self.engine.connect() as conn:
            for trial, epoch, metric, value in conn.execute(q):
                rec = out.setdefault(trial, {}).setdefault(epoch, {"epoch": epoch})
                rec[metric] = _nan_if_none(value)
        return {trial: [epochs[e] for e in sorted(epochs)] for trial, epochs in out.items()}

    def rung_values(self, study_name: str, epoch: int,
                    metrics: Iterable[str]) -> dict[int, dict[str, float]]:
        """Trial number -> {metric: value} at exactly `epoch`, for the given metrics."""
        t = epoch_metrics.c
        names = list(metrics)
        q = (sa.select(t.trial_number, t.metric, t.value)
             .where(t.study_name == study_name, t.epoch == int(epoch), t.metric.in_(names)))
        out: dict[int, dict[str, float]] = {}
        with self.engine.connect() as conn:
            for trial, metric, value in conn.execute(q):
                out.setdefault(trial, {})[metric] = _nan_if_none(value)
        return out

    def running_epochs(self, study_name: str, trials: Iterable[int]) -> dict[int, int]:
        """Trial -> last recorded epoch, for the given trials (those with any)."""
        t = epoch_metrics.c
        q = (sa.select(t.trial_number, sa.func.max(t.epoch))
             .where(t.study_name == study_name, t.trial_number.in_([int(n) for n in trials]))
             .group_by(t.trial_number))
        with self.engine.connect() as conn:
            return {int(n): int(e) for n, e in conn.execute(q)}

    # -- Pareto front ------------------------------------------------------------------------

    def _lock_study(self, conn: sa.Connection, study_name: str) -> int:
        """Bump the study's front version; the row lock serialises concurrent refreshes."""
        fv = front_version.c
        res = conn.execute(sa.update(front_version).where(fv.study_name == study_name)
                           .values(version=fv.version + 1, updated_at=_now()))
        if res.rowcount == 0:
            conn.execute(sa.insert(front_version).values(study_name=study_name, version=1,
                                                         updated_at=_now()))
        return int(conn.execute(sa.select(fv.version).where(fv.study_name == study_name))
                   .scalar_one())

    def refresh_front(self, study: optuna.Study,
                      storage: optuna.storages.BaseStorage | None = None) -> list[FrontRow]:
        """Fold every COMPLETE trial not folded yet into the study's stored front; its rows.

        The database names those trials (`tables.unfolded_trials`); they are read from
        `study.get_trials` (a worker's trial cache, warm: nothing read again), or, given
        `storage`, one by one from it (the storage proxy's uncached RDB storage: a refresh then
        reads only the new trials, whatever the study's size, and keeps no copy of the study)."""
        names = objective_names(study)
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    # Take the per-study lock first, then read trials: the last refresher
                    # always sees every trial committed before it, so the table converges.
                    self._lock_study(conn, study.study_name)
                    rows = self._fold_new_trials(conn, study, names, storage)
                break
            except sa_exc.IntegrityError:
                # Two first-ever refreshes raced on inserting the version row: retry once.
                if attempt:
                    raise
        reeval = self.reeval(study.study_name)
        for r in rows:
            r.reeval = reeval.get(r.trial_number)
        return rows

    def _fold_new_trials(self, conn: sa.Connection, study: optuna.Study, names: list[str],
                         storage: optuna.storages.BaseStorage | None) -> list[FrontRow]:
        """Fold the COMPLETE trials missing from `automtl_front_folded` into the stored front
        (under the caller's row lock) and return the front's rows. A trial whose worker died
        between finishing and refreshing is folded by the next refresh, of any worker."""
        name = study.study_name
        stored = self._front_rows(conn, name)
        if not study.directions:
            return stored
        unfolded = {int(n): int(tid) for n, tid in conn.execute(unfolded_trials(name))}
        if not unfolded:
            return stored
        if storage is not None:
            new = [storage.get_trial(tid) for tid in unfolded.values()]
        else:  # deepcopy=False on Optuna's cached storage: nothing finished is read again
            new = [t for t in study.get_trials(deepcopy=False,
                                               states=(optuna.trial.TrialState.COMPLETE,))
                   if t.number in unfolded]
        if not new:
            return stored
        rows = [row_from_trial(t, names) for t in new if feasible(t)]
        numbers = {r.trial_number for r in stored} | {r.trial_number for r in rows}
        front = fold_front(stored, rows, self._sweeps(conn, name, numbers), names)
        on = {r.trial_number for r in front}
        new_numbers = {t.number for t in new}
        gone = [r.trial_number for r in stored if r.trial_number not in on
                or r.trial_number in new_numbers]
        if gone:
            conn.execute(sa.delete(pareto_front).where(pareto_front.c.study_name == name,
                                                       pareto_front.c.trial_number.in_(gone)))
        added = [r for r in front if r.trial_number in new_numbers]
        if added:
            now = _now()
            conn.execute(sa.insert(pareto_front), [
                {"study_name": name, "trial_number": r.trial_number,
                 "values_json": json.dumps(r.values), "test_json": json.dumps(r.test),
                 "config_json": json.dumps(r.config),
                 "params_json": json.dumps(r.params, default=str),
                 "attrs_json": json.dumps(r.attrs, default=str), "updated_at": now}
                for r in added])
        conn.execute(sa.insert(front_folded), [{"study_name": name, "trial_number": n}
                                               for n in sorted(new_numbers)])
        return front

    def point_front(self, study: optuna.Study) -> list[FrontRow]:
        """The study's front over points: every non-dominated (trial, sweep point) pair.

        A conditioned trial's points carry `weights`/`point`, their sweep metrics as `values`
        and `test`, and a config whose `loss.weighting.preference` is that vector (exporting
        it reproduces the point)."""
        with self.engine.connect() as conn:
            sweeps = self._sweeps(conn, study.study_name)
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return front_points(done, sweeps, objective_names(study))

    # -- sweep points of conditioned trials --------------------------------------------------

    def record_sweep(self, study_name: str, trial_number: int, points: list[dict[str, Any]],
                     objectives: list[str]) -> None:
        """Store (replace) a trial's sweep: dicts with "weights", "val", "test"."""
        vals = [[_nan_if_none(_finite_or_none(p["val"].get(o))) for o in objectives]
                for p in points]
        own_front = nondominated_mask(vals)
        rows = [{"study_name": study_name, "trial_number": int(trial_number), "point": i,
                 "weights_json": json.dumps(p["weights"]),
                 "val_json": json.dumps(_finite_dict(p["val"])),
                 "test_json": json.dumps(_finite_dict(p.get("test") or {})),
                 "trial_front": bool(own_front[i])} for i, p in enumerate(points)]
        t = sweep_points.c
        with self.engine.begin() as conn:
            conn.execute(sa.delete(sweep_points).where(
                t.study_name == study_name, t.trial_number == int(trial_number)))
            if rows:
                conn.execute(sa.insert(sweep_points), rows)

    def sweeps(self, study_name: str) -> dict[int, list[SweepRow]]:
        """Trial number -> its sweep points in order (only conditioned trials appear)."""
        with self.engine.connect() as conn:
            return self._sweeps(conn, study_name)

    def _sweeps(self, conn: sa.Connection, study_name: str,
                numbers: set[int] | None = None) -> dict[int, list[SweepRow]]:
        if not sa.inspect(conn).has_table(sweep_points.name):  # opened read-only, never created
            return {}
        t = sweep_points.c
        q = (sa.select(t.trial_number, t.point, t.weights_json, t.val_json, t.test_json,
                       t.trial_front)
             .where(t.study_name == study_name).order_by(t.trial_number, t.point))
        if numbers is not None:
            q = q.where(t.trial_number.in_(sorted(numbers)))
        out: dict[int, list[SweepRow]] = {}
        for n, i, w, v, te, f in conn.execute(q):
            out.setdefault(n, []).append(SweepRow(n, i, json.loads(w), _nan_dict(json.loads(v)),
                                                  _nan_dict(json.loads(te)), bool(f)))
        return out

    def front(self, study_name: str) -> list[FrontRow]:
        """The stored front of a study (empty when no trial completed yet)."""
        with self.engine.connect() as conn:
            rows = self._front_rows(conn, study_name)
        reeval = self.reeval(study_name)
        for r in rows:
            r.reeval = reeval.get(r.trial_number)
        return rows

    def _front_rows(self, conn: sa.Connection, study_name: str) -> list[FrontRow]:
        t = pareto_front.c
        q = (sa.select(t.trial_number, t.values_json, t.test_json, t.config_json, t.params_json,
                       t.attrs_json)
             .where(t.study_name == study_name).order_by(t.trial_number))
        return [FrontRow(n, json.loads(v), json.loads(te), json.loads(c), json.loads(p),
                         json.loads(a)) for n, v, te, c, p, a in conn.execute(q)]

    def front_version(self, study_name: str) -> int:
        """How many times the study's front was refreshed (0 = never); poll to detect changes."""
        fv = front_version.c
        with self.engine.connect() as conn:
            v = conn.execute(sa.select(fv.version).where(fv.study_name == study_name)).scalar()
        return int(v or 0)

    # -- re-evaluation -----------------------------------------------------------------------

    def record_reeval(self, study_name: str, trial_number: int, seed: int,
                      val: dict[str, float], test: dict[str, float]) -> None:
        """Store (replace) one seed's validation and test metrics of a re-trained trial config."""
        t = reeval_metrics.c
        rows = [{"study_name": study_name, "trial_number": int(trial_number), "seed": int(seed),
                 "split": split, "metric": k, "value": _finite_or_none(v)}
                for split, metrics in (("val", val), ("test", test)) for k, v in metrics.items()]
        with self.engine.begin() as conn:
            conn.execute(sa.delete(reeval_metrics).where(
                t.study_name == study_name, t.trial_number == int(trial_number),
                t.seed == int(seed)))
            if rows:
                conn.execute(sa.insert(reeval_metrics), rows)

    def reeval_seeds(self, study_name: str, trial_number: int) -> set[int]:
        """Seeds already re-evaluated for a trial."""
        t = reeval_metrics.c
        q = sa.select(t.seed).distinct().where(t.study_name == study_name,
                                               t.trial_number == int(trial_number))
        with self.engine.connect() as conn:
            return {int(s) for (s,) in conn.execute(q)}

    def reeval(self, study_name: str) -> dict[int, dict[str, dict[str, float]]]:
        """Trial -> {"val/<metric>" | "test/<metric>": {"mean", "std", "n"}} over re-run seeds."""
        t = reeval_metrics.c
        q = sa.select(t.trial_number, t.split, t.metric, t.value).where(t.study_name == study_name)
        values: dict[int, dict[str, list[float]]] = {}
        with self.engine.connect() as conn:
            for trial, split, metric, value in conn.execute(q):
                if value is not None:
                    values.setdefault(trial, {}).setdefault(f"{split}/{metric}", []).append(value)
        return {
            trial: {k: {"mean": statistics.fmean(v),
                        "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}
                    for k, v in sorted(metrics.items())}
            for trial, metrics in values.items()
        }

    def row_counts(self, study_name: str) -> dict[str, int]:
        """Rows of the study in the per-epoch and re-evaluation tables (change detection)."""
        out = {}
        with self.engine.connect() as conn:
            for table in (epoch_metrics, reeval_metrics):
                q = (sa.select(sa.func.count()).select_from(table)
                     .where(table.c.study_name == study_name))
                out[table.name] = int(conn.execute(q).scalar() or 0)
        return out

    # -- housekeeping ------------------------------------------------------------------------

    def delete_study(self, study_name: str) -> None:
        """Remove a study's rows from automtl's tables (Optuna's own rows are untouched)."""
        with self.engine.begin() as conn:
            for table in (epoch_metrics, pareto_front, front_folded, front_version,
                          reeval_metrics, sweep_points):
                conn.execute(sa.delete(table).where(table.c.study_name == study_name))


def _finite_dict(d: dict[str, Any]) -> dict[str, float | None]:
    return {k: _finite_or_none(v) for k, v in d.items()}


def _nan_dict(d: dict[str, Any]) -> dict[str, float]:
    return {k: _nan_if_none(v) for k, v in d.items()}


def compute_front(study: optuna.Study, names: list[str] | None = None) -> list[FrontRow]:
    """The study's Pareto front from Optuna's stored values, computed in memory (no write)."""
    names = objective_names(study) if names is None else names
    complete = any(t.state == optuna.trial.TrialState.COMPLETE
                   for t in study.get_trials(deepcopy=False))
    best = study.best_trials if study.directions and complete else []
    return sorted((row_from_trial(tr, names) for tr in best), key=lambda r: r.trial_number)


T = TypeVar("T")


def read_or(read: Callable[[], T], default: T) -> T:
    """`read()`, or `default` where automtl's tables are missing (a plain-Optuna database)."""
    try:
        return read()
    except sa_exc.OperationalError as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            return default
        raise
    except sa_exc.ProgrammingError:  # PostgreSQL: undefined table
        return default


__all__ = ["FRONT_ATTRS", "Store", "compute_front", "read_or"]
