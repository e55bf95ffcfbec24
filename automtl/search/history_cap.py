"""A cap on the history a sampler reads, so the cost of an `ask` stops growing with the study.

Multi-objective TPE reads every finished trial at every ask (non-dominated sort, one Parzen
estimator per parameter group over all of them): measured in `benchmarks/sampler_cost.py`, its
ask time grows linearly with the study. `HistoryCappedSampler` hands the wrapped sampler a view
of the study that holds at most `cap` trials:

- every RUNNING trial (TPE's constant liar needs them; they are few, and may exceed the cap);
- the `cap // 2` best COMPLETE trials by non-dominated rank (ties: most recent first), so the
  "good" side of TPE's split is drawn from the best of the whole history;
- the most recent other finished trials (COMPLETE or PRUNED) up to `cap`, so the "bad" side
  follows the region the search explores now.

Under `cap` trials the view is the whole study, so a study that never reaches the cap samples
exactly as the plain sampler would. Optuna's samplers read trials through `Study._get_trials`
(no public hook exists for this), which is the one method the view overrides.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import FrozenTrial, TrialState

from automtl.search.samplers import DEFAULT_HISTORY_CAP  # defined with the samplers that use it


def _rank(trials: Sequence[FrozenTrial], directions: Sequence[Any], n_below: int) -> np.ndarray:
    """Non-dominated rank (0 = front) of COMPLETE trials; exact for the best `n_below`."""
    signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0
                      for d in directions])
    loss = np.array([t.values for t in trials], dtype=float) * signs
    # Optuna's own sort (what its samplers use), with its early stop after n_below points.
    return _fast_non_domination_rank(loss, n_below=n_below)


def select_history(trials: list[FrozenTrial], cap: int,
                   directions: Sequence[Any]) -> list[FrozenTrial]:
    """At most `cap` of `trials` (see the module docstring), in their original order."""
    if len(trials) <= cap:
        return trials
    keep = {t.number for t in trials if t.state == TrialState.RUNNING}
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    elite = max(0, cap // 2 - len(keep))
    if complete and elite:
        rank = _rank(complete, directions, elite)
        order = sorted(range(len(complete)), key=lambda i: (rank[i], -complete[i].number))
        keep.update(complete[i].number for i in order[:elite])
    for t in sorted(trials, key=lambda t: -t.number):
        if len(keep) >= cap:
            break
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            keep.add(t.number)
    return [t for t in trials if t.number in keep]


class _CappedStudyView:
    """The study as the wrapped sampler sees it while it samples trial `number`: everything
    delegated but the trial list, which is selected once per sampled trial (a sampler reads it
    dozens of times per ask: once per parameter group and filter)."""

    def __init__(self, study: optuna.Study, cap: int, number: int,
                 memo: dict[Any, list[FrozenTrial]]) -> None:
        self._study = study
        self._cap = cap
        self._number = number
        self._memo = memo

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        key = (self._number, None if states is None else tuple(states), use_cache)
        if key not in self._memo:
            if not any(k[0] == self._number for k in self._memo):
                self._memo.clear()  # a new trial: forget the previous one's lists
            trials = self._study._get_trials(deepcopy=False, states=None, use_cache=use_cache)
            if len(trials) > self._cap:
                kept = {t.number for t in select_history(trials, self._cap,
                                                         self._study.directions)}
                trials = [t for t in trials if t.number in kept]
            if states is not None:
                trials = [t for t in trials if t.state in states]
            self._memo[key] = trials
        trials = self._memo[key]
        return copy.deepcopy(trials) if deepcopy else list(trials)

    def get_trials(self, deepcopy: bool = True,
                   states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class HistoryCappedSampler(optuna.samplers.BaseSampler):
    """`base` reading at most `cap` trials of the study at each ask."""

    def __init__(self, base: optuna.samplers.BaseSampler, cap: int = DEFAULT_HISTORY_CAP) -> None:
        if cap < 2:
            raise ValueError("history cap must be at least 2")
        self.base = base
        self.cap = cap
        self._memo: dict[Any, list[FrozenTrial]] = {}

    def _view(self, study: optuna.Study, trial: FrozenTrial) -> Any:
        return _CappedStudyView(study, self.cap, trial.number, self._memo)

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(self._view(study, trial), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.base.sample_relative(self._view(study, trial), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.base.sample_independent(self._view(study, trial), trial, param_name,
                                            param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(self._view(study, trial), trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.base.after_trial(self._view(study, trial), trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
