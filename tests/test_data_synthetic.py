"""Synthetic dataset: determinism, cascade, Bayes AUC, rho dial, registry memo."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from automtl.config import DataConfig
from automtl.data import bayes_auc, generate_synthetic, load_dataset
from automtl.errors import DataError


def _all_arrays(ds):
    for name, s in ds.splits.items():
        yield f"{name}.sparse", s.sparse
        yield f"{name}.dense", s.dense
        yield f"{name}.labels", s.labels
        yield f"{name}.truth", s.truth
        for k, v in s.sequences.items():
            yield f"{name}.{k}", v


def test_same_seed_same_arrays_other_seed_differs():
    a = generate_synthetic(rows=5000, seed=3)
    b = generate_synthetic(rows=5000, seed=3)
    c = generate_synthetic(rows=5000, seed=4)
    for (name, x), (_, y) in zip(_all_arrays(a), _all_arrays(b)):
        assert np.array_equal(x, y), name
    assert not np.array_equal(a.splits["train"].sparse, c.splits["train"].sparse)


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_contract_and_cascade(n_tasks):
    ds = generate_synthetic(rows=8000, n_tasks=n_tasks, seed=1)
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [6400, 800, 800]
    assert len(ds.tasks) == n_tasks and ds.tasks[-1].name == "ctcvr"
    for t_prev, t in zip(ds.tasks, ds.tasks[1:]):
        assert t.depends_on == t_prev.name and t.cond_name
    seq = ds.sequence_features
    assert len(seq) >= 2
    for f in seq:
        assert f.shares_with in {g.name for g in ds.sparse_features}
        assert f.vocab_size == next(g.vocab_size for g in ds.features if g.name == f.shares_with)
    for s in ds.splits.values():
        assert s.sparse.dtype == np.int32 and s.labels.dtype == np.float32
        assert s.sparse.shape[1] == len(ds.sparse_features)
        assert s.dense.shape[1] == len(ds.dense_features) and np.isfinite(s.dense).all()
        for j, f in enumerate(ds.sparse_features):
            assert 1 <= s.sparse[:, j].min() and s.sparse[:, j].max() < f.vocab_size
        for f in seq:
            v = s.sequences[f.name]
            assert v.shape == (len(s), f.max_len) and v.max() < f.vocab_size
            lengths = (v > 0).sum(1)
            assert lengths.min() < lengths.max()  # variable length
            # padding only at the end
            assert np.all((v > 0) == (np.arange(f.max_len)[None, :] < lengths[:, None]))
        # cascade: no later step without the earlier one; truth is non-increasing too
        assert np.all(np.diff(s.labels, axis=1) <= 0)
        assert np.all(np.diff(s.truth, axis=1) <= 1e-7)


def test_default_size_has_enough_positives_of_rarest_task():
    ds = generate_synthetic()  # 200k rows
    total = sum(s.labels.sum(0) for s in ds.splits.values())
    assert sum(len(s) for s in ds.splits.values()) == 200_000
    assert total.min() >= 1000
    vocab = [f.vocab_size for f in ds.sparse_features]
    assert max(vocab) > 50_000 and min(vocab) < 100


def test_labels_follow_truth_and_bayes_beats_every_single_field():
    ds = generate_synthetic(rows=40_000, seed=2)
    tr, va = ds.splits["train"], ds.splits["val"]
    # calibration: mean truth ~ label rate
    assert np.allclose(tr.truth.mean(0), tr.labels.mean(0), rtol=0.1)
    bayes = bayes_auc(ds, "val")
    assert set(bayes) == set(ds.metric_names())
    y = va.labels[:, 0]
    single = []
    for j in range(tr.sparse.shape[1]):  # target encoding learnt on train, scored on val
        ids_tr, ids_va = tr.sparse[:, j], va.sparse[:, j]
        size = int(max(ids_tr.max(), ids_va.max())) + 1
        clicks = np.bincount(ids_tr, weights=tr.labels[:, 0], minlength=size)
        counts = np.bincount(ids_tr, minlength=size)
        enc = (clicks + tr.labels[:, 0].mean() * 10) / (counts + 10)
        single.append(roc_auc_score(y, enc[ids_va]))
    for j in range(va.dense.shape[1]):
        a = roc_auc_score(y, va.dense[:, j])
        single.append(max(a, 1 - a))
    for v in va.sequences.values():
        a = roc_auc_score(y, (v > 0).sum(1))
        single.append(max(a, 1 - a))
    assert bayes["ctr_auc"] > max(single) + 0.02


def test_sequence_content_carries_signal():
    ds = generate_synthetic(rows=40_000, seed=5)
    s = ds.splits["train"]
    f = ds.sequence_features[0]
    target = s.sparse[:, [g.name for g in ds.sparse_features].index(f.shares_with)]
    overlap = (s.sequences[f.name] == target[:, None]).sum(1)
    a = roc_auc_score(s.labels[:, 0], overlap)
    assert abs(a - 0.5) > 0.03


def _logit(p):
    return np.log(p) - np.log1p(-p)


def test_rho_raises_task_logit_correlation():
    corr = []
    for rho in (0.0, 0.5, 1.0):
        ds = generate_synthetic(rows=10_000, rho=rho, seed=0)
        t = ds.splits["train"].truth.astype(np.float64)
        corr.append(np.corrcoef(_logit(t[:, 0]), _logit(t[:, 1] / t[:, 0]))[0, 1])
    assert corr[0] < corr[1] < corr[2]
    assert corr[2] > 0.99


def test_ali_ccp_schema_field_names():
    ds = generate_synthetic(rows=2000, schema="ali-ccp")
    names = [f.name for f in ds.features]
    assert names[:2] == ["101", "121"] and "205" in names and "D853" in names
    assert {f.name: f.shares_with for f in ds.sequence_features}["109_14"] == "206"
    assert [t.label for t in ds.tasks] == ["click", "purchase"]


def test_load_dataset_memo_and_bad_options():
    cfg = DataConfig(name="synthetic", options={"rows": 3000, "seed": 9})
    ds = load_dataset(cfg)
    assert load_dataset(DataConfig(name="synthetic", options={"seed": 9, "rows": 3000})) is ds
    with pytest.raises(DataError, match="unknown option.*colour"):
        load_dataset(DataConfig(name="synthetic", options={"colour": 1}))
    with pytest.raises(DataError, match="n_tasks=5"):
        load_dataset(DataConfig(name="synthetic", options={"n_tasks": 5, "rows": 3000}))
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_dataset(DataConfig(name="nope"))


def test_cache_key_follows_generator_version(tmp_path, monkeypatch):
    """A changed generator (new GENERATOR_VERSION) never serves arrays cached by an older one."""
    from automtl.data import datasets

    monkeypatch.setenv("AUTOMTL_CACHE", str(tmp_path))
    monkeypatch.setattr(datasets, "SYNTHETIC_CACHE_ROWS", 100)
    opts = {"rows": 2000, "n_tasks": 2, "rho": 0.5, "seed": 0, "schema": "default"}
    a = datasets._load_synthetic(None, opts)
    assert a.meta["cache"].startswith("written")
    assert datasets._load_synthetic(None, opts).meta["cache"].startswith("hit")
    monkeypatch.setattr(datasets, "GENERATOR_VERSION", datasets.GENERATOR_VERSION + 1)
    b = datasets._load_synthetic(None, opts)
    assert b.meta["cache"].startswith("written")
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("synthetic-")]) == 2
