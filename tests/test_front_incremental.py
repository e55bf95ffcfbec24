"""The incremental front (each refresh folds only the trials not folded yet into the stored
front) equals a brute-force filter of every stored trial, through kills, failures, retries,
constraints, conditioned trials and a database written by the old full recomputation; directly
and through a real storage proxy process on PostgreSQL."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from automtl.search.storage import make_storage
from automtl.search.store import Store
from automtl.search.tables import front_folded, pareto_front

optuna.logging.set_verbosity(optuna.logging.WARNING)
NAMES = ["ctr_auc", "cvr_auc"]


def _brute(study: optuna.Study, store: Store) -> list[int]:
    """Trials with a point on the front, by a plain O(N^2) filter of every COMPLETE feasible
    trial's points (its own values, or its sweep points if conditioned)."""
    sweeps = store.sweeps(study.study_name)
    pts: list[tuple[int, tuple[float, ...]]] = []
    for t in study.get_trials(deepcopy=True, states=(TrialState.COMPLETE,)):
        if any(c > 0 for c in t.constraints.values()):
            continue
        if t.number in sweeps:
            pts += [(t.number, tuple(sp.val[k] for k in NAMES)) for sp in sweeps[t.number]]
        else:
            pts.append((t.number, tuple(t.values)))

    def dominated(v: tuple[float, ...]) -> bool:
        return any(all(a >= b for a, b in zip(w, v)) and w != v for _, w in pts)

    return sorted({n for n, v in pts if not dominated(v)})


def _ask(study: optuna.Study, rng: random.Random) -> optuna.Trial:
    t = study.ask()
    t.suggest_float("x", 0.0, 1.0)
    t.set_user_attr("config", {"model": {"arch": "mmoe"}})
    return t


def _values(rng: random.Random) -> list[float]:
    # coarse grid: many exact ties, which both fronts must keep alike
    a = round(rng.uniform(0.5, 0.9), 2)
    return [a, round(min(0.95, max(0.4, 1.4 - a + rng.uniform(-0.2, 0.05))), 2)]


Worker = tuple[optuna.Study, Any]  # a study object (its own trial cache) and a Store


def _run(workers: list[Worker], n: int, rng: random.Random) -> None:
    """`n` trials by the workers in turn (kills, failures, infeasible trials, trials finished
    but never refreshed); after each refresh the front equals the brute-force filter."""
    pending: list[int] = []  # COMPLETE trials whose worker "died" before refreshing
    for i in range(n):
        study, store = workers[i % len(workers)]
        t = _ask(study, rng)
        kind = rng.random()
        if kind < 0.08:  # genuine failure (NaN, bad combination)
            study.tell(t, state=TrialState.FAIL)
        elif kind < 0.14:
            study.tell(t, state=TrialState.PRUNED)
        elif kind < 0.18:
            continue  # killed mid-trial: stays RUNNING, never refreshed
        elif kind < 0.22:  # infeasible (a cost constraint above its limit) but COMPLETE
            t.set_constraint("max_params", 5.0)
            study.tell(t, [0.99, 0.99])  # would dominate everything if it counted
        elif kind < 0.32:  # killed after tell, before its refresh
            study.tell(t, _values(rng))
            pending.append(t.number)
            continue
        else:
            study.tell(t, _values(rng))
        rows = store.refresh_front(study)
        assert [r.trial_number for r in rows] == _brute(study, store), f"after trial {t.number}"
        assert [r.trial_number for r in store.front("s")] == [r.trial_number for r in rows]
    assert pending, "the scenario must include trials finished but never refreshed"
    # a trial of the other worker's cache that this worker never saw is folded too
    (study, store), other = workers[0], workers[1][0]
    t = _ask(other, rng)
    other.tell(t, [0.91, 0.93])
    rows = store.refresh_front(study)
    assert t.number in [r.trial_number for r in rows]
    assert [r.trial_number for r in rows] == _brute(study, store)
    # Optuna's own front agrees (no constraints other than the infeasible ones above)
    assert [r.trial_number for r in rows] == sorted(t.number for t in study.best_trials)


def _folded_once(url: str, study: optuna.Study) -> None:
    """Every COMPLETE trial was folded exactly once."""
    store = Store(url)
    with store.engine.connect() as conn:
        folded = sorted(n for (n,) in conn.execute(sa.select(front_folded.c.trial_number)))
    store.dispose()
    assert folded == sorted(t.number for t in study.get_trials(states=(TrialState.COMPLETE,)))


def test_incremental_front_equals_brute_force_through_kills_and_failures(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'inc.db'}"
    first = optuna.create_study(storage=make_storage(url), study_name="s",
                                directions=["maximize", "maximize"])
    first.set_user_attr("objectives", NAMES)
    # two "workers": their own study objects (own trial caches) and Stores
    workers = [(first, Store(url)),
               (optuna.load_study(study_name="s", storage=make_storage(url)), Store(url))]
    _run(workers, 240, random.Random(7))
    _folded_once(url, first)


def test_incremental_front_through_a_storage_proxy_beside_a_direct_worker(pg_url: str,
                                                                          tmp_path: Path):
    """On PostgreSQL, a direct worker and one through a real `automtl storage-proxy` process
    (which reads only the trials not folded yet, by id, with no trial cache): the same table."""
    from test_storage_proxy import Proxy

    proxy = Proxy(pg_url, tmp_path)
    try:
        direct = optuna.create_study(storage=make_storage(pg_url), study_name="s",
                                     directions=["maximize", "maximize"])
        direct.set_user_attr("objectives", NAMES)
        proxied = optuna.load_study(study_name="s", storage=make_storage(proxy.url))
        _run([(direct, Store(pg_url)), (proxied, Store(proxy.url))], 40, random.Random(11))
        _folded_once(pg_url, direct)
        # a proxy restarted (nothing cached there) folds what finished while it was down
        out = proxy.stop()
        assert proxy.proc.returncode == 0, out[-2000:]
        t = _ask(direct, random.Random(0))
        direct.tell(t, [0.97, 0.96])
        proxy = Proxy(pg_url, tmp_path)
        rows = Store(proxy.url).refresh_front(
            optuna.load_study(study_name="s", storage=make_storage(proxy.url)))
        assert t.number in [r.trial_number for r in rows]
        assert [r.trial_number for r in rows] == _brute(direct, Store(pg_url))
        _folded_once(pg_url, direct)
    finally:
        proxy.stop()


def test_conditioned_points_and_a_front_written_before_folding(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'cond.db'}"
    study = optuna.create_study(storage=make_storage(url), study_name="c",
                                directions=["maximize", "maximize"])
    study.set_user_attr("objectives", NAMES)
    store = Store(url)
    rng = random.Random(3)
    for i in range(40):
        t = _ask(study, rng)
        values = _values(rng)
        if i % 5 == 0:  # a conditioned trial: its sweep points are the front candidates
            pts = [{"weights": {"ctr": w, "cvr": 1 - w},
                    "val": {"ctr_auc": values[0] + 0.1 * (w - 0.5),
                            "cvr_auc": values[1] - 0.1 * (w - 0.5)}, "test": {}}
                   for w in (0.2, 0.5, 0.8)]
            store.record_sweep("c", t.number, pts, NAMES)
        study.tell(t, values)
        if i == 19:
            store.refresh_front(study)
            # an older automtl's table: the front rows, nothing recorded as folded
            with store.engine.begin() as conn:
                conn.execute(sa.delete(front_folded))
        if i >= 19:
            rows = store.refresh_front(study)
            assert [r.trial_number for r in rows] == _brute(study, store)
    with store.engine.connect() as conn:
        stored = [json.loads(v) for (v,) in conn.execute(sa.select(pareto_front.c.values_json))]
    assert len(stored) == len(rows)  # no duplicated rows after re-folding the old front
    assert {r.trial_number for r in store.point_front(study)} == {r.trial_number for r in rows}
