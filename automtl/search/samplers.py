"""The Optuna samplers a study may use, by name: the one `sampler` vocabulary of study presets,
`automtl search --sampler` and the workers. Adding a sampler is one entry in `SAMPLERS`.

Optuna is imported when a sampler is built, not with this module (the CLI validates names
without it). TPE and GP read at most `history_cap` trials per ask (`HistoryCappedSampler`): their
ask time grows with the study, NSGA-II's and random's do not (benchmarks/sampler_cost.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from automtl.errors import ConfigError

if TYPE_CHECKING:
    import optuna


DEFAULT_HISTORY_CAP = 2000  # trials TPE/GP read per ask (automtl.search.history_cap)


def _startup(n_trials: int) -> int:
    return min(10, max(4, n_trials // 3))


def _tpe(seed: int, n_trials: int, history_cap: int) -> optuna.samplers.BaseSampler:
    import optuna

    from automtl.search.history_cap import HistoryCappedSampler

    # Multivariate TPE with groups models the conditional (per-architecture) subspaces.
    return HistoryCappedSampler(optuna.samplers.TPESampler(
        seed=seed, multivariate=True, group=True, constant_liar=True,
        n_startup_trials=_startup(n_trials)), history_cap)


def _nsga2(seed: int, n_trials: int, history_cap: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, n_trials // 3)))


def _gp(seed: int, n_trials: int, history_cap: int) -> optuna.samplers.BaseSampler:
    import optuna

    from automtl.search.history_cap import HistoryCappedSampler

    return HistoryCappedSampler(optuna.samplers.GPSampler(
        seed=seed, n_startup_trials=_startup(n_trials)), history_cap)


def _random(seed: int, n_trials: int, history_cap: int) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


# name -> builder(seed, n_trials, history_cap); the order is the order shown in help and errors
SAMPLERS: dict[str, Callable[[int, int, int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe, "nsga2": _nsga2, "gp": _gp, "random": _random,
}


def sampler_names() -> list[str]:
    """The sampler names, in `SAMPLERS` order."""
    return list(SAMPLERS)


def make_sampler(kind: str, seed: int, n_trials: int,
                 history_cap: int = DEFAULT_HISTORY_CAP) -> optuna.samplers.BaseSampler:
    """The Optuna sampler `kind` (see `SAMPLERS`), seeded; TPE/GP read at most `history_cap`
    trials per ask."""
    build = SAMPLERS.get(kind)
    if build is None:
        raise ConfigError(f"--sampler {kind}: unknown sampler; use {', '.join(SAMPLERS)}")
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return build(seed, n_trials, history_cap)


__all__ = ["DEFAULT_HISTORY_CAP", "SAMPLERS", "make_sampler", "sampler_names"]
