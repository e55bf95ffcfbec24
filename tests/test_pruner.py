"""Pareto-aware pruning decisions on constructed metric histories (pure and through SQLite)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest

from automtl.search.pruner import (
    EpochRecorder,
    ParetoPruner,
    decide,
    is_rung,
    rung_point,
    nondominated_ranks,
)
from automtl.search.storage import make_storage
from automtl.search.store import Store
from automtl.search.study_config import PrunerConfig
from automtl.train import EpochRecord

optuna.logging.set_verbosity(optuna.logging.WARNING)

CFG = PrunerConfig(kind="pareto", min_epoch=1, warmup_trials=4, reduction_factor=2.0)

# Five peers: three on the front (trade-offs), two dominated.
PEERS = [[0.70, 0.60], [0.65, 0.66], [0.60, 0.70], [0.62, 0.58], [0.55, 0.55]]


def test_nondominated_ranks():
    pts = np.array([[1, 1], [2, 0], [0, 2], [0.5, 0.5], [0, 0], [np.nan, 5]])
    assert nondominated_ranks(pts).tolist() == [0, 0, 0, 1, 2, 3]
    # identical points share a rank
    assert nondominated_ranks(np.array([[1, 1], [1, 1], [0, 0]])).tolist() == [0, 0, 1]


def test_dominated_trial_is_pruned():
    d = decide([0.50, 0.50], PEERS, epoch=1, cfg=CFG)  # dominated by every peer
    assert d.prune and d.n_at_rung == 6 and d.keep == 3 and d.rank == 4
    assert "epoch 1" in d.reason and "Pareto rank 4" in d.reason


def test_non_dominated_trial_is_kept_even_when_worse_on_one_task():
    d = decide([0.80, 0.40], PEERS, epoch=1, cfg=CFG)  # best CTR, worst CVR: on the front
    assert not d.prune and d.rank == 1


def test_second_rank_kept_or_pruned_by_the_reduction_factor():
    own = [0.63, 0.59]  # dominated only by [0.70, 0.60] and [0.65, 0.66]
    assert decide(own, PEERS, 1, CFG).rank == 2
    assert decide(own, PEERS, 1, replace(CFG, reduction_factor=2.0)).prune  # 3 better >= keep 3
    assert not decide(own, PEERS, 1, replace(CFG, reduction_factor=1.2)).prune  # keep 5


def test_warm_up_and_min_epoch_are_respected():
    worst = [0.1, 0.1]
    assert not decide(worst, PEERS[:3], 1, CFG).prune  # 3 peers < warmup 4
    assert "warm-up" in decide(worst, PEERS[:3], 1, CFG).reason
    assert decide(worst, PEERS[:4], 1, CFG).prune
    late = replace(CFG, min_epoch=2)
    assert not decide(worst, PEERS, 1, late).prune
    assert decide(worst, PEERS, 2, late).prune
    assert not decide(worst, PEERS, 1, replace(CFG, kind="none")).prune


def test_geometric_rungs():
    geo = replace(CFG, rungs="geometric", min_epoch=1, reduction_factor=3.0)
    assert [e for e in range(1, 12) if is_rung(e, geo)] == [1, 3, 9]
    assert not decide([0.1, 0.1], PEERS, 2, geo).prune  # epoch 2 is not a rung


def _record(val: dict[str, float]) -> EpochRecord:
    return EpochRecord(epoch=1, val=val, train_loss=0.5, samples_per_s=1000.0, seconds=0.1)


def test_pruner_reads_the_metrics_table_and_marks_the_trial(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(storage=make_storage(url), study_name="s",
                                directions=["maximize", "maximize"])
    store = Store(url)
    # constructed histories of finished trials 0..4 at epoch 1 (the table, not memory)
    for number, (ctr, cvr) in enumerate(PEERS, start=100):  # numbers the live trials never get
        store.record_epoch("s", number, 1, {"ctr_auc": ctr, "cvr_auc": cvr, "mean_auc": 0.0})
        store.record_epoch("s", number, 2, {"ctr_auc": ctr + 0.01, "cvr_auc": cvr + 0.01})
    store.record_epoch("other-study", 0, 1, {"ctr_auc": 0.99, "cvr_auc": 0.99})  # ignored

    good = study.ask()
    rec = EpochRecorder(store, "s", good.number)
    pruner = ParetoPruner(store, good, ["ctr_auc", "cvr_auc"], CFG)
    record = _record({"ctr_auc": 0.75, "cvr_auc": 0.75})
    rec.on_epoch_end(1, record)
    pruner.on_epoch_end(1, record)  # dominates everything: kept
    assert store.epoch_history("s")[good.number][0]["train_loss"] == 0.5

    bad = study.ask()
    pruner = ParetoPruner(store, bad, ["ctr_auc", "cvr_auc"], CFG)
    record = _record({"ctr_auc": 0.50, "cvr_auc": 0.50})
    EpochRecorder(store, "s", bad.number).on_epoch_end(1, record)
    with pytest.raises(optuna.TrialPruned, match="Pareto rank"):
        pruner.on_epoch_end(1, record)
    study.tell(bad, state=optuna.trial.TrialState.PRUNED)
    frozen = study.trials[bad.number]
    assert frozen.state == optuna.trial.TrialState.PRUNED
    assert frozen.user_attrs["pruned_rung"] == 1
    assert "Pareto rank" in frozen.user_attrs["prune_reason"]

    # the last epoch is never pruned: its training is already paid for
    last = study.ask()
    EpochRecorder(store, "s", last.number).on_epoch_end(1, record)
    ParetoPruner(store, last, ["ctr_auc", "cvr_auc"], CFG, max_epoch=1).on_epoch_end(1, record)
    with pytest.raises(optuna.TrialPruned):
        ParetoPruner(store, last, ["ctr_auc", "cvr_auc"], CFG, max_epoch=2).on_epoch_end(1, record)


def test_rung_point_epoch_or_best_so_far():
    recs = [{"ctr_auc": 0.70, "cvr_auc": 0.60, "mean_auc": 0.65},
            {"ctr_auc": 0.72, "cvr_auc": 0.62, "mean_auc": 0.67},
            {"ctr_auc": 0.66, "cvr_auc": 0.58, "mean_auc": 0.62}]
    names = ["ctr_auc", "cvr_auc"]
    assert rung_point(recs, names) == [0.66, 0.58]  # default: the rung epoch's values
    assert rung_point(recs, names, "best") == [0.72, 0.62]  # the epoch early stopping keeps
    # a tie keeps the first epoch; a non-finite mean is never the best; all non-finite: last
    tie = [dict(recs[0]), dict(recs[1], mean_auc=0.65)]
    assert rung_point(tie, names, "best") == [0.70, 0.60]
    nan = [dict(recs[0], mean_auc=float("nan")), dict(recs[1], mean_auc=float("nan"))]
    assert rung_point(nan, names, "best") == [0.72, 0.62]
    assert rung_point([dict(recs[0], mean_auc=float("nan")), recs[2]], names, "best") == \
        [0.66, 0.58]


@pytest.mark.parametrize("score,pruned", [("epoch", False), ("best", True)])
def test_best_so_far_ranks_peers_by_the_epoch_they_would_return(tmp_path: Path, score: str,
                                                                   pruned: bool):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(storage=make_storage(url), study_name="s",
                                directions=["maximize", "maximize"])
    store = Store(url)
    # four peers peaked at epoch 1 and overfit at epoch 2: their results are the epoch-1 values
    for number in range(100, 104):
        store.record_epoch("s", number, 1, {"ctr_auc": 0.80, "cvr_auc": 0.80, "mean_auc": 0.80})
        store.record_epoch("s", number, 2, {"ctr_auc": 0.55, "cvr_auc": 0.55, "mean_auc": 0.55})
    trial = study.ask()
    cfg = replace(CFG, min_epoch=2, score=score)  # warm-up 4, keep the best half
    pruner = ParetoPruner(store, trial, ["ctr_auc", "cvr_auc"], cfg, max_epoch=3)
    for epoch, v in ((1, 0.60), (2, 0.65)):  # still improving, below the peers' best
        record = EpochRecord(epoch=epoch, val={"ctr_auc": v, "cvr_auc": v, "mean_auc": v},
                             train_loss=0.5, samples_per_s=1000.0, seconds=0.1)
        EpochRecorder(store, "s", trial.number).on_epoch_end(epoch, record)
        if epoch == 2 and pruned:
            with pytest.raises(optuna.TrialPruned, match="rank 2"):
                pruner.on_epoch_end(epoch, record)
        else:
            pruner.on_epoch_end(epoch, record)


def test_pruner_score_is_validated_in_presets():
    from automtl._typed import from_dict
    from automtl.errors import ConfigError

    assert from_dict(PrunerConfig, {"score": "epoch"}).score == "epoch"
    assert from_dict(PrunerConfig, {}).score == "best"
    with pytest.raises(ConfigError, match="score"):
        from_dict(PrunerConfig, {"score": "mean"})


def _epoch(store: Store, trial: optuna.Trial, pruner: ParetoPruner, epoch: int, v: float) -> None:
    record = EpochRecord(epoch=epoch, val={"ctr_auc": v, "cvr_auc": v, "mean_auc": v},
                         train_loss=0.5, samples_per_s=1000.0, seconds=0.1)
    EpochRecorder(store, "s", trial.number).on_epoch_end(epoch, record)
    pruner.on_epoch_end(epoch, record)


def test_default_pruner_keeps_an_early_peak_and_decides_after_three_peers(tmp_path: Path):
    """The shipped default (score best, warm-up 3, eta 3), through the metrics table: a trial
    whose epoch 1 dominates its peers but that overfits at epoch 2 keeps its front point (the
    old default, score epoch with warm-up 5, prunes it: RESULTS.md issue 15, bound 4); a trial
    dominated at its best epoch is pruned once 3 peers reached the rung (warm-up 5 waits)."""
    default = PrunerConfig()
    assert (default.kind, default.warmup_trials, default.reduction_factor, default.rungs,
            default.score) == ("pareto", 3, 3.0, "every", "best")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(storage=make_storage(url), study_name="s",
                                directions=["maximize", "maximize"])
    store = Store(url)
    for number in range(100, 105):  # five peers improving steadily to 0.72
        for epoch, v in ((1, 0.70), (2, 0.72)):
            store.record_epoch("s", number, epoch, {"ctr_auc": v, "cvr_auc": v, "mean_auc": v})
    old = PrunerConfig(warmup_trials=5, score="epoch")
    names = ["ctr_auc", "cvr_auc"]

    peaked = study.ask()
    pruner = ParetoPruner(store, peaked, names, default, max_epoch=4)
    _epoch(store, peaked, pruner, 1, 0.80)
    _epoch(store, peaked, pruner, 2, 0.60)  # its point is still epoch 1's 0.80: kept
    again = study.ask()
    pruner = ParetoPruner(store, again, names, old, max_epoch=4)
    _epoch(store, again, pruner, 1, 0.80)
    with pytest.raises(optuna.TrialPruned, match="epoch 2: Pareto rank 2"):
        _epoch(store, again, pruner, 2, 0.60)

    # a fresh study: 3 peers at the rung are enough for the default, not for warm-up 5
    study = optuna.create_study(storage=make_storage(url), study_name="t",
                                directions=["maximize", "maximize"])
    for number in range(100, 103):
        store.record_epoch("t", number, 1, {"ctr_auc": 0.70, "cvr_auc": 0.70, "mean_auc": 0.70})
    for cfg, pruned in ((default, True), (old, False)):
        trial = study.ask()
        record = EpochRecord(epoch=1, val={"ctr_auc": 0.6, "cvr_auc": 0.6, "mean_auc": 0.6},
                             train_loss=0.5, samples_per_s=1000.0, seconds=0.1)
        pruner = ParetoPruner(store, trial, names, cfg, max_epoch=4)
        if pruned:
            with pytest.raises(optuna.TrialPruned, match="3 of 4 trials"):
                pruner.on_epoch_end(1, record)
        else:
            pruner.on_epoch_end(1, record)  # warm-up: 3 of 5 other trials


def test_shipped_presets_use_the_default_pruner():
    from automtl.search.study_config import list_presets, study_preset

    presets = list_presets()
    assert "synthetic" in presets and "ali-ccp" in presets
    for name in presets:
        assert study_preset(name).pruner == PrunerConfig(), name
