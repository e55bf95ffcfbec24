"""The sampler history cap: identical to the plain sampler under the cap, bounded above it."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from automtl.search.history_cap import HistoryCappedSampler, select_history
from automtl.search.samplers import make_sampler

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", -2, 2)
    arch = trial.suggest_categorical("arch", ["a", "b"])
    y = trial.suggest_int("y", 1, 8) if arch == "a" else 3
    return -(x - 1) ** 2 - 0.1 * y, -(x + 1) ** 2 + 0.05 * y


def _params(sampler: optuna.samplers.BaseSampler, n: int) -> list[dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
        study.optimize(_objective, n_trials=n)
    return [t.params for t in study.trials]


def test_under_the_cap_sampling_is_identical_to_plain_tpe() -> None:
    capped = _params(make_sampler("tpe", 7, 30, history_cap=1000), 30)
    plain = _params(make_sampler("tpe", 7, 30, history_cap=10**9).base, 30)  # type: ignore[attr-defined]
    assert capped == plain


def test_select_history_keeps_running_front_and_recent() -> None:
    dirs = [optuna.study.StudyDirection.MAXIMIZE] * 2
    study = optuna.create_study(directions=["maximize", "maximize"])
    # trials 0..99 complete on a line (each dominated by the next) except the best at number 5
    for i in range(100):
        study.add_trial(optuna.trial.create_trial(
            params={}, distributions={}, values=[i * 0.001, i * 0.001]))
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, values=[1.0, 1.0]))
    study.add_trial(optuna.trial.create_trial(params={}, distributions={},
                                              state=TrialState.PRUNED))
    running = study.ask()  # number 102
    trials = study.get_trials(deepcopy=False)
    kept = select_history(trials, 10, dirs)
    numbers = [t.number for t in kept]
    assert len(kept) == 10 and numbers == sorted(numbers)
    assert running.number in numbers and 100 in numbers  # RUNNING and the best trial
    # elite half (best by rank: 100, 99, 98, 97 besides the running one), then most recent
    assert {99, 98, 97, 101} <= set(numbers)
    assert select_history(trials, 500, dirs) is trials


class _Recorder(optuna.samplers.RandomSampler):
    """A sampler that records how many finished trials it is shown at each ask."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.seen: list[int] = []

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        self.seen.append(len(study._get_trials(deepcopy=False, use_cache=True)))
        return super().sample_independent(study, trial, param_name, param_distribution)


def test_the_wrapped_sampler_never_sees_more_than_the_cap() -> None:
    rec = _Recorder()
    _params(HistoryCappedSampler(rec, cap=12), 40)
    assert max(rec.seen) == 12 and rec.seen[0] == 1
