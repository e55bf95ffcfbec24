"""The study's trial budget across workers: slots, retries, interrupted trials, next step.

Built on real Optuna studies (in-memory storage) with hand-made trials in each state, so every
rule of `automtl.search.distributed.budget` is checked without starting workers.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from automtl.errors import AutomtlError
from automtl.search.distributed import (
    Heartbeat,
    budget,
    died,
    interrupted,
    orphan_cap,
    parse_devices,
    set_target,
    study_target,
    superseded_trials,
)

DIST = {"x": FloatDistribution(0.0, 1.0)}


def _study(target: int | None) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "maximize"])
    if target is not None:
        set_target(study, target)
    return study


def _add(study: optuna.Study, state: TrialState, x: float = 0.5,
         user_attrs: dict[str, object] | None = None,
         system_attrs: dict[str, object] | None = None) -> None:
    values = [x, 1 - x] if state == TrialState.COMPLETE else None
    study.add_trial(create_trial(state=state, values=values, params={"x": x}, distributions=DIST,
                                 user_attrs=user_attrs or {}, system_attrs=system_attrs or {}))


def test_slots_fill_up_then_done() -> None:
    study = _study(3)
    assert budget(study).next_step() == "ask"
    for _ in range(3):
        _add(study, TrialState.COMPLETE)
    b = budget(study)
    assert (b.used, b.finished, b.target) == (3, 3, 3) and b.next_step() == "done"


def test_running_trials_use_slots_and_make_workers_wait() -> None:
    study = _study(2)
    _add(study, TrialState.COMPLETE)
    _add(study, TrialState.RUNNING)
    b = budget(study)
    assert b.used == 2 and b.finished == 1
    assert b.next_step() == "wait"  # the running one may die and need a retry


def test_a_dead_workers_trial_hands_its_slot_to_its_retry() -> None:
    study = _study(2)
    _add(study, TrialState.COMPLETE, 0.1)
    _add(study, TrialState.FAIL, 0.7)  # trial 1: its worker died
    _add(study, TrialState.WAITING, 0.7,
         system_attrs={"failed_trial": 1, "retry_history": [1]})  # queued retry
    assert superseded_trials(study.get_trials()) == {1}
    b = budget(study)
    assert b.states == {"COMPLETE": 1, "WAITING": 1} and b.retried == 1
    assert b.next_step() == "ask"  # a waiting retry is always taken, even with slots full


def test_genuine_failures_use_their_slot_but_ctrl_c_does_not() -> None:
    study = _study(3)
    _add(study, TrialState.COMPLETE)
    _add(study, TrialState.FAIL, user_attrs={"fail_reason": "loss is NaN at step 3"})
    _add(study, TrialState.FAIL, user_attrs={"fail_reason": "interrupted by the user (Ctrl-C)"})
    trials = study.get_trials()
    assert [interrupted(t) for t in trials] == [False, False, True]
    b = budget(study)
    assert b.used == 2 and b.next_step() == "ask"
    _add(study, TrialState.PRUNED)
    assert budget(study).finished == 3 and budget(study).next_step() == "done"


def test_no_target_means_unbounded() -> None:
    study = _study(None)
    for _ in range(5):
        _add(study, TrialState.COMPLETE)
    assert study_target(study) is None and budget(study).next_step() == "ask"
    assert budget(study, target=5).next_step() == "done"


def test_devices_and_heartbeat_validation() -> None:
    assert parse_devices("0,1") == ["cuda:0", "cuda:1"]
    assert parse_devices("cpu, cuda:2") == ["cpu", "cuda:2"]
    with pytest.raises(AutomtlError, match="empty entry"):
        parse_devices("0,,1")
    with pytest.raises(AutomtlError, match="twice the interval"):
        Heartbeat(10, 15)
    with pytest.raises(AutomtlError, match="> 0"):
        Heartbeat(0, 10)
    with pytest.raises(AutomtlError, match=">= 0"):
        set_target(_study(None), -1)


def test_a_dead_retry_hands_its_slot_to_a_new_trial_but_only_a_few_times() -> None:
    # trial 1 died, its retry 2 died too (Optuna retries once: no retry of 2); trial 2 records
    # no fail_reason, as Optuna's heartbeat check leaves it
    study = _study(10)
    _add(study, TrialState.COMPLETE)
    _add(study, TrialState.FAIL, 0.7)
    _add(study, TrialState.FAIL, 0.7, system_attrs={"failed_trial": 1, "retry_history": [1]})
    trials = study.get_trials()
    assert [died(t) for t in trials] == [False, True, True]
    b = budget(study)
    assert b.used == 1 and b.orphaned == 1 and b.retried == 1  # 2 freed its slot
    # a genuine failure keeps its slot; one repaired as stale by `studies --repair` does not
    _add(study, TrialState.FAIL, user_attrs={"fail_reason": "loss is NaN at step 3"})
    _add(study, TrialState.FAIL, user_attrs={"fail_reason": "stale: no heartbeat for 99 s"})
    assert [died(t) for t in study.get_trials()][3:] == [False, True]
    # the cap: 10 % of the target, at least one: the second orphan of a 10-trial study fills
    assert orphan_cap(10) == 1 and orphan_cap(200) == 20 and orphan_cap(None) == 0
    b = budget(study)
    assert b.orphaned == 1 and b.states == {"COMPLETE": 1, "FAIL": 2}


def test_heartbeat_failed_retry_frees_its_slot_through_optunas_own_stale_check(
        tmp_path: Path) -> None:
    """Optuna's heartbeat path, not hand-made states: a trial's beat goes stale, Optuna FAILs
    it and queues its retry; the retry's beat goes stale too and it is FAILed without a retry.
    Its slot is free again, so workers still reach the target of COMPLETE trials."""
    import time
    import warnings

    from automtl.search.distributed import worker_storage

    url = f"sqlite:///{tmp_path / 'hb.db'}"
    optuna.create_study(study_name="s", storage=url, directions=["maximize", "maximize"])
    storage = worker_storage(url, Heartbeat(interval=1, grace=2))
    study = optuna.load_study(study_name="s", storage=storage)
    set_target(study, 1)
    study_id = storage.get_study_id_from_name("s")
    with warnings.catch_warnings():
        # Optuna's experimental heartbeat API, and its note that heartbeats belong in optimize()
        warnings.simplefilter("ignore")
        for attempt in range(2):
            trial = study.ask({"x": DIST["x"]})  # attempt 1: the retry popped from WAITING
            assert trial.number == attempt
            storage.record_heartbeat(
                storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))
            # the worker stops beating (SIGKILL, or starved past the grace); SQLite's clock
            # counts whole seconds, so > 2 s needs 3 s to be sure
            time.sleep(3.1)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials()
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
        assert trials[1].system_attrs["retry_history"] == [0]  # the retry, and no retry of it
        b = budget(study)
        assert b.used == 0 and b.retried == 1 and b.orphaned == 1 and b.next_step() == "ask"
        study.tell(study.ask({"x": DIST["x"]}), [0.5, 0.5])
        assert budget(study).next_step() == "done"
    storage.engine.dispose()
