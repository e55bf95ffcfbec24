"""Many workers, one study: a real PostgreSQL server (tests/pg.py) and a real SQLite file.

Each test runs real `automtl worker` processes that train tiny models on tiny synthetic data,
then checks the database: trial counts, unique numbers, Pareto table vs Optuna's best_trials,
heartbeat-driven FAIL + retry of a SIGKILLed worker's trial.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState
from conftest import load_benchmark
from pg import PG_PASSWORD
from rich.console import Console

from automtl.cli._progress import RichWorkersView
from automtl.search.meta import TrialMeta
from automtl.search.store import Store
from automtl.search.tables import epoch_metrics
from automtl.search.study_config import load_study_config
from automtl.search.distributed import (
    Heartbeat,
    WorkerProcess,
    budget,
    launch_workers,
    prepare_shared_study,
    start_workers,
    watch_workers,
)

# Real worker processes on a shared 2-core CI box: allow more than the default per-test limit.
pytestmark = pytest.mark.timeout(900)

ENTRY = "import sys; from automtl.cli import main; sys.exit(main(sys.argv[1:]))"


def write_study(folder: Path, name: str, n_trials: int) -> Path:
    """The worker benchmark's tiny study (3,000 rows) in `folder`; returns the preset path."""
    return load_benchmark("workers_scale").write_study(folder, name, n_trials, rows=3000)


def automtl(*args: str, cwd: Path, timeout: float = 240,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess."""
    return subprocess.run([sys.executable, "-c", ENTRY, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def assert_front_matches_optuna(url: str, study: optuna.Study) -> None:
    """automtl's Pareto table holds exactly Optuna's best trials, with their values."""
    front = Store(url).front(study.study_name)
    best = {t.number: t for t in study.best_trials}
    assert sorted(r.trial_number for r in front) == sorted(best)
    for row in front:
        assert list(row.values.values()) == pytest.approx(best[row.trial_number].values)
        assert row.config == best[row.trial_number].user_attrs["config"]


def assert_epochs_recorded(url: str, study: optuna.Study) -> None:
    """Every COMPLETE trial has its epoch-1 metrics in automtl's table (nothing lost)."""
    engine = sa.create_engine(url)
    t = epoch_metrics.c
    with engine.connect() as conn:
        trials = {n for (n,) in conn.execute(sa.select(t.trial_number).distinct()
                                             .where(t.study_name == study.study_name,
                                                    t.epoch == 1))}
    engine.dispose()
    done = {tr.number for tr in study.get_trials(states=(TrialState.COMPLETE,))}
    assert done <= trials


def test_four_workers_on_postgres_reach_exactly_the_target(pg_url: str, tmp_path: Path) -> None:
    made = automtl("study", "create", "--study-config", str(write_study(tmp_path, "pg4", 24)),
                   "--storage", pg_url, "--heartbeat-interval", "2", "--grace-period", "10",
                   cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "target 24 trials" in made.stdout and "automtl:***@127.0.0.1" in made.stdout
    assert PG_PASSWORD not in made.stdout + made.stderr
    out = quiet()
    result = launch_workers(pg_url, "pg4", 4, log_dir=tmp_path / "logs",
                            view=RichWorkersView(out))
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert result.ok, logs[-2000:]

    study = optuna.load_study(study_name="pg4", storage=pg_url)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(trials) == 24 and sorted(numbers) == list(range(24))  # no gaps, no duplicates
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert budget(study).finished == 24 and result.budget.finished == 24
    workers = {TrialMeta.read(t).worker for t in trials}
    assert len(workers) >= 2  # the work was really shared
    assert_front_matches_optuna(pg_url, study)
    assert_epochs_recorded(pg_url, study)
    # the combined view reported every trial, and no password reached any output
    assert all(f"trial {n} COMPLETE" in out.file.getvalue() for n in numbers)
    assert PG_PASSWORD not in out.file.getvalue() + logs
    assert "***@127.0.0.1" in logs


def _signal_mid_trial(study: optuna.Study, worker: WorkerProcess, sig: int) -> datetime:
    """Send `sig` to `worker` while it runs a trial (polls the database for its RUNNING trial)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if any(TrialMeta.read(t).worker == worker.name for t in running):
            os.kill(worker.process.pid, sig)
            return datetime.now()
        time.sleep(0.05)
    raise AssertionError(f"worker {worker.index} never started a trial: "
                         f"{worker.log.read_text()[-1000:]}")


def test_sigkilled_worker_trial_fails_after_grace_and_is_retried(pg_url: str,
                                                                 tmp_path: Path) -> None:
    cfg = load_study_config(write_study(tmp_path, "kill", 8))
    hb = Heartbeat(1, 3)
    prepare_shared_study(cfg, pg_url, heartbeat=hb)
    procs = start_workers(pg_url, "kill", 3, log_dir=tmp_path / "logs")
    killed, stopped = procs[0], procs[1]
    study = optuna.load_study(study_name="kill", storage=pg_url)
    killed_at = _signal_mid_trial(study, killed, signal.SIGKILL)  # no chance to clean up
    _signal_mid_trial(study, stopped, signal.SIGINT)  # Ctrl-C: clean stop
    result = watch_workers(pg_url, "kill", procs, view=RichWorkersView(quiet()))
    assert result.returncodes == [-signal.SIGKILL, 130, 0], procs[2].log.read_text()[-2000:]

    study = optuna.load_study(study_name="kill", storage=pg_url)
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2
    (dead,) = [t for t in failed if TrialMeta.read(t).worker == killed.name]
    (stop,) = [t for t in failed if TrialMeta.read(t).worker == stopped.name]
    # the killed worker's trial: FAILed by another worker only after the grace period ...
    assert dead.user_attrs.get("fail_reason") is None
    assert (dead.datetime_complete - killed_at).total_seconds() >= hb.grace - hb.interval - 0.5
    # ... and its configuration retried once, by a live worker, to completion
    retries = [t for t in trials if t.system_attrs.get("retry_history") == [dead.number]]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert TrialMeta.read(retry).worker == procs[2].name
    # the Ctrl-C'd trial says so, is not retried, and hands its slot back
    assert str(stop.user_attrs["fail_reason"]).startswith("interrupted")
    assert not any(t.system_attrs.get("retry_history") == [stop.number] for t in trials)
    # the study still reached its count: 8 slots, all COMPLETE, plus the two FAILs
    assert len(trials) == 10 and sorted(t.number for t in trials) == list(range(10))
    b = budget(study)
    assert b.finished == 8 and b.states == {"COMPLETE": 8} and b.retried == 1
    assert_front_matches_optuna(pg_url, study)


def test_two_workers_share_one_sqlite_file(tmp_path: Path) -> None:
    preset = write_study(tmp_path, "lite", 6)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run = automtl("search", "--study-config", str(preset), "--storage", url, "--workers", "2",
                  "--no-report", cwd=tmp_path, env={"TMPDIR": str(scratch)})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert not list(scratch.glob("automtl-workers-*"))  # the workers' logs are not left behind
    assert "Pareto front of 'lite'" in run.stdout and "6 trials in" in run.stdout
    study = optuna.load_study(study_name="lite", storage=url)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(6))  # none lost, none duplicated
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({TrialMeta.read(t).worker for t in trials}) == 2
    assert_front_matches_optuna(url, study)
    assert_epochs_recorded(url, study)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
    assert study.user_attrs["target_trials"] == 6  # the preset's n_trials became the target
