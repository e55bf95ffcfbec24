"""Seed re-evaluation of a study's best front configurations (`automtl reeval`, `search
--reeval-top`): retrain each with new seeds and store per-seed metrics beside the study."""

from __future__ import annotations

import optuna

from automtl._typed import from_dict
from automtl.config import TrialConfig
from automtl.errors import AutomtlError
from automtl.search.dbopen import require_automtl_study
from automtl.search.front import FrontRow
from automtl.search.objectives import metric_objectives
from automtl.search.runner import SearchListener
from automtl.search.storage import open_study
from automtl.search.store import Store


def top_front(front: list[FrontRow], k: int) -> list[FrontRow]:
    """The `k` front rows with the highest mean metric objective (a cost objective is left out:
    it is not on the metrics' scale)."""
    def mean(r: FrontRow) -> float:
        vals = [r.values[o] for o in metric_objectives(list(r.values))]
        return sum(vals) / max(len(vals), 1)

    return sorted(front, key=lambda r: -mean(r))[:k]


def reevaluate(storage_url: str, study_name: str, top_k: int, seeds: int, *,
               device: str | None = None, listener: SearchListener | None = None) -> list[FrontRow]:
    """Retrain the `top_k` front configurations with `seeds` new seeds (base seed + 1 .. + S;
    seeds already stored are skipped) and store per-seed val/test metrics; returns the front
    with `reeval` mean/std/n filled in."""
    from automtl.data import load_dataset
    from automtl.train import fit

    if top_k < 1 or seeds < 1:
        raise AutomtlError(f"--reeval-top {top_k} --seeds {seeds}: both must be >= 1")
    listener = listener or SearchListener()
    study = open_study(storage_url, study_name)
    require_automtl_study(study, storage_url)
    none = f"study {study_name!r} has no completed trial to re-evaluate yet"
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        raise AutomtlError(none)  # before automtl's tables or the front are written
    store = Store(storage_url)
    front = store.refresh_front(study)
    if not front:
        raise AutomtlError(none)
    for row in top_front(front, top_k):
        base = from_dict(TrialConfig, row.config, where=f"trial {row.trial_number} config")
        dataset = load_dataset(base.data)
        done = store.reeval_seeds(study_name, row.trial_number)
        for i in range(1, seeds + 1):
            seed = base.train.seed + i
            if seed in done:
                continue
            cfg = from_dict(TrialConfig, dict(row.config, train=dict(row.config["train"],
                                                                       seed=seed)))
            listener.on_trial_start(row.trial_number, i, cfg)
            result = fit(cfg, dataset, device=device)
            store.record_reeval(study_name, row.trial_number, seed, result.val, result.test)
    return store.front(study_name)


__all__ = ["reevaluate", "top_front"]
