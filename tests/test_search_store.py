"""automtl's SQL tables beside Optuna's: per-epoch metrics, Pareto front, re-evaluation, errors."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest

from automtl.errors import AutomtlError
from automtl.search.dburl import mask_url
from automtl.search.storage import make_storage, open_study, study_names
from automtl.search.store import Store

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(url: str, name: str = "s") -> optuna.Study:
    study = optuna.create_study(storage=make_storage(url), study_name=name,
                                directions=["maximize", "maximize"])
    study.set_user_attr("objectives", ["ctr_auc", "cvr_auc"])
    return study


def _complete(study: optuna.Study, values: list[float], arch: str = "mmoe") -> int:
    t = study.ask()
    t.suggest_int("model.n_experts", 2, 8)
    t.set_user_attr("config", {"model": {"arch": arch}})
    t.set_user_attr("arch", arch)
    t.set_user_attr("n_params", 1234)
    t.set_user_attr("test_metrics", {"ctr_auc": values[0] - 0.01, "cvr_auc": values[1] - 0.01})
    study.tell(t, values)
    return t.number


def test_front_matches_optunas_best_trials_and_lives_in_sql(tmp_path: Path):
    db = tmp_path / "f.db"
    url = f"sqlite:///{db}"
    study, store = _study(url), Store(url)
    rng = np.random.default_rng(0)
    for _ in range(12):
        _complete(study, rng.uniform(0.5, 0.8, size=2).round(4).tolist())
        rows = store.refresh_front(study)
        assert sorted(r.trial_number for r in rows) == sorted(t.number for t in study.best_trials)
    _complete(study, [0.9, 0.9], arch="ple")  # dominates everything
    rows = store.refresh_front(study)
    assert [r.trial_number for r in rows] == [12]
    row = store.front("s")[0]
    assert row.values == {"ctr_auc": 0.9, "cvr_auc": 0.9}
    assert row.test["ctr_auc"] == pytest.approx(0.89)
    assert row.config == {"model": {"arch": "ple"}} and row.attrs["arch"] == "ple"
    assert "model.n_experts" in row.params
    assert store.front_version("s") == 13
    # plain SQL sees the same rows (the front is queryable without automtl)
    with sqlite3.connect(db) as conn:
        got = conn.execute("select trial_number, values_json from automtl_pareto_front "
                           "where study_name = 's'").fetchall()
    assert got == [(12, '{"ctr_auc": 0.9, "cvr_auc": 0.9}')]
    # another study in the same database is independent
    other = _study(url, "t")
    _complete(other, [0.1, 0.2])
    store.refresh_front(other)
    assert len(store.front("s")) == 1 and len(store.front("t")) == 1
    store.delete_study("t")
    assert store.front("t") == [] and len(store.front("s")) == 1


def test_epoch_history_and_rung_values(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'e.db'}")
    store.record_epoch("s", 0, 1, {"ctr_auc": 0.6, "cvr_auc": float("nan")})
    store.record_epoch("s", 0, 2, {"ctr_auc": 0.7, "cvr_auc": 0.5})
    store.record_epoch("s", 1, 1, {"ctr_auc": 0.65, "cvr_auc": 0.55})
    store.record_epoch("s", 1, 1, {"ctr_auc": 0.66, "cvr_auc": 0.56})  # replaces, no duplicate
    hist = store.epoch_history("s")
    assert [r["epoch"] for r in hist[0]] == [1, 2]
    assert math.isnan(hist[0][0]["cvr_auc"]) and hist[0][1]["ctr_auc"] == 0.7
    assert hist[1] == [{"epoch": 1, "ctr_auc": 0.66, "cvr_auc": 0.56}]
    assert store.rung_values("s", 1, ["ctr_auc"]) == {0: {"ctr_auc": 0.6}, 1: {"ctr_auc": 0.66}}
    assert store.epoch_history("missing") == {}


def test_reeval_mean_std_and_resume(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    study, store = _study(url), Store(url)
    n = _complete(study, [0.7, 0.6])
    store.record_reeval("s", n, 1, {"ctr_auc": 0.70}, {"ctr_auc": 0.69})
    store.record_reeval("s", n, 2, {"ctr_auc": 0.72}, {"ctr_auc": 0.71})
    assert store.reeval_seeds("s", n) == {1, 2}
    stats = store.reeval("s")[n]
    assert stats["val/ctr_auc"]["mean"] == pytest.approx(0.71)
    assert stats["val/ctr_auc"]["std"] == pytest.approx(np.std([0.70, 0.72], ddof=1))
    assert stats["test/ctr_auc"]["n"] == 2
    assert store.refresh_front(study)[0].reeval == stats


def test_open_study_errors_are_one_line_and_mask_passwords(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    _study(url, "alpha")
    assert open_study(url, "alpha").study_name == "alpha"
    assert study_names(url) == ["alpha"]
    with pytest.raises(AutomtlError, match=r"no study named 'beta' .*available: alpha"):
        open_study(url, "beta")
    with pytest.raises(AutomtlError, match="no database file at"):
        open_study(f"sqlite:///{tmp_path / 'missing.db'}", "alpha")
    assert not (tmp_path / "missing.db").exists()  # opening never creates a database
    secret = "postgresql+psycopg://bob:hunter2@127.0.0.1:1/db"
    assert mask_url(secret) == "postgresql+psycopg://bob:***@127.0.0.1:1/db"
    with pytest.raises(AutomtlError) as info:
        open_study(secret, "alpha")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    with pytest.raises(AutomtlError, match="malformed database URL"):
        open_study("not a url", "alpha")
