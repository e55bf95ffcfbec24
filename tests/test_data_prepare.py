"""Raw Tianchi Ali-CCP -> `prepare` -> `load_dataset`: exact values, noise, OOV, memory, errors."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from automtl.config import DataConfig
from automtl.data import clear_memo, load_dataset
from automtl.data.ali_ccp_parse import DENSE_FIELDS, SEQ_FIELDS, SPARSE_FIELDS
from automtl.data.ali_ccp_raw import prepare_ali_ccp
from automtl.data.columnar import load_columnar
from automtl.errors import DataError

from datagen import write_raw_ali_ccp


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    raw = write_raw_ali_ccp(root / "raw", n_train=400, n_test=150, seed=1)
    report = prepare_ali_ccp(root / "raw", root / "out", max_len=8, val_fraction=0.0,
                             block_bytes=4096)
    clear_memo()
    ds = load_dataset(DataConfig(name="ali-ccp", data_dir=str(root / "out")))
    return raw, report, ds


def _mapping(raw_vals: list[str], compact: np.ndarray) -> dict[str, int]:
    """raw id -> compact id, asserting the mapping is a function and injective."""
    m: dict[str, int] = {}
    for r, c in zip(raw_vals, compact.tolist()):
        assert m.setdefault(r, c) == c, f"raw id {r} maps to {m[r]} and {c}"
    assert len(set(m.values())) == len(m), "two raw ids share a compact id"
    return m


def test_round_trip_exact_values(prepared):
    raw, report, ds = prepared
    tr, te = ds.splits["train"], ds.splits["test"]
    assert len(tr) == len(raw.rows["train"]) == 400 - raw.noise["train"]
    assert len(te) == len(raw.rows["test"]) and len(ds.splits["val"]) == 0
    assert report.noise_rows_dropped == raw.noise and raw.noise["train"] > 0
    assert ds.meta["noise_rows_dropped"] == raw.noise
    assert report.rows_without_common == {"train": 0, "test": 0}
    for split, s in (("train", tr), ("test", te)):
        rows = raw.rows[split]
        exp_labels = np.array([[r.click, r.click * r.buy] for r in rows], dtype=np.float32)
        assert np.array_equal(s.labels, exp_labels)
    names = [f.name for f in ds.sparse_features]
    assert names == list(SPARSE_FIELDS)
    for j, f in enumerate(SPARSE_FIELDS):
        train_map = _mapping([r.ids[f] for r in raw.rows["train"]], tr.sparse[:, j])
        assert min(train_map.values()) >= 1
        assert ds.sparse_features[j].vocab_size == len(train_map) + 1
        exp_test = [train_map.get(r.ids[f], 0) for r in raw.rows["test"]]
        assert te.sparse[:, j].tolist() == exp_test
    assert (te.sparse[:, names.index("205")] == 0).any()  # new test items are OOV
    assert (te.sparse[:, names.index("101")] == 0).any()  # new test users are OOV
    for q, f in enumerate(SEQ_FIELDS):
        spec = next(x for x in ds.sequence_features if x.name == f)
        assert spec.max_len == 8
        flat_raw = [i for r in raw.rows["train"] for i in r.seqs[f]]
        seqs = tr.sequences[f]
        flat_c = np.concatenate([seqs[i, : len(r.seqs[f])]
                                 for i, r in enumerate(raw.rows["train"])])
        assert (seqs > 0).sum() == len(flat_raw)  # nothing lost, padding only after the ids
        m = _mapping(flat_raw, flat_c)
        for i, r in enumerate(raw.rows["test"]):  # unseen ids are skipped, order kept
            exp = [m[x] for x in r.seqs[f] if x in m]
            got = te.sequences[f][i]
            assert got[: len(exp)].tolist() == exp and not got[len(exp):].any()
        d = DENSE_FIELDS.index(f"D{f}")
        exp_mean = [np.mean(r.seq_values[f]) for r in raw.rows["train"]]
        assert np.allclose(tr.dense[:, d], exp_mean, atol=1e-6)
    for f in ("508", "509", "702", "853"):
        d = DENSE_FIELDS.index(f"D{f}")
        assert np.allclose(tr.dense[:, d], [r.values[f] for r in raw.rows["train"]], atol=1e-6)


def test_val_is_seeded_share_of_train(tmp_path):
    write_raw_ali_ccp(tmp_path / "raw", n_train=600, n_test=50, seed=2)
    a = prepare_ali_ccp(tmp_path / "raw", tmp_path / "a", val_fraction=0.25, seed=3)
    b = prepare_ali_ccp(tmp_path / "raw", tmp_path / "b", val_fraction=0.25, seed=3)
    assert a.rows == b.rows
    assert a.rows["train"] + a.rows["val"] == 600 - 24
    assert 0.15 < a.rows["val"] / (a.rows["train"] + a.rows["val"]) < 0.35
    for col in ("sparse", "labels", "seq0"):
        assert (tmp_path / "a/val" / f"{col}.bin").read_bytes() == \
            (tmp_path / "b/val" / f"{col}.bin").read_bytes()


def _peak(raw: Path, out: Path) -> int:
    tracemalloc.start()
    prepare_ali_ccp(raw, out, block_bytes=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_prepare_memory_does_not_grow_with_file(tmp_path):
    small = write_raw_ali_ccp(tmp_path / "small", n_train=50_000, n_test=500, n_users=500,
                              keep_rows=False).folder
    big = tmp_path / "big"  # same users, 4x the samples (200k skeleton lines)
    big.mkdir()
    for name in ("common_features_train.csv", "common_features_test.csv",
                 "sample_skeleton_test.csv"):
        (big / name).write_bytes((small / name).read_bytes())
    (big / "sample_skeleton_train.csv").write_bytes(
        (small / "sample_skeleton_train.csv").read_bytes() * 4)
    p_small = _peak(small, tmp_path / "o1")
    p_big = _peak(big, tmp_path / "o2")
    rows = load_columnar(tmp_path / "o2").splits
    assert len(rows["train"]) + len(rows["val"]) == 4 * 48_000
    assert p_big < 1.3 * p_small + (1 << 20)  # 4x the lines, about the same peak
    assert p_big < 64 << 20


@pytest.mark.parametrize("defect, match", [
    ("separator", r"sample_skeleton_train.csv: line 3: feature_num is 10 but feature_list has 1"),
    ("entry", r"sample_skeleton_train.csv: line 3: feature entry .* is not field"),
    ("columns", r"sample_skeleton_train.csv: line 3: expected sample_id,click,buy"),
    ("label", r"sample_skeleton_train.csv: line 3: click='7'"),
    ("truncated", r"common_features_train.csv: line \d+: feature_num is \d+ but"),
    ("missing", r"common_features_test.csv: raw Ali-CCP file not found"),
    # a dense value was zeroed (NaN) or clipped to 3.4e38 (inf, 1e39) silently
    ("value nan", r"sample_skeleton_train.csv: line 3: feature value 'nan' is not a finite"),
    ("value inf", r"sample_skeleton_train.csv: line 3: feature value 'inf' is not a finite"),
    ("value 1e39", r"sample_skeleton_train.csv: line 3: feature value '1e39' is not a finite"),
    # still compressed: pyarrow's invalid-row hook printed a traceback while failing
    ("gzip", r"common_features_test.csv: is a gzip archive, not the extracted CSV"),
])
def test_broken_raw_files(tmp_path, defect, match):
    raw = write_raw_ali_ccp(tmp_path / "raw", n_train=20, n_test=10, n_users=6).folder
    sk = raw / "sample_skeleton_train.csv"
    lines = sk.read_bytes().split(b"\n")
    if defect == "separator":
        lines[2] = lines[2].replace(b"\x01", b";")
    elif defect == "entry":
        lines[2] = lines[2].replace(b"\x03", b":", 1)
    elif defect == "columns":
        lines[2] = b"17,1,0"
    elif defect == "label":
        lines[2] = b"17,7" + lines[2][lines[2].index(b",", 3):]
    elif defect == "truncated":
        cf = raw / "common_features_train.csv"
        data = cf.read_bytes()
        cf.write_bytes(data[: len(data) - 40])
    elif defect == "missing":
        (raw / "common_features_test.csv").unlink()
    elif defect.startswith("value "):
        lines[2] = lines[2][:lines[2].rindex(b"\x03") + 1] + defect[6:].encode()
    elif defect == "gzip":
        cf = raw / "common_features_test.csv"
        cf.write_bytes(gzip.compress(cf.read_bytes()))
    sk.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=match):
        prepare_ali_ccp(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # made by the call: removed with its scratch files


def test_text_feature_ids_and_header_and_crlf_are_accepted(tmp_path):
    """Raw files written by other tools: a header line, CRLF endings, non-numeric feature ids."""
    raw = write_raw_ali_ccp(tmp_path / "raw", n_train=60, n_test=20, seed=5)
    for split in ("train", "test"):
        sk = raw.folder / f"sample_skeleton_{split}.csv"
        body = sk.read_bytes().replace(b"205\x02", b"205\x02item")  # 205 ids become text
        sk.write_bytes(b"sample_id,click,buy,md5,feature_num,feature_list\r\n"
                       + body.replace(b"\n", b"\r\n"))
    report = prepare_ali_ccp(raw.folder, tmp_path / "out", val_fraction=0.0)
    ds = load_columnar(tmp_path / "out")
    assert report.rows["train"] == len(raw.rows["train"])
    j = list(SPARSE_FIELDS).index("205")
    m = _mapping([r.ids["205"] for r in raw.rows["train"]], ds.splits["train"].sparse[:, j])
    assert len(m) == ds.sparse_features[j].vocab_size - 1
    assert np.array_equal(ds.splits["train"].labels[:, 0],
                          [r.click for r in raw.rows["train"]])


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_failed_prepare_leaves_the_data_set_prepared_before(tmp_path):
    """Re-preparing into a folder holding a data set: it was written in place, so a broken row
    found mid-stream destroyed the data set prepared before (and a search reading its
    memory-mapped columns read truncated files). Now the new one is built beside it and takes
    its place only when finished: a failure leaves every byte as it was, a success replaces it
    while a reader's open mapping of the old columns still reads the old values, and nothing
    is left beside the folder either way."""
    raw = write_raw_ali_ccp(tmp_path / "raw", n_train=40, n_test=10, n_users=6).folder
    out = tmp_path / "out"
    prepare_ali_ccp(raw, out, val_fraction=0.25, seed=1)
    before = _tree(out)
    assert "index.json" in before
    old_labels = np.memmap(out / "train" / "labels.bin", dtype=np.uint8, mode="r")
    old_bytes = bytes(old_labels)

    sk = raw / "sample_skeleton_train.csv"
    good = sk.read_bytes()
    lines = good.split(b"\n")
    lines[30] = b"17,7" + lines[30][lines[30].index(b",", 3):]  # late in the file: mid-stream
    sk.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match="click='7'"):
        prepare_ali_ccp(raw, out, val_fraction=0.25, seed=2)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]

    sk.write_bytes(good)
    report = prepare_ali_ccp(raw, out, val_fraction=0.5, seed=2)
    assert report.out == out and _tree(out) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]
    assert bytes(old_labels) == old_bytes  # the old inode lives on for its readers


def test_an_out_folder_with_other_files_is_refused_before_any_write(tmp_path):
    raw = write_raw_ali_ccp(tmp_path / "raw", n_train=20, n_test=10, n_users=6).folder
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"--out .*mine: the folder holds files that are not a "
                                        r"prepared data set \(notes.txt\); pass a new or empty"):
        prepare_ali_ccp(raw, out)
    assert _tree(out) == {"notes.txt": b"keep me"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "raw"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        prepare_ali_ccp(raw, tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_ali_ccp(raw, empty).rows["train"] > 0


def test_prepare_into_the_folder_the_shell_is_in(tmp_path, monkeypatch):
    """`--out .`: the swap renamed "." ("Device or resource busy" traceback, a partial folder
    left inside); now the folder itself stays and its entries are replaced, first and again."""
    raw = write_raw_ali_ccp(tmp_path / "raw", n_train=40, n_test=10, n_users=6).folder
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    prepare_ali_ccp(raw, ".", val_fraction=0.25, seed=1)
    first = _tree(here)
    assert "index.json" in first
    report = prepare_ali_ccp(raw, ".", val_fraction=0.5, seed=2)
    assert report.out == here and Path.cwd() == here
    assert "index.json" in _tree(here) and _tree(here) != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here", "raw"]
    assert load_columnar(here).splits["val"].labels.shape[0] > 0
