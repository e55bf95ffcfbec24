"""benchmarks/paired_auc.py (weighted AUC, paired bootstrap) and search_value.py --preds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from conftest import load_benchmark


def _labels(rng: np.random.Generator, n: int) -> np.ndarray:
    click = rng.random(n) < 0.4
    buy = click & (rng.random(n) < 0.5)
    return np.column_stack([click, buy]).astype(np.float32)


def test_weighted_auc_is_the_auc_of_the_resampled_rows():
    """Row counts as weights give sklearn's AUC of the explicitly resampled rows, ties included,
    for all three tasks (cvr over the resample's clicked rows)."""
    pa = load_benchmark("paired_auc")
    rng = np.random.default_rng(3)
    y = _labels(rng, 500)
    scores = {k: np.round(rng.normal(size=500) + y[:, 0] + y[:, 1], 1)  # rounded: many ties
              for k in ("ctr", "cvr", "ctcvr")}
    arm = pa._Arm(scores, y)
    for idx in (np.arange(500), rng.integers(0, 500, 500)):
        w = np.bincount(idx, minlength=500).astype(np.float64)
        yy, c = y[idx], y[idx, 0] > 0.5
        want = [roc_auc_score(yy[:, 0], scores["ctr"][idx]),
                roc_auc_score(yy[c, 1], scores["cvr"][idx][c]),
                roc_auc_score(yy[:, 1], scores["ctcvr"][idx])]
        assert arm.aucs(w) == pytest.approx(want, abs=1e-12)


def test_paired_intervals_and_dominance(tmp_path: Path):
    """An arm against itself differs by exactly 0 in every resample; the true scores beat pure
    noise with an interval above 0 and dominate it in (nearly) every resample."""
    pa = load_benchmark("paired_auc")
    rng = np.random.default_rng(0)
    n = 2000
    truth = rng.normal(size=(n, 2))
    y = np.column_stack([rng.random(n) < 1 / (1 + np.exp(-2 * truth[:, 0])),
                         np.zeros(n)]).astype(np.float32)
    y[:, 1] = (y[:, 0] > 0.5) & (rng.random(n) < 1 / (1 + np.exp(-2 * truth[:, 1])))
    np.savez(tmp_path / "labels.npz", labels=y)
    pa.save_scores(tmp_path, "good", truth[:, 0], truth[:, 0] + truth[:, 1], truth[:, 1])
    pa.save_scores(tmp_path, "noise", *rng.normal(size=(3, n)))
    res = pa.paired(tmp_path, ["good"], ["noise", "good"], boot=50)
    assert res["diff"]["good"]["good"] == {t: [0.0, 0.0, 0.0] for t in pa.TASKS}
    assert res["best_baseline"] == {t: "good" for t in pa.TASKS}
    low = res["diff"]["good"]["noise"]
    assert all(low[t][1] > 0.05 for t in pa.TASKS), low  # lower 2.5% bound well above 0
    assert res["dominated_share"] == {"noise": 1.0, "good": 1.0}
    assert res["dominated_on_test"] == {"noise": True, "good": True}
    # additive_lr.py's file (p_ctr / p_cvr / p_ctcvr) pairs under its own name
    np.savez(tmp_path / "lr.npz", p_ctr=truth[:, 0], p_cvr=truth[:, 1],
             p_ctcvr=truth[:, 0] + truth[:, 1])
    assert pa.paired(tmp_path, ["good"], ["lr"], boot=5)["diff"]["good"]["lr"] == \
        {t: [0.0, 0.0, 0.0] for t in pa.TASKS}
    with pytest.raises(SystemExit, match="no scores for missing"):
        pa.paired(tmp_path, ["missing"], None, boot=5)


@pytest.mark.timeout(600)
def test_search_value_preds_are_the_stored_models(tmp_path: Path):
    """search_value --preds on a tiny default set: every completed trial's scores (read back
    from its checkpoint) give the AUCs the study stored, the MMoE example trained alone with the
    same seed scores like the search's trial 0 (the baseline), and the folder pairs."""
    import torch

    sv = load_benchmark("search_value")
    threads = torch.get_num_threads()
    out = tmp_path / "v.json"
    try:
        sv.main(["--rows", "2000", "--datasets", "default", "--arms", "examples,search",
                 "--trials", "3", "--seed", "2", "--data-seed", "1",
                 "--preds", str(tmp_path / "p"), "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    arms = json.loads(out.read_text())["results"]["default"]["arms"]
    folder = tmp_path / "p" / "default-2000-d1-s2"
    front = next(a for a in arms if a["arm"] == "front: knee")
    assert front["preds_check"] and all(v < 1e-9 for v in front["preds_check"].values())
    assert all(a["preds_check"] < 1e-9 for a in arms if a["arm"].endswith("(alone)"))
    assert {f"trial_{k}" for k in front["preds_check"]} | {"example_mmoe", "labels"} <= \
        {p.stem for p in folder.glob("*.npz")}
    mmoe, trial0 = np.load(folder / "example_mmoe.npz"), np.load(folder / "trial_0.npz")
    assert all(np.array_equal(mmoe[k], trial0[k]) for k in ("ctr", "cvr", "ctcvr"))
    assert len(np.load(folder / "labels.npz")["labels"]) == 200  # the 10% test split
    res = load_benchmark("paired_auc").paired(
        folder, [f"trial_{k}" for k in front["front_trials"]], ["example_mmoe", "example_esmm"], 20)
    assert set(res["dominated_share"]) == {"example_mmoe", "example_esmm"}
