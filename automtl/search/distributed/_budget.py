"""A study's trial budget: the target count of trial slots and how many are used, by state.

A slot is used by every trial except one superseded by its retry (a dead worker's FAIL) and one
stopped by Ctrl-C ("interrupted" FAIL): those hand their slot on. A dead worker's trial that got
no retry (its configuration was already a retry whose worker died too: Optuna retries a trial
once, `max_retry=1`) hands its slot to a new trial, at most `orphan_cap(target)` times per study,
so a study whose every trial kills its worker still ends. See `automtl.search.distributed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from automtl.errors import AutomtlError
from automtl.search.meta import StudyMeta, TrialMeta, count_states, stopped_from_outside

@dataclass(frozen=True)
class Budget:
    """Trial slots of a study: how many are used, by state, against the target."""

    target: int | None
    states: dict[str, int]  # slot-filling trials by state name (superseded FAILs excluded)
    retried: int  # FAILed trials of dead workers whose configuration was re-queued
    orphaned: int = 0  # dead workers' trials without a retry whose slot went to a new trial

    @property
    def used(self) -> int:
        return sum(self.states.values())

    @property
    def finished(self) -> int:
        """Slots whose trial reached a final state (COMPLETE, PRUNED or FAIL)."""
        return sum(self.states.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))

    def next_step(self) -> Literal["ask", "wait", "done"]:
        """ask: create (or pop a retry) now; wait: slots full but trials still running."""
        if self.states.get("WAITING", 0):
            return "ask"
        if self.target is None or self.used < self.target:
            return "ask"
        return "wait" if self.states.get("RUNNING", 0) else "done"


def superseded_trials(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of trials replaced by a retry (each retry names its predecessor last)."""
    out: set[int] = set()
    for t in trials:
        history = t.system_attrs.get("retry_history")
        if history:
            out.add(int(history[-1]))
    return out


def died(trial: FrozenTrial) -> bool:
    """A trial FAILed because its process stopped: by Optuna's heartbeat check (which records no
    reason; every failure of automtl's own objective has a `fail_reason`) or by
    `automtl studies --repair` ("stale: ...")."""
    return stopped_from_outside(trial) and not TrialMeta.read(trial).interrupted


def orphan_cap(target: int | None) -> int:
    """How many dead workers' trials without a retry may hand their slot on: 10 % of the target,
    at least 1 (an occasional retry whose worker died too, not a study where every trial dies)."""
    return 0 if target is None else max(1, target // 10)


def study_target(study: optuna.Study) -> int | None:
    """The study's target trial count (user attribute `target_trials`), None = unlimited.

    Studies made by a plain `automtl search` have none: workers joining them run until their
    own `--n-trials` / `--timeout`.
    """
    return StudyMeta.read(study).target_trials


def interrupted(trial: FrozenTrial) -> bool:
    """A trial stopped by Ctrl-C (FAIL with an "interrupted ..." reason): it frees its slot."""
    return trial.state == TrialState.FAIL and TrialMeta.read(trial).interrupted


def budget(study: optuna.Study, target: int | None = None) -> Budget:
    """Count the study's trial slots now (target: the study's own unless given)."""
    trials = study.get_trials(deepcopy=False)
    target = study_target(study) if target is None else target
    gone = superseded_trials(trials)
    # Counted under the study lock, which is also held around Optuna's stale-trial check and its
    # retry callback (a worker's ask), so a trial is never seen FAILed but not yet retried.
    orphans = sorted(t.number for t in trials if t.number not in gone and died(t))
    freed = set(orphans[:orphan_cap(target)])
    states = count_states(t for t in trials
                          if t.number not in gone and t.number not in freed and not interrupted(t))
    return Budget(target=target, states=states, retried=len(gone), orphaned=len(freed))


def set_target(study: optuna.Study, target: int) -> None:
    """Set the study's target trial count (all workers stop when its slots are used)."""
    if target < 0:
        raise AutomtlError(f"target trial count must be >= 0, got {target}")
    StudyMeta.write(study, target_trials=int(target))


__all__ = ["Budget", "budget", "died", "interrupted", "orphan_cap", "set_target", "study_target",
           "superseded_trials"]
