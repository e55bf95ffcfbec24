"""Input hardening, second table: hostile inputs against storage, options, configs and spaces.

Each row runs a real `automtl` command in-process (`main(argv)`) inside a folder holding a copy
of a real study database plus whatever the row writes (a foreign SQLite file, a study made by
plain Optuna, a corrupt file, a config). Every row asserts: exactly one line on stderr that
contains the row's key phrases, the row's exit code, no traceback, no password substring on
stdout/stderr, and that no file in the folder changed, appeared or vanished (SHA-256 of each).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from test_bad_inputs import PRESET, SECRET, SPACE, STUDY, _preset, _search, _yaml, study_db

from automtl.cli import main
from automtl.data import clear_memo

__all__ = ["study_db"]  # the module-scoped fixture, shared with the first table

OTHER = "other"  # a study made by plain Optuna (no automtl attributes, no automtl tables)
PG = f"postgresql+psycopg://automtl:{SECRET}@127.0.0.1:1/db"


@dataclass
class Row:
    """`make(dir, url)` writes the row's files into `dir` and returns the CLI arguments."""

    id: str
    make: Callable[[Path, str], list[str]]
    expect: tuple[str, ...]  # substrings of the one error line
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _sqlite(folder: Path, name: str) -> str:
    return f"sqlite:///{folder / name}"


def _foreign(folder: Path) -> str:
    """Another application's SQLite database (a `users` table)."""
    con = sqlite3.connect(folder / "app.db")
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO users (name) VALUES ('ada')")
    con.commit()
    con.close()
    return _sqlite(folder, "app.db")


def _corrupt(folder: Path) -> str:
    _write(folder / "corrupt.db", os.urandom(4096))
    return _sqlite(folder, "corrupt.db")


def _truncated(folder: Path) -> str:
    data = (folder / "study.db").read_bytes()
    _write(folder / "truncated.db", data[: len(data) // 3])
    return _sqlite(folder, "truncated.db")


def _plain_optuna(folder: Path) -> str:
    """A study `other` made by plain Optuna: two completed trials, no automtl tables."""
    url = _sqlite(folder, "plain.db")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name=OTHER,
                                directions=["maximize", "maximize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1 - t.params["x"] ** 2), n_trials=3)
    storage.engine.dispose()
    return url


def _schema_mismatch(folder: Path) -> str:
    shutil.copy(folder / "study.db", folder / "old.db")
    con = sqlite3.connect(folder / "old.db")
    con.execute("UPDATE version_info SET schema_version = 3")
    con.execute("UPDATE alembic_version SET version_num = 'v0.9.0.a'")
    con.commit()
    con.close()
    return _sqlite(folder, "old.db")


def _on(cmd: list[str], storage: Callable[[Path], str]) -> Callable[[Path, str], list[str]]:
    """`automtl <cmd> --storage <storage(dir)>`."""
    return lambda d, u: [*cmd, "--storage", storage(d)]


def _pg(url: str) -> Callable[[Path], str]:
    return lambda d: url


_STUDY = ["--study", STUDY]
_READ_CMDS = {"studies": ["studies"], "pareto": ["pareto", *_STUDY],
              "report": ["report", *_STUDY], "dashboard": ["dashboard", *_STUDY]}

ROWS: list[Row] = [
    # -- passwords in any URL form are never printed --------------------------------------------
    Row("studies_query_string_password",
        _on(["studies"], _pg(f"postgresql+psycopg://u@127.0.0.1:1/db?password={SECRET}")),
        ("127.0.0.1", "password=***")),
    Row("studies_at_sign_in_password",
        _on(["studies"], _pg(f"postgresql+psycopg://u:pa@{SECRET}@127.0.0.1:1/db")),
        ("u:***@127.0.0.1",)),
    Row("pareto_slash_in_password",
        _on(["pareto", *_STUDY], _pg(f"postgresql+psycopg://u:pa/{SECRET}@127.0.0.1:1/db")),
        ("u:***@127.0.0.1",)),
    Row("report_percent_encoded_password",
        _on(["report", *_STUDY], _pg(f"postgresql+psycopg://u:x%40{SECRET}@127.0.0.1:1/db")),
        ("u:***@127.0.0.1",)),
    Row("dashboard_password_url", _on(["dashboard", *_STUDY], _pg(PG)), ("***", "127.0.0.1")),
    Row("sslpassword_in_query",
        _on(["studies"], _pg(f"postgresql+psycopg://u@127.0.0.1:1/db?sslpassword={SECRET}")),
        ("sslpassword=***",)),
    Row("mysql_without_driver",
        _on(["studies"], _pg(f"mysql://automtl:{SECRET}@127.0.0.1/db")),
        ("driver", "pip install", "automtl:***@")),
    Row("mssql_without_driver_search",
        lambda d, u: _search(d, f"mssql+pyodbc://automtl:{SECRET}@127.0.0.1/db", _preset(d)),
        ("driver", "***")),
    Row("password_from_environment", lambda d, u: ["studies"], ("***", "127.0.0.1"),
        env={"AUTOMTL_STORAGE": PG}),
    Row("worker_query_string_password",
        lambda d, u: ["worker", "--study", STUDY, "--storage",
                      f"postgresql+psycopg://u@127.0.0.1:1/db?password={SECRET}"],
        ("password=***",)),
    # -- another application's database is never written ----------------------------------------
    *[Row(f"{name}_on_foreign_sqlite", _on(cmd, _foreign), ("app.db", "another application"))
      for name, cmd in _READ_CMDS.items()],
    Row("search_on_foreign_sqlite", lambda d, u: _search(d, _foreign(d), _preset(d)),
        ("app.db", "another application")),
    Row("worker_on_foreign_sqlite", _on(["worker", *_STUDY], _foreign),
        ("app.db", "another application")),
    Row("export_on_foreign_sqlite", _on(["export", *_STUDY, "--trial", "0", "-f", "yaml", "-o", "x.yaml"], _foreign),
        ("app.db", "another application")),
    # -- corrupt, truncated, unreachable, incompatible storage -----------------------------------
    *[Row(f"{name}_on_corrupt_file", _on(cmd, _corrupt), ("corrupt.db", "not a SQLite"))
      for name, cmd in _READ_CMDS.items()],
    *[Row(f"{name}_on_truncated_file", _on(cmd, _truncated), ("truncated.db", "truncated"))
      for name, cmd in _READ_CMDS.items()],
    Row("report_on_unreachable_server", _on(["report", *_STUDY], _pg(PG)),
        ("cannot connect", "127.0.0.1")),
    Row("studies_on_directory", _on(["studies"], lambda d: f"sqlite:///{d}"), ("not a file",)),
    *[Row(f"{name}_on_schema_mismatch", _on(cmd, _schema_mismatch), ("schema", "upgrade"))
      for name, cmd in {"studies": ["studies"], "report": ["report", *_STUDY]}.items()],
    Row("search_on_schema_mismatch", lambda d, u: _search(d, _schema_mismatch(d), _preset(d)),
        ("schema", "upgrade")),
    Row("studies_on_empty_file",
        lambda d, u: ["studies", "--storage", _sqlite(d, _write(d / "e.db", b"").name)],
        ("empty",)),
    # -- a study automtl did not create is refused before any write ------------------------------
    Row("search_into_plain_optuna_study",
        lambda d, u: [*_search(d, _plain_optuna(d), _preset(d))[:-3], "--study-name", OTHER,
                      "--no-report"], (OTHER, "not made by automtl")),
    Row("reeval_of_plain_optuna_study",
        lambda d, u: ["reeval", "--study", OTHER, "--storage", _plain_optuna(d)],
        (OTHER, "not made by automtl")),
]


def _tree(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder` except the data cache."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "cache" not in p.parts}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOMTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOMTL_DATA", raising=False)
    monkeypatch.delenv("AUTOMTL_STORAGE", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    clear_memo()


def run_cli(capfd: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    """Run `automtl argv` in-process; warnings count as stderr lines (a real run prints them)."""
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(argv)
    out, err = capfd.readouterr()
    err += "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    return rc, out, err


def assert_one_line(rc: int, out: str, err: str, expect: tuple[str, ...], code: int) -> str:
    """One clean error line: exit code, no traceback, no password, the key phrases."""
    assert rc == code, (rc, out, err)
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for part in expect:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def test_the_second_table_is_big_enough() -> None:
    assert len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_hostile_input_gives_one_line_and_changes_no_file(
        row: Row, study_db: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(study_db, tmp_path / "study.db")
    argv = row.make(tmp_path, _sqlite(tmp_path, "study.db"))
    for key, value in row.env.items():
        monkeypatch.setenv(key, value)
    before = _tree(tmp_path)
    rc, out, err = run_cli(capfd, argv)
    assert_one_line(rc, out, err, row.expect, row.code)
    assert _tree(tmp_path) == before


# -- read-only commands on a study made by plain Optuna: they work and change no byte ------------

@pytest.mark.parametrize("argv", [["studies"], ["pareto", "--study", OTHER],
                                  ["report", "--study", OTHER, "-o", "out/r.html"]],
                         ids=["studies", "pareto", "report"])
def test_read_only_commands_never_write_a_plain_optuna_database(
        argv: list[str], tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    url = _plain_optuna(tmp_path)
    before = hashlib.sha256((tmp_path / "plain.db").read_bytes()).hexdigest()
    rc, out, err = run_cli(capfd, [*argv, "--storage", url])
    assert rc == 0, err
    assert OTHER in out or argv[0] == "report"
    assert hashlib.sha256((tmp_path / "plain.db").read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.glob("plain.db*")) == ["plain.db"]
