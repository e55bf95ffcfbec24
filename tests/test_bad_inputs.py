"""Input hardening across the CLI: a table of bad inputs, each against a real existing study.

Every case runs a real `automtl` command whose `--storage` is a copy of a real study database
(made once by a 1-trial search). Each must print exactly one line on stderr, exit non-zero,
show no traceback, never print a password, and leave the database byte-identical.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from datagen import break_csv, write_processed

from automtl.cli import main
from automtl.data import clear_memo

SECRET = "hunter2-Pw"
STUDY = "study"

SPACE = """\
name: tiny
params:
  model.arch:
    choices:
      shared_bottom: {model.bottom_dims: {choices: [[8]]}}
      mmoe: {model.n_experts: {int: [2, 3]}, model.expert_dims: {choices: [[8]]}}
  model.embedding_dim: 4
  model.tower_dims: {choices: [[4]]}
"""

PRESET = {
    "name": STUDY,
    "data": {"name": "synthetic", "options": {"rows": 3000, "n_tasks": 2, "seed": 0}},
    "objectives": ["ctr_auc", "cvr_auc"],
    "space": "space.yaml",
    "epochs": 1,
    "n_trials": 1,
    "sampler": "random",
    "pruner": {"kind": "none"},
    "train": {"batch_size": 512, "device": "cpu"},
}


def _yaml(obj: object) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False)


@dataclass
class Case:
    """`make(dir, url)` writes the case's files into `dir` and returns the CLI arguments."""

    id: str
    make: Callable[[Path, str], list[str]]
    expect: tuple[str, ...]  # substrings of the one error line


def _preset(folder: Path, name: str = "preset.yaml", space: str = SPACE, **changes: object) -> Path:
    (folder / "space.yaml").write_text(space)
    doc = {**PRESET, **changes}
    path = folder / name
    path.write_text(_yaml(doc))
    return path


def _search(folder: Path, url: str, preset: Path, *extra: str) -> list[str]:
    return ["search", "--study-config", str(preset), "--storage", url, "--study-name", STUDY,
            "--no-report", *extra]


def _csv_case(defect: Callable[[Path], None]) -> Callable[[Path, str], list[str]]:
    """A search whose data is a processed ali-ccp folder with one defect in train.csv."""

    def make(folder: Path, url: str) -> list[str]:
        paths = write_processed(folder / "data", "ali-ccp", {"train": 40, "val": 10, "test": 10})
        defect(paths["train"])
        preset = _preset(folder, data={"name": "ali-ccp", "data_dir": str(folder / "data")})
        return _search(folder, url, preset)

    return make


def _edit_cell(column: str, value: str, line: int = 5) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        with path.open(newline="") as fh:
            table = list(csv.reader(fh))
        table[line - 1][table[0].index(column)] = value
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows(table)

    return edit


def _semicolons(path: Path) -> None:
    path.write_text(path.read_text().replace(",", ";"))


def _trial_config(folder: Path, model: dict[str, object]) -> list[str]:
    path = folder / "trial.yaml"
    path.write_text(_yaml({"data": PRESET["data"], "model": model, "train": {"epochs": 1}}))
    return ["train", "--config", str(path)]


CASES = [
    # -- data files -------------------------------------------------------------------------
    Case("csv_truncated", _csv_case(lambda p: break_csv(p, "truncated")),
         ("train.csv", "truncated")),
    Case("csv_corrupt_bytes", _csv_case(lambda p: break_csv(p, "not_utf8")),
         ("train.csv", "UTF-8")),
    Case("csv_wrong_delimiter", _csv_case(_semicolons), ("train.csv",)),
    Case("csv_missing_label_column",
         _csv_case(lambda p: break_csv(p, "missing_column", column="purchase")),
         ("train.csv", "purchase")),
    Case("csv_label_outside_0_1", _csv_case(lambda p: break_csv(p, "nonbinary_label")),
         ("train.csv", "click", "0 or 1")),
    Case("csv_nan_dense", _csv_case(_edit_cell("D509", "nan")), ("train.csv", "D509")),
    Case("csv_id_beyond_int64", _csv_case(_edit_cell("205", "99999999999999999999")),
         ("train.csv", "line 5", "205", "64-bit")),
    Case("csv_header_only", _csv_case(lambda p: break_csv(p, "empty")),
         ("train.csv", "no data rows")),
    Case("csv_zero_bytes", _csv_case(lambda p: p.write_bytes(b"")), ("train.csv",)),
    # -- YAML: study presets, search spaces, trial configs --------------------------------------
    Case("yaml_wrong_type",
         lambda d, u: _search(d, u, _preset(d, epochs="three")), ("preset.yaml", "epochs")),
    Case("yaml_syntax_error",
         lambda d, u: _search(d, u, _write(d / "preset.yaml", "name: [study\nepochs: 1\n")),
         ("preset.yaml", "invalid YAML")),
    Case("yaml_unknown_key",
         lambda d, u: _search(d, u, _preset(d, trails=5)), ("preset.yaml", "trails")),
    Case("space_unknown_arch",
         lambda d, u: _search(d, u, _preset(d, space=SPACE.replace("mmoe:", "transformer9:"))),
         ("space.yaml", "transformer9")),
    Case("space_unknown_loss_term",
         lambda d, u: _search(d, u, _preset(d, space=SPACE + "  loss.focal.gamma: 2.0\n")),
         ("space.yaml", "focal")),
    Case("space_negative_expert_count",
         lambda d, u: _search(d, u, _preset(d, space=SPACE.replace("[2, 3]", "[-2, 3]"))),
         ("space.yaml", "n_experts")),
    Case("objectives_name_missing_task",
         lambda d, u: _search(d, u, _preset(d, objectives=["ctr_auc", "ctvr_auc"])),
         ("ctvr_auc", "available")),
    Case("trial_config_negative_experts",
         lambda d, u: _trial_config(d, {"arch": "mmoe", "n_experts": -4}),
         ("trial.yaml", "n_experts")),
    Case("trial_config_unknown_arch",
         lambda d, u: _trial_config(d, {"arch": "transformer9"}), ("trial.yaml", "arch")),
    Case("unknown_dataset",
         lambda d, u: ["search", "--dataset", "nope", "--storage", u], ("nope",)),
    Case("negative_trial_count",
         lambda d, u: _search(d, u, _preset(d), "--n-trials", "-3"), ("--n-trials",)),
    # -- storage --------------------------------------------------------------------------------
    Case("malformed_storage_url",
         lambda d, u: _search(d, "notadb:/x", _preset(d)), ("notadb", "URL")),
    Case("unreachable_storage_with_password",
         lambda d, u: _search(d, f"postgresql+psycopg://automtl:{SECRET}@127.0.0.1:1/db",
                              _preset(d)), ("127.0.0.1", "***")),
    Case("existing_study_different_objectives",
         lambda d, u: _search(d, u, _preset(d, objectives=["ctr_auc"])),
         (STUDY, "ctr_auc", "--study-name")),
    Case("existing_study_different_dataset",
         lambda d, u: _search(d, u, _preset(d, data={"name": "synthetic",
                                                     "options": {"rows": 4000}})),
         (STUDY, "dataset")),
    Case("study_create_existing_name",
         lambda d, u: ["study", "create", "--study-config", str(_preset(d)), "--storage", u],
         (STUDY, "already exists")),
    Case("worker_unknown_study",
         lambda d, u: ["worker", "--study", "nope", "--storage", u], ("nope", STUDY)),
    Case("worker_missing_database_file",
         lambda d, u: ["worker", "--study", STUDY, "--storage", f"sqlite:///{d / 'no.db'}"],
         ("no.db",)),
    Case("worker_on_study_without_target",  # made by a plain search: would never stop
         lambda d, u: ["worker", "--study", STUDY, "--storage", u], ("--n-trials", "target")),
    Case("worker_bad_heartbeat",
         lambda d, u: ["worker", "--study", STUDY, "--storage", u, "--heartbeat-interval", "5",
                       "--grace-period", "6"], ("grace period",)),
    Case("search_workers_bad_devices",
         lambda d, u: _search(d, u, _preset(d), "--workers", "2", "--devices", "0,,1"),
         ("--devices",)),
    Case("pareto_unknown_study",
         lambda d, u: ["pareto", "--study", "nope", "--storage", u], ("nope",)),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real study database: one completed trial of a tiny search."""
    folder = tmp_path_factory.mktemp("study")
    db = folder / "study.db"
    rc = main(["search", "--study-config", str(_preset(folder)), "--storage",
               f"sqlite:///{db}", "--no-report"])
    assert rc == 0
    return db


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOMTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOMTL_DATA", raising=False)
    monkeypatch.delenv("AUTOMTL_STORAGE", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    clear_memo()


def _run(capfd: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(argv)
    out, err = capfd.readouterr()
    # a real run would print these warnings on stderr: they count as extra lines
    err += "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    return rc, out, err


def _assert_one_clean_line(rc: int, out: str, err: str, expect: tuple[str, ...]) -> str:
    assert rc != 0, out
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for part in expect:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_and_leaves_the_study_untouched(
        case: Case, study_db: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "study.db"
    shutil.copy(study_db, db)
    before = _sha(db)
    argv = case.make(tmp_path, f"sqlite:///{db}")
    capfd.readouterr()
    rc, out, err = _run(capfd, argv)
    _assert_one_clean_line(rc, out, err, case.expect)
    assert _sha(db) == before
    assert sorted(p.name for p in tmp_path.glob("study.db*")) == ["study.db"]


def _make_read_only(path: Path) -> str:
    """Make `path` read-only for this process; returns how (root ignores file modes)."""
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    if os.geteuid() != 0:
        return "chmod"
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode == 0:
        return "chattr"
    # no CAP_LINUX_IMMUTABLE (e.g. a container): SQLite's own read-only open mode instead
    return "uri"


def test_read_only_database_file(study_db: Path, tmp_path: Path,
                                 capfd: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "study.db"
    shutil.copy(study_db, db)
    before = _sha(db)
    how = _make_read_only(db)
    url = (f"sqlite:///file:{db}?mode=ro&uri=true" if how == "uri" else f"sqlite:///{db}")
    try:
        rc, out, err = _run(capfd, _search(tmp_path, url, _preset(tmp_path)))
        line = _assert_one_clean_line(rc, out, err, ("study.db",))
        assert "read" in line.lower() or "writable" in line.lower()
    finally:
        if how == "chattr":
            subprocess.run(["chattr", "-i", str(db)], check=True)
    assert _sha(db) == before


def test_real_console_script_prints_one_line(study_db: Path, tmp_path: Path) -> None:
    """The installed entry point (not just `main`) keeps errors to one line without warnings."""
    db = tmp_path / "study.db"
    shutil.copy(study_db, db)
    before = _sha(db)
    preset = _preset(tmp_path, objectives=["ctr_auc"])
    entry = "import sys; from automtl.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run(
        [sys.executable, "-c", entry, *_search(tmp_path, f"sqlite:///{db}", preset)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    _assert_one_clean_line(r.returncode, r.stdout, r.stderr, (STUDY, "--study-name"))
    assert r.returncode == 2
    assert _sha(db) == before
