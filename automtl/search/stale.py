"""RUNNING trials whose process is gone: found (heartbeat age, owner process) and marked FAIL.

A SIGKILLed search leaves its trial RUNNING forever. A trial is *stale* when

- it has an Optuna heartbeat (workers) older than the study's grace period, or
- it has no heartbeat and its owner ("host:pid", stored when the trial starts) ran on this
  machine and that process no longer exists (or the pid now belongs to a younger process).

`automtl studies` shows stale trials (read-only); `automtl studies --repair` marks them FAIL;
`automtl search` resuming a study without heartbeats marks those of gone local processes FAIL
before it starts (with heartbeats, Optuna's own stale-trial handling retries them). A trial
marked FAIL here that the study enqueued (baseline, preset probe, warm-start point, budget final)
is enqueued again (`redo_trial`): a kill loses none of them.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Union

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from automtl.search.enqueue import redo_trial
from automtl.search.meta import StudyMeta, TrialMeta
from automtl.search.tables import optuna_heartbeats, optuna_studies, optuna_trials

# The owner ("host:pid") is `TrialMeta.worker`; heartbeat settings are `StudyMeta.heartbeat`.
DEFAULT_GRACE_S = 60


def owner_name() -> str:
    """This process as a trial owner, "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RunningTrial:
    """One RUNNING trial and whether its process is known to be gone."""

    number: int
    owner: str | None
    heartbeat_age_s: float | None  # None: the trial has no heartbeat record
    stale: bool
    reason: str  # why it is stale ("" when it is not)


def _owner_gone(owner: str | None, started: datetime | None) -> bool:
    """True only when `owner` ran on this machine and its process is gone for sure."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine: only a heartbeat can tell
    import psutil

    try:
        proc = psutil.Process(int(pid))
        created = proc.create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    # the pid was reused by a process younger than the trial
    return started is not None and created > started.timestamp() + 1.0


class HeartbeatAges(Protocol):
    """Heartbeat ages without a database engine: a storage proxy's client (read on its host)."""

    def heartbeat_ages(self, study_name: str, numbers: list[int]) -> dict[int, float]: ...


HeartbeatSource = Union[sa.Engine, HeartbeatAges]


def heartbeat_source(storage: Any) -> HeartbeatSource:
    """Where `heartbeat_ages` reads for an RDB storage (its engine) or a proxy client (itself)."""
    return storage if hasattr(storage, "heartbeat_ages") else storage.engine


def heartbeat_ages(source: HeartbeatSource, study_name: str,
                   numbers: list[int]) -> dict[int, float]:
    """Trial number -> seconds since its last heartbeat (database clock).

    Read with SQL from Optuna's own tables (`trial_heartbeats` joined to `trials` and `studies`:
    its versioned schema), because Optuna has no public reader of heartbeat ages; keyed by trial
    number so no private trial id is needed."""
    if not numbers:
        return {}
    if not isinstance(source, sa.Engine):
        return source.heartbeat_ages(study_name, numbers)
    engine = source
    hb, trials, studies = optuna_heartbeats, optuna_trials, optuna_studies
    query = (sa.select(trials.c.number, hb.c.heartbeat)
             .select_from(hb.join(trials, hb.c.trial_id == trials.c.trial_id)
                          .join(studies, trials.c.study_id == studies.c.study_id))
             .where(studies.c.study_name == study_name, trials.c.number.in_(numbers)))
    try:
        with engine.connect() as conn:
            now = conn.execute(sa.select(sa.func.current_timestamp())).scalar()
            rows = conn.execute(query).all()
    except sa.exc.SQLAlchemyError:
        return {}
    out = {}
    for number, beat in rows:
        if isinstance(now, str):
            now = datetime.fromisoformat(now)
        if isinstance(beat, str):
            beat = datetime.fromisoformat(beat)
        out[int(number)] = (now.replace(tzinfo=None) - beat.replace(tzinfo=None)).total_seconds()
    return out


def running_trials(study: optuna.Study, source: HeartbeatSource) -> list[RunningTrial]:
    """The study's RUNNING trials with heartbeat age and staleness (reads only); `source`:
    `heartbeat_source(study)`."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    ages = heartbeat_ages(source, study.study_name, [t.number for t in trials])
    grace = float((StudyMeta.read(study).heartbeat or {}).get("grace", DEFAULT_GRACE_S))
    out = []
    for t in trials:
        owner = TrialMeta.read(t).worker
        age = ages.get(t.number)
        if age is not None:
            stale = age > grace
            reason = f"no heartbeat for {age:.0f} s (grace {grace:.0f} s)" if stale else ""
        else:
            stale = _owner_gone(owner, t.datetime_start)
            reason = f"its process {owner} is gone" if stale else ""
        out.append(RunningTrial(t.number, owner, age, stale, reason))
    return out


def mark_stale_failed(study: optuna.Study, storage: optuna.storages.BaseStorage, *,
                      only_gone_owners: bool = False) -> list[RunningTrial]:
    """Mark the study's stale RUNNING trials FAIL (reason in `TrialMeta.fail_reason`).

    `storage`: the RDB storage (or proxy client) the caller loaded `study` from (Optuna's public storage API
    addresses a trial of another process by study name and trial number; `study` has no public
    handle on its storage). `only_gone_owners`: only trials without heartbeat whose local process
    is gone (what a resuming search does by itself)."""
    study_id = storage.get_study_id_from_name(study.study_name)
    done = []
    for r in running_trials(study, heartbeat_source(storage)):
        if not r.stale or (only_gone_owners and r.heartbeat_age_s is not None):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, r.number)
        try:
            for key, value in TrialMeta.attrs(fail_reason=f"stale: {r.reason}").items():
                storage.set_trial_user_attr(trial_id, key, value)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except RuntimeError:  # finished meanwhile (its process was alive after all)
            continue
        done.append(r)
        redo_trial(study, r.number)  # a killed baseline or final is trained again
    return done


__all__ = ["DEFAULT_GRACE_S", "HeartbeatAges", "HeartbeatSource", "RunningTrial",
           "heartbeat_ages", "heartbeat_source", "mark_stale_failed", "owner_name",
           "running_trials"]
