"""`automtl data list|info|prepare` through `automtl.cli.main`: output, and bad input -> one
line naming file and row/column, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from automtl.cli import main
from automtl.data import clear_memo

from datagen import break_csv, write_processed, write_raw_ali_ccp

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOMTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOMTL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    clear_memo()
    yield
    clear_memo()


def _run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_list_shows_every_dataset_and_presence(capsys, tmp_path):
    rc, out, _ = _run(capsys, "data", "list", "--data-dir", str(SHARED / "ali-ccp-sample"))
    assert rc == 0
    for name in ("synthetic", "ali-ccp", "aliexpress", "census-income", "408", "74690"):
        assert name in out
    assert "present" in out and "missing" in out


def test_info_synthetic_shows_rates_fields_and_bayes_auc(capsys):
    rc, out, _ = _run(capsys, "data", "info", "synthetic", "-o", "rows=5000", "-o", "n_tasks=3")
    assert rc == 0
    for text in ("4,000", "500", "ctcart rate", "cvr rate", "hist_item_ids", "shares item_id",
                 "user_id (100,001)", "Bayes-optimal AUC", "ctcvr_auc", "load time"):
        assert text in out, text


def test_info_shared_sample(capsys):
    rc, out, _ = _run(capsys, "data", "info", "census-income", "--data-dir",
                      str(SHARED / "census-income-sample"))
    assert rc == 0
    assert "income rate" in out and "never_married rate" in out and "Bayes" not in out


def test_prepare_then_info(capsys, tmp_path):
    write_raw_ali_ccp(tmp_path / "raw", n_train=120, n_test=40)
    rc, out, _ = _run(capsys, "data", "prepare", "ali-ccp", "--raw", str(tmp_path / "raw"),
                      "--out", str(tmp_path / "prep"), "--max-len", "5")
    assert rc == 0 and "lines/s" in out and "noise rows dropped" in out
    rc, out, _ = _run(capsys, "data", "info", "ali-ccp", "--data-dir", str(tmp_path / "prep"))
    assert rc == 0
    assert "109_14 (" in out and "150_14 (" in out and "/ 5)" in out  # sequences, max_len 5


def test_prepare_default_out_uses_automtl_data(capsys, tmp_path, monkeypatch):
    write_raw_ali_ccp(tmp_path / "raw", n_train=50, n_test=20)
    monkeypatch.setenv("AUTOMTL_DATA", str(tmp_path / "data"))
    rc, _, _ = _run(capsys, "data", "prepare", "ali-ccp", "--raw", str(tmp_path / "raw"))
    assert rc == 0 and (tmp_path / "data" / "ali-ccp" / "index.json").is_file()
    rc, out, _ = _run(capsys, "data", "info", "ali-ccp")
    assert rc == 0 and "109_14" in out


def _assert_one_line_error(rc: int, err: str, *parts: str) -> None:
    assert rc == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for p in parts:
        assert p in lines[0], (p, lines[0])


@pytest.mark.parametrize("defect, parts", [
    ("missing_column", ["train.csv", "missing column(s) '205'"]),
    ("extra_column", ["train.csv", "unexpected column(s) 'surprise'"]),
    ("nonbinary_label", ["train.csv", "line 5", "'click'", "must be 0 or 1"]),
    ("nan_id", ["train.csv", "line 5", "'205'", "empty/NaN"]),
    ("nan_text_id", ["train.csv", "line 5", "'205'", "empty/NaN"]),
    ("empty", ["train.csv", "no data rows"]),
    ("truncated", ["train.csv", "line 41", "fields, the header has 33", "truncated"]),
    ("not_utf8", ["train.csv", "not a UTF-8 text CSV"]),
])
def test_bad_processed_files(capsys, tmp_path, defect, parts):
    paths = write_processed(tmp_path / "d", "ali-ccp", {"train": 40, "val": 10, "test": 10})
    break_csv(paths["train"], defect)
    rc, _, err = _run(capsys, "data", "info", "ali-ccp", "--data-dir", str(tmp_path / "d"))
    _assert_one_line_error(rc, err, *parts)


def test_empty_val_split_named(capsys, tmp_path):
    paths = write_processed(tmp_path / "d", "aliexpress", {"train": 30, "val": 5, "test": 5})
    break_csv(paths["val"], "empty")
    rc, _, err = _run(capsys, "data", "info", "aliexpress", "--data-dir", str(tmp_path / "d"))
    _assert_one_line_error(rc, err, "val.csv", "no data rows")


def test_purchase_without_click_is_reported_not_fatal(capsys, tmp_path):
    write_processed(tmp_path / "d", "ali-ccp", {"train": 40, "val": 10, "test": 10}, noise_rows=3)
    rc, out, _ = _run(capsys, "data", "info", "ali-ccp", "--data-dir", str(tmp_path / "d"))
    assert rc == 0 and "dropped purchase-without-click rows" in out and "train 3" in out


def test_raw_folder_passed_to_info_says_prepare_first(capsys, tmp_path):
    raw = write_raw_ali_ccp(tmp_path / "raw", n_train=10, n_test=5).folder
    rc, _, err = _run(capsys, "data", "info", "ali-ccp", "--data-dir", str(raw))
    _assert_one_line_error(rc, err, "raw Tianchi release",
                           f"automtl data prepare ali-ccp --raw {raw}")


def test_broken_raw_separator_via_cli(capsys, tmp_path):
    raw = write_raw_ali_ccp(tmp_path / "raw", n_train=30, n_test=10).folder
    cf = raw / "common_features_test.csv"
    lines = cf.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"\x02", b"|")
    cf.write_bytes(b"\n".join(lines))
    rc, _, err = _run(capsys, "data", "prepare", "ali-ccp", "--raw", str(raw), "--out",
                      str(tmp_path / "o"))
    _assert_one_line_error(rc, err, "common_features_test.csv", "line 4", "separators are broken")


@pytest.mark.parametrize("args, parts", [
    (["data", "info", "ali-ccp"], ["ali-ccp", "408", "automtl data prepare ali-ccp"]),
    (["data", "info", "aliexpress"], ["aliexpress", "74690"]),
    (["data", "info", "nope"], ["unknown dataset 'nope'", "synthetic"]),
    (["data", "info", "synthetic", "-o", "rows"], ["option 'rows'", "KEY=VALUE"]),
    (["data", "info", "synthetic", "-o", "rho=2"], ["rho=2.0", "0 <= rho <= 1"]),
    (["data", "prepare", "aliexpress", "--raw", "."], ["only ali-ccp"]),
    (["data", "prepare", "ali-ccp", "--raw", "/no/such/dir"], ["/no/such/dir", "not found"]),
])
def test_user_errors(capsys, args, parts):
    rc, _, err = _run(capsys, *args)
    _assert_one_line_error(rc, err, *parts)
