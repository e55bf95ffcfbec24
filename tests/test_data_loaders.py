"""Processed-CSV loaders: shared real-layout samples, vocab/OOV, cache, location rules."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from automtl.config import DataConfig
from automtl.data import clear_memo, load_dataset
from automtl.errors import DataError

from datagen import write_processed

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOMTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOMTL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    clear_memo()
    yield
    clear_memo()


def _load(name: str, folder: Path | str, **options) -> object:
    return load_dataset(DataConfig(name=name, data_dir=str(folder), options=options))


def _count(path: Path, col: str) -> int:
    with path.open(newline="") as fh:
        return sum(int(float(r[col])) for r in csv.DictReader(fh))


def test_shared_ali_ccp_sample():
    ds = _load("ali-ccp", SHARED / "ali-ccp-sample")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 100, "val": 50, "test": 50}
    kinds = [len(ds.sparse_features), len(ds.dense_features), len(ds.sequence_features)]
    assert kinds == [23, 8, 0]
    assert ds.task_names == ["ctr", "ctcvr"] and ds.tasks[1].cond_name == "cvr"
    assert ds.metric_names() == ["ctr_auc", "ctcvr_auc", "cvr_auc"]
    f = SHARED / "ali-ccp-sample" / "ali_ccp_train_sample.csv"
    tr = ds.splits["train"]
    assert tr.labels[:, 0].sum() == _count(f, "click")
    assert tr.labels[:, 1].sum() == _count(f, "purchase")
    assert tr.sparse.dtype == np.int32 and tr.sparse.min() >= 1  # train ids are all in vocab
    for j, spec in enumerate(ds.sparse_features):
        for s in ds.splits.values():
            assert s.sparse[:, j].max() < spec.vocab_size
    assert np.allclose(tr.dense[0], [0.4734, 0.562, 0.0856, 0.1902, 0.07556, 0, 0, 0])


def test_shared_aliexpress_sample_val_carved_from_train():
    ds = _load("aliexpress", SHARED / "aliexpress-sample", country="us")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 90, "val": 10, "test": 20}
    assert [len(ds.sparse_features), len(ds.dense_features)] == [16, 63]
    assert "search_id" not in {f.name for f in ds.features}
    f = SHARED / "aliexpress-sample" / "aliexpress_train_sample.csv"
    clicks = sum(float(s.labels[:, 0].sum()) for n, s in ds.splits.items() if n != "test")
    assert clicks == _count(f, "click")
    again = _load("aliexpress", SHARED / "aliexpress-sample", country="us", seed=0)
    assert again is ds
    other = _load("aliexpress", SHARED / "aliexpress-sample", country="us", seed=1)
    assert not np.array_equal(other.splits["val"].dense, ds.splits["val"].dense)
    with pytest.raises(DataError, match="country='xx'"):
        _load("aliexpress", SHARED / "aliexpress-sample", country="xx")


def test_shared_census_sample():
    ds = _load("census-income", SHARED / "census-income-sample")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 80, "val": 20, "test": 20}
    assert ds.task_names == ["income", "never_married"]
    assert all(t.depends_on is None for t in ds.tasks)
    names = {f.name for f in ds.features}
    assert "marital status" not in names and "income" not in names and len(names) == 39
    assert {f.name for f in ds.dense_features} >= {"age", "capital gains"}
    f = SHARED / "census-income-sample" / "census_income_train_sample.csv"
    assert ds.splits["train"].labels[:, 0].sum() == _count(f, "income")
    assert ds.splits["train"].labels[:, 1].sum() == _count(f, "marital status")


def test_census_raw_strings_become_binary_labels(tmp_path):
    paths = write_processed(tmp_path / "c", "census-income", {"train": 30, "test": 10})
    for p in paths.values():
        rows = list(csv.reader(p.open(newline="")))
        h = rows[0]
        for r in rows[1:]:
            r[h.index("income")] = " 50000+." if r[h.index("income")] == "1" else " - 50000."
            r[h.index("marital status")] = (" Never married" if r[h.index("marital status")] == "1"
                                            else " Married-civilian spouse present")
            r[h.index("education")] = f" grade {r[h.index('education')]}"  # text ids
        csv.writer(p.open("w", newline="")).writerows(rows)
    ds = _load("census-income", tmp_path / "c")
    y = np.concatenate([ds.splits["train"].labels, ds.splits["val"].labels])
    assert set(np.unique(y)) <= {0.0, 1.0} and y[:, 0].sum() > 0 and y[:, 1].sum() > 0
    edu = [f.name for f in ds.sparse_features].index("education")
    assert ds.splits["train"].sparse[:, edu].min() >= 1


def test_vocab_on_train_only_and_unseen_test_ids_are_oov(tmp_path):
    write_processed(tmp_path / "d", "ali-ccp", {"train": 60, "val": 20, "test": 20}, seed=4)
    test = tmp_path / "d" / "test.csv"
    rows = list(csv.reader(test.open(newline="")))
    col = rows[0].index("205")
    rows[1][col] = "987654"  # an id no train row has
    csv.writer(test.open("w", newline="")).writerows(rows)
    ds = _load("ali-ccp", tmp_path / "d")
    j = [f.name for f in ds.sparse_features].index("205")
    train_raw = [int(r[col]) for r in list(csv.reader((tmp_path / "d/train.csv").open()))[1:]]
    assert ds.sparse_features[j].vocab_size == len(set(train_raw)) + 1
    te = ds.splits["test"].sparse[:, j]
    assert te[0] == 0
    # equal raw ids map to equal compact ids across splits
    raw_test = [int(r[col]) for r in rows[1:]]
    lookup = dict(zip(train_raw, ds.splits["train"].sparse[:, j].tolist()))
    assert te.tolist() == [lookup.get(r, 0) for r in raw_test]


def test_purchase_without_click_rows_are_dropped_and_counted(tmp_path):
    write_processed(tmp_path / "n", "ali-ccp", {"train": 50, "val": 10, "test": 10},
                    noise_rows=7)
    ds = _load("ali-ccp", tmp_path / "n")
    assert len(ds.splits["train"]) == 50
    assert ds.meta["dropped_cascade_noise"] == {"train": 7, "val": 0, "test": 0}
    y = ds.splits["train"].labels
    assert not ((y[:, 1] == 1) & (y[:, 0] == 0)).any()


def test_file_name_patterns(tmp_path):
    write_processed(tmp_path / "p", "ali-ccp", {"train": 40, "val": 10, "test": 10},
                    pattern="ali_ccp_{split}.csv")
    ds = _load("ali-ccp", tmp_path / "p")
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [40, 10, 10]


def test_cache_hit_is_identical_and_keyed_by_content(tmp_path):
    paths = write_processed(tmp_path / "k", "aliexpress", {"train": 80, "test": 20})
    first = _load("aliexpress", tmp_path / "k")
    assert first.meta["cache"].startswith("written")
    clear_memo()
    second = _load("aliexpress", tmp_path / "k")
    assert second.meta["cache"].startswith("hit")
    assert isinstance(second.splits["train"].sparse, np.memmap)
    for s in ("train", "val", "test"):
        a, b = first.splits[s], second.splits[s]
        assert np.array_equal(a.sparse, b.sparse) and np.array_equal(a.dense, b.dense)
        assert np.array_equal(a.labels, b.labels)
    assert [f for f in first.features] == [f for f in second.features]
    rows = paths["train"].read_text().splitlines()
    rows[1] = "12345" + rows[1][rows[1].index(","):]  # same size class, different content
    paths["train"].write_text("\n".join(rows) + "\n")
    clear_memo()
    third = _load("aliexpress", tmp_path / "k")
    assert third.meta["cache"].startswith("written")


def test_location_rules(tmp_path, monkeypatch):
    write_processed(tmp_path / "root" / "ali-ccp", "ali-ccp", {"train": 30, "test": 10})
    write_processed(tmp_path / "root" / "aliexpress-sample", "aliexpress",
                    {"train": 30, "test": 10})
    monkeypatch.setenv("AUTOMTL_DATA", str(tmp_path / "root"))
    assert len(load_dataset(DataConfig(name="ali-ccp")).splits["test"]) == 10
    assert len(load_dataset(DataConfig(name="aliexpress")).splits["test"]) == 10
    home = tmp_path / "home" / ".cache" / "automtl" / "census-income"
    write_processed(home, "census-income", {"train": 30, "val": 5, "test": 5})
    assert len(load_dataset(DataConfig(name="census-income")).splits["val"]) == 5
    # --data-dir wins over the environment
    write_processed(tmp_path / "explicit", "ali-ccp", {"train": 20, "test": 3})
    assert len(_load("ali-ccp", tmp_path / "explicit").splits["test"]) == 3


@pytest.mark.parametrize("name, source", [("ali-ccp", "408"), ("aliexpress", "74690")])
def test_missing_data_message(tmp_path, monkeypatch, name, source):
    monkeypatch.setenv("AUTOMTL_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name=name))
    msg = str(err.value)
    assert "\n" not in msg and source in msg
    assert str(tmp_path / "nowhere" / name) in msg and ".cache/automtl" in msg
    if name == "ali-ccp":
        assert "automtl data prepare ali-ccp --raw" in msg


def test_synthetic_large_is_cached(tmp_path):
    cfg = DataConfig(options={"rows": 100_000, "seed": 1})
    a = load_dataset(cfg)
    clear_memo()
    b = load_dataset(cfg)
    assert b.meta["cache"].startswith("hit")
    assert np.array_equal(a.splits["test"].truth, b.splits["test"].truth)
    assert np.array_equal(a.splits["val"].sequences["hist_item_ids"],
                          b.splits["val"].sequences["hist_item_ids"])


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    write_processed(tmp_path / "k", "ali-ccp", {"train": 30, "val": 5, "test": 5})
    first = _load("ali-ccp", tmp_path / "k")
    folder = Path(first.meta["cache"].split(" ", 1)[1])
    col = folder / "train" / "sparse.bin"
    col.write_bytes(col.read_bytes()[:-8])  # truncated column file
    clear_memo()
    again = _load("ali-ccp", tmp_path / "k")
    assert again.meta["cache"].startswith("written")
    assert np.array_equal(again.splits["train"].sparse, first.splits["train"].sparse)


def test_cache_key_follows_the_reader_version(tmp_path, monkeypatch):
    """A reader that now turns the same files into other arrays (census-income 2: a text label
    among 0/1 numbers is refused; version 1 made every 1 of the column 0) never serves a cache
    the old reader wrote; data sets whose reader did not change keep their cache keys."""
    from automtl.data import datasets
    from automtl.data.cache import cache_key

    paths = write_processed(tmp_path / "c", "census-income", {"train": 30, "val": 5, "test": 5})
    first = _load("census-income", tmp_path / "c")
    assert first.meta["cache"].startswith("written")
    clear_memo()
    assert _load("census-income", tmp_path / "c").meta["cache"].startswith("hit")
    folder = Path(first.meta["cache"].split(" ", 1)[1])
    files = [paths[s] for s in sorted(paths)]  # as the loader lists them
    opts = first.meta["options"]
    v2 = cache_key("census-income", {**opts, "reader_version": 2}, files)
    assert folder.name == f"census-income-{v2}"
    assert folder.name != f"census-income-{cache_key('census-income', opts, files)}"  # version 1's
    monkeypatch.setitem(datasets.READER_VERSIONS, "census-income", 3)
    clear_memo()
    assert _load("census-income", tmp_path / "c").meta["cache"].startswith("written")
    assert len([p for p in (tmp_path / "cache").iterdir() if p.name.startswith("census")]) == 2
    # another data set's key is the one it always had
    ali_paths = write_processed(tmp_path / "a", "aliexpress", {"train": 30, "test": 10})
    ali = _load("aliexpress", tmp_path / "a")
    key = cache_key("aliexpress", ali.meta["options"], [ali_paths[s] for s in sorted(ali_paths)])
    assert ali.meta["cache"] == f"written {tmp_path / 'cache' / f'aliexpress-{key}'}"
