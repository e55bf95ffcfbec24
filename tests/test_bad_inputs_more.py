"""Input hardening, second table: hostile inputs against storage, options, configs and spaces.

Each row runs a real `automtl` command in-process (`main(argv)`) inside a folder holding a copy
of a real study database plus whatever the row writes (a foreign SQLite file, a study made by
plain Optuna, a corrupt file, a config). Every row asserts: exactly one line on stderr that
contains the row's key phrases, the row's exit code, no traceback, no password substring on
stdout/stderr, and that no file in the folder changed, appeared or vanished (SHA-256 of each).
"""

from __future__ import annotations

import csv
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
from test_bad_inputs import (PRESET, SECRET, SPACE, STUDY, _csv_case, _edit_cell, _preset, _search,
                             _yaml, study_db)

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
    Row("export_on_foreign_sqlite",
        _on(["export", *_STUDY, "--trial", "0", "-f", "yaml", "-o", "x.yaml"], _foreign),
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
    # commands that need a study: an empty file gets no Optuna tables before the refusal
    *[Row(f"{name}_on_empty_file",
          lambda d, u, cmd=cmd: [*cmd, "--storage", _sqlite(d, _write(d / "e.db", b"").name)],
          ("e.db", "empty")) for name, cmd in {
        "reeval": ["reeval", *_STUDY], "worker": ["worker", *_STUDY],
        "repair": ["studies", "--repair"],
        "export": ["export", *_STUDY, "--trial", "0", "-f", "yaml", "-o", "x.yaml"]}.items()],
    # -- a study automtl did not create is refused before any write ------------------------------
    Row("search_into_plain_optuna_study",
        lambda d, u: [*_search(d, _plain_optuna(d), _preset(d))[:-3], "--study-name", OTHER,
                      "--no-report"], (OTHER, "not made by automtl")),
    Row("reeval_of_plain_optuna_study",
        lambda d, u: ["reeval", "--study", OTHER, "--storage", _plain_optuna(d)],
        (OTHER, "not made by automtl")),
]


def _opt(*extra: str) -> Callable[[Path, str], list[str]]:
    """A search on the real study database with extra options."""
    return lambda d, u: _search(d, u, _preset(d), *extra)


def _with(**changes: object) -> Callable[[Path, str], list[str]]:
    """A search whose preset has `changes`."""
    return lambda d, u: _search(d, u, _preset(d, **changes))


def _text_preset(text: str) -> Callable[[Path, str], list[str]]:
    """A search whose preset file is exactly `text`."""
    def make(d: Path, u: str) -> list[str]:
        _preset(d)
        return _search(d, u, _write(d / "preset.yaml", text))
    return make


def _space(text: str) -> Callable[[Path, str], list[str]]:
    """A search whose space file is exactly `text`."""
    def make(d: Path, u: str) -> list[str]:
        preset = _preset(d)
        _write(d / "space.yaml", text)
        return _search(d, u, preset)
    return make


def _trial(text: str) -> Callable[[Path, str], list[str]]:
    """`automtl train` on a trial config file that is exactly `text`."""
    return lambda d, u: ["train", "--config", str(_write(d / "trial.yaml", text))]


def _fresh_study(argv: list[str]) -> Callable[[Path, str], list[str]]:
    """`argv` (+ --storage) on a database holding study "fresh" made by `automtl study create`
    (no trial yet)."""
    def make(d: Path, u: str) -> list[str]:
        url = _sqlite(d, "fresh.db")
        assert main(["study", "create", "--study-config", str(_preset(d)), "--study-name",
                     "fresh", "--storage", url]) == 0
        return [*argv, "--storage", url]
    return make


def _rename_header(index: int, name: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        lines = path.read_text().split("\n")
        header = next(csv.reader([lines[0]]))
        header[index] = name
        lines[0] = ",".join(header)
        path.write_text("\n".join(lines))
    return edit


def _census_info(defect: Callable[[Path], None]) -> Callable[[Path, str], list[str]]:
    """`automtl data info` on a processed census-income folder with one defect in train.csv."""
    def make(d: Path, u: str) -> list[str]:
        from datagen import write_processed

        paths = write_processed(d / "data", "census-income", {"train": 40, "val": 10, "test": 10})
        defect(paths["train"])
        return ["data", "info", "census-income", "--data-dir", str(d / "data")]
    return make


_TRIAL = "data: {name: synthetic, options: {rows: 3000, n_tasks: 2}}\ntrain: {epochs: 1}\n"
_LR = "  model.embedding_dim: 4\n  model.tower_dims: {choices: [[4]]}\n"
_ARCH = "name: s\nparams:\n  model.arch: {choices: [shared_bottom]}\n"
_SMALL = "model: {arch: mmoe, n_experts: 2, expert_dims: [8], embedding_dim: 4, tower_dims: [4]}\n"

ROWS += [
    # -- every option checked before any side effect (typer ranges + one check pass) ------------
    Row("search_timeout_negative", _opt("--timeout", "-5"), ("--timeout", "> 0")),
    Row("search_timeout_nan", _opt("--timeout", "nan"), ("--timeout", "finite")),
    Row("search_timeout_inf", _opt("--timeout", "inf"), ("--timeout", "finite")),
    Row("search_reeval_top_negative", _opt("--reeval-top", "-1"),
        ("--reeval-top", "greater than or equal to 0")),
    Row("search_seed_negative", _opt("--seed", "-1"), ("--seed",)),
    Row("search_seed_beyond_rng", _opt("--seed", str(2**32)), ("--seed", "4294967295")),
    Row("search_seeds_zero", _opt("--seeds", "0"), ("--seeds",)),
    Row("search_epochs_zero", _opt("--epochs", "0"), ("--epochs",)),
    Row("search_workers_zero", _opt("--workers", "0"), ("--workers",)),
    Row("search_trials_per_device_zero", _opt("--trials-per-device", "0"),
        ("--trials-per-device",)),
    Row("search_n_trials_not_a_number", _opt("--n-trials", "many"), ("--n-trials", "integer")),
    Row("search_unknown_option", _opt("--trails", "5"), ("--trails", "automtl search")),
    Row("search_empty_study_name", lambda d, u: [*_search(d, u, _preset(d))[:-3],
                                                 "--study-name", "", "--no-report"],
        ("--study-name", "empty")),
    Row("search_blank_study_name", lambda d, u: [*_search(d, u, _preset(d))[:-3],
                                                 "--study-name", "   ", "--no-report"],
        ("--study-name", "empty")),
    Row("search_study_name_with_newline",
        lambda d, u: [*_search(d, u, _preset(d))[:-3], "--study-name", "a\nb", "--no-report"],
        ("--study-name", "control characters")),
    Row("search_study_name_too_long",
        lambda d, u: [*_search(d, u, _preset(d))[:-3], "--study-name", "x" * 300,
                      "--no-report"], ("--study-name", "at most")),
    Row("search_report_and_no_report", _opt("--report", "r.html"), ("--report", "--no-report")),
    Row("data_option_rows_in_e_notation", _opt("--data-option", "rows=1e5"),
        ("rows", "whole number")),
    Row("data_option_rows_negative", _opt("--data-option", "rows=-5"), ("rows", ">= 0")),
    Row("data_option_rho_nan", _opt("--data-option", "rho=.nan"), ("rho", "finite")),
    Row("data_option_seed_beyond_rng", _opt("--data-option", "seed=99999999999"),
        ("seed", "4294967295")),
    Row("data_option_rows_as_text", _opt("--data-option", "rows=lots"),
        ("rows", "whole number")),
    Row("data_option_without_value", _opt("--data-option", "rows"), ("KEY=VALUE",)),
    Row("data_option_unknown", _opt("--data-option", "colour=red"), ("colour", "allowed")),
    Row("dashboard_port_beyond_65535", lambda d, u: ["dashboard", *_STUDY, "--storage", u,
                                                     "--port", "99999"], ("--port", "65535")),
    Row("dashboard_port_negative", lambda d, u: ["dashboard", *_STUDY, "--storage", u,
                                                 "--port", "-1"], ("--port",)),
    Row("dashboard_refresh_nan", lambda d, u: ["dashboard", *_STUDY, "--storage", u,
                                               "--refresh", "nan"], ("--refresh",)),
    Row("dashboard_unresolvable_host",
        lambda d, u: ["dashboard", *_STUDY, "--storage", u, "--host", "no-such-host.invalid",
                      "--port", "0"], ("--host", "cannot listen")),
    Row("reeval_top_zero", lambda d, u: ["reeval", *_STUDY, "--storage", u, "--top", "0"],
        ("--top",)),
    Row("reeval_seeds_zero", lambda d, u: ["reeval", *_STUDY, "--storage", u, "--seeds", "0"],
        ("--seeds",)),
    Row("worker_timeout_negative",
        lambda d, u: ["worker", *_STUDY, "--storage", u, "--timeout", "-1"], ("--timeout",)),
    Row("worker_n_trials_zero",
        lambda d, u: ["worker", *_STUDY, "--storage", u, "--n-trials", "0"], ("--n-trials",)),
    Row("study_create_empty_name",
        lambda d, u: ["study", "create", "--study-config", str(_preset(d)), "--storage", u,
                      "--study-name", ""], ("--study-name", "empty")),
    Row("pareto_trial_negative",
        lambda d, u: ["pareto", *_STUDY, "--storage", u, "--trial", "-1"], ("--trial",)),
    Row("pareto_duplicate_weights",
        lambda d, u: ["pareto", *_STUDY, "--storage", u, "--weights", "ctr=0.5,ctr=0.7"],
        ("--weights", "twice")),
    Row("pareto_duplicate_weights_two_spellings",
        lambda d, u: ["pareto", *_STUDY, "--storage", u, "--weights", "ctr=0.5",
                      "--weights", "ctr_auc=0.7"], ("--weights", "twice")),
    Row("pareto_weight_nan",
        lambda d, u: ["pareto", *_STUDY, "--storage", u, "--weights", "ctr=nan"],
        ("--weights", "finite")),
    Row("pareto_duplicate_min",
        lambda d, u: ["pareto", *_STUDY, "--storage", u, "--min", "ctr=0.5,ctr=0.6",
                      "--maximize", "cvr"], ("--min", "twice")),
    Row("studies_unknown_format", lambda d, u: ["studies", "--storage", u, "-f", "xml"],
        ("--format",)),
    Row("unknown_command", lambda d, u: ["serch"], ("serch",)),
    Row("data_prepare_val_fraction_nan",
        lambda d, u: ["data", "prepare", "ali-ccp", "--raw", str(d), "--val-fraction", "nan"],
        ("--val-fraction",)),
    # -- every number in presets, trial configs and spaces: finite, in range ---------------------
    Row("preset_lr_nan", _with(train={"batch_size": 512, "device": "cpu", "lr": float("nan")}),
        ("preset.yaml", "lr", "finite")),
    Row("preset_weight_decay_nan",
        _with(train={"batch_size": 512, "device": "cpu", "weight_decay": float("nan")}),
        ("preset.yaml", "weight_decay", "finite")),
    Row("preset_seed_10_to_the_30", _with(seed=10**30), ("preset.yaml", "seed", "4294967295")),
    Row("preset_seed_negative", _with(seed=-1), ("preset.yaml", "seed")),
    Row("preset_timeout_inf", _with(timeout=float("inf")), ("preset.yaml", "timeout", "finite")),
    Row("preset_epochs_beyond_int64", _with(epochs=10**30), ("preset.yaml", "epochs", "64-bit")),
    Row("preset_reduction_factor_nan",
        _with(pruner={"kind": "pareto", "reduction_factor": float("nan")}),
        ("preset.yaml", "reduction_factor", "finite")),
    Row("preset_objectives_empty_list", _with(objectives=[]), ("preset.yaml", "objectives",
                                                               "empty")),
    Row("preset_empty_file", _text_preset(""), ("preset.yaml", "empty")),
    Row("preset_only_comments", _text_preset("# nothing here\n"), ("preset.yaml", "empty")),
    Row("preset_duplicate_key", _text_preset(_yaml(PRESET) + "epochs: 5\n"),
        ("preset.yaml", "epochs", "twice")),
    Row("preset_data_option_seed_huge",
        _with(data={"name": "synthetic", "options": {"rows": 3000, "seed": 2**40}}),
        ("seed", "4294967295")),
    Row("space_nan_bound", _space(SPACE + "  train.lr: {float: [.nan, 0.1], log: true}\n"),
        ("space.yaml", "finite")),
    Row("space_log_range_to_inf",
        _space(SPACE + "  train.lr: {float: [1.0e-5, .inf], log: true}\n"),
        ("space.yaml", "finite")),
    Row("space_int_bound_beyond_2_53",
        _space(SPACE.replace("[2, 3]", f"[2, {10**20}]")), ("space.yaml", "finite")),
    Row("space_step_nan", _space(SPACE + "  train.lr: {float: [0.01, 0.1], step: .nan}\n"),
        ("space.yaml", "step")),
    Row("space_duplicate_key", _space(SPACE + "  model.embedding_dim: 8\n"),
        ("space.yaml", "twice")),
    Row("space_empty_file", _space(""), ("space.yaml", "empty")),
    # a YAML date or a !!binary/!!set value: the space document (stored as JSON) crashed
    Row("space_yaml_date_value", _space(SPACE + "  train.lr: 2024-01-01\n"),
        ("space.yaml", "train.lr", "'2024-01-01'")),
    Row("space_yaml_binary_tag", _space(SPACE + "  train.lr: !!binary aGVsbG8=\n"),
        ("space.yaml", "!!binary", "not supported")),
    Row("space_yaml_set_tag", _space(SPACE + "  train.lr: {choices: !!set {a: null}}\n"),
        ("space.yaml", "!!set", "not supported")),
    # Optuna only warned and moved `high` (one step past the range: a constant)
    Row("space_step_not_dividing_range",
        _space(SPACE + "  train.lr: {float: [0.001, 0.01], step: 1}\n"),
        ("space.yaml", "train.lr.step", "whole number of steps")),
    # the study's epochs/data, sampled, silently overrode it (a budget counts epochs per training)
    Row("space_samples_epochs", _space(SPACE + "  train.epochs: {int: [1, 1000000]}\n"),
        ("space.yaml", "train.epochs", "set by the study")),
    Row("space_samples_data_option", _space(SPACE + "  data.options.rows: {int: [1000, 2000]}\n"),
        ("space.yaml", "data.options.rows", "set by the study")),
    Row("trial_lr_nan", _trial(_TRIAL.replace("epochs: 1", "epochs: 1, lr: .nan")),
        ("trial.yaml", "lr", "finite")),
    Row("trial_weight_decay_nan",
        _trial(_TRIAL.replace("epochs: 1", "epochs: 1, weight_decay: .nan")),
        ("trial.yaml", "weight_decay", "finite")),
    Row("trial_seed_10_to_the_30",
        _trial(_TRIAL.replace("epochs: 1", f"epochs: 1, seed: {10**30}")),
        ("trial.yaml", "seed", "4294967295")),
    Row("trial_empty_file", _trial(""), ("trial.yaml", "empty")),
    Row("trial_duplicate_key", _trial(_TRIAL + "train: {epochs: 2}\n"),
        ("trial.yaml", "train", "twice")),
    Row("trial_data_rows_e_notation",
        _trial(_TRIAL.replace("rows: 3000", "rows: 1e5")), ("rows", "whole number")),
    # a leftover preference under another scheme (an exported conditioned trial, edited)
    Row("trial_preference_with_fixed_scheme",
        _trial(_TRIAL + "loss: {weighting: {scheme: fixed, preference: {ctr: 1, cvr: 2}}}\n"),
        ("trial.yaml", "preference", "'fixed'", "remove preference")),
    # found only against the data or the model, still a line of the file: named
    Row("trial_preference_unknown_task",
        _trial(_TRIAL + _SMALL + "loss: {weighting: {scheme: conditioned, film: [towers], "
               "preference: {ctr: 1, bogus: 2}}}\n"),
        ("trial.yaml", "preference.bogus", "unknown task")),
    Row("trial_weights_unknown_task",
        _trial(_TRIAL + _SMALL + "loss: {weighting: {weights: {bogus: 2}}}\n"),
        ("trial.yaml", "weights.bogus", "unknown task")),
    Row("trial_data_rows_negative", _trial(_TRIAL.replace("rows: 3000", "rows: -5")),
        ("trial.yaml", "rows", ">= 0, got -5")),
    Row("trial_synthetic_rho_out_of_range", _trial(_TRIAL.replace("n_tasks: 2", "rho: 2")),
        ("trial.yaml", "rho=2.0", "0 <= rho <= 1")),
    Row("trial_unknown_dataset", _trial(_TRIAL.replace("name: synthetic", "name: nope")),
        ("trial.yaml", "unknown dataset 'nope'")),
    # -- sizes refused with the numbers before anything is allocated ---------------------------
    Row("trial_huge_embedding_dim",
        _trial(_TRIAL + "model: {arch: mmoe, embedding_dim: 100000000}\n"),
        ("parameters", "GiB", "embedding_dim")),
    Row("trial_huge_n_experts", _trial(_TRIAL + "model: {arch: mmoe, n_experts: 100000000}\n"),
        ("parameters", "GiB", "n_experts")),
    Row("trial_huge_synthetic_rows", _trial(_TRIAL.replace("rows: 3000", f"rows: {10**11}")),
        ("rows=100,000,000,000", "GiB")),
    # a warm start from the study itself enqueued its own front into it; '' meant none
    Row("search_warm_start_from_itself", _opt("--warm-start", STUDY),
        ("--warm-start study", "the study being searched")),
    Row("search_warm_start_empty", _opt("--warm-start", ""), ("--warm-start", "empty")),
    Row("search_warm_start_missing", _opt("--warm-start", "nope"),
        ("--warm-start", "no study named 'nope'")),
    Row("search_huge_synthetic_rows", _opt("--data-option", f"rows={10**11}"), ("rows", "GiB")),
    # -- more hostile probes --------------------------------------------------------------------
    Row("studies_empty_storage_url", lambda d, u: ["studies", "--storage", ""], ("malformed",)),
    Row("studies_in_memory_storage", lambda d, u: ["studies", "--storage", "sqlite://"],
        ("in-memory",)),
    Row("pareto_missing_database_file",
        lambda d, u: ["pareto", *_STUDY, "--storage", _sqlite(d, "missing.db")],
        ("missing.db", "no database file")),
    Row("report_output_is_a_directory",
        lambda d, u: ["report", *_STUDY, "--storage", u, "-o", str(d)], ("cannot write",)),
    # a file where the output folder goes: a traceback (fuxictr), or the configs written before
    # --write-data failed; a file among -o's parents: a traceback (torch-rechub)
    Row("export_fuxictr_out_is_a_file",
        lambda d, u: ["export", *_STUDY, "--storage", u, "--pick", "knee", "-f", "fuxictr",
                      "-o", str(_write(d / "afile", "x"))], ("-o", "afile", "is a file")),
    Row("export_write_data_is_a_file",
        lambda d, u: ["export", *_STUDY, "--storage", u, "--pick", "knee", "-f", "fuxictr",
                      "-o", str(d / "fx"), "--write-data", str(_write(d / "afile", "x"))],
        ("--write-data", "is a file")),
    Row("export_rechub_parent_is_a_file",
        lambda d, u: ["export", *_STUDY, "--storage", u, "--pick", "knee", "-f",
                      "torch-rechub", "-o", str(_write(d / "afile", "x")) + "/x.py"],
        ("-o", "afile is a file, not a folder")),
    Row("export_unknown_trial",
        lambda d, u: ["export", *_STUDY, "--storage", u, "--trial", "999", "-f", "yaml",
                      "-o", str(d / "x.yaml")], ("999",)),
    # an empty selection value would silently mean no rule (after --trial N: its knee)
    Row("export_empty_weights",
        lambda d, u: ["export", *_STUDY, "--storage", u, "--trial", "0", "--weights=", "-f",
                      "yaml", "-o", str(d / "x.yaml")], ("--weights", "no NAME=NUMBER pair")),
    Row("export_empty_pick",
        lambda d, u: ["export", *_STUDY, "--storage", u, "--trial", "0", "--pick=", "-f",
                      "yaml", "-o", str(d / "x.yaml")], ("--pick", "empty")),
    Row("pareto_empty_min", lambda d, u: ["pareto", *_STUDY, "--storage", u, "--min", ",",
                                          "--maximize", "ctr"], ("--min", "no NAME=NUMBER")),
    # refused, but only after creating automtl's tables and writing an empty front
    Row("reeval_study_without_completed_trials", _fresh_study(["reeval", "--study", "fresh"]),
        ("'fresh'", "no completed trial")),
    Row("train_config_is_a_directory", lambda d, u: ["train", "--config", str(d)],
        ("is a folder, not a file",)),
    Row("train_config_not_utf8",
        lambda d, u: ["train", "--config", str(_write(d / "bin.yaml", b"\xff\xfe\x00bad"))],
        ("bin.yaml", "cannot read")),
    Row("search_space_file_missing", _opt("--space", "/nonexistent/space.yaml"),
        ("space.yaml",)),
    Row("search_data_dir_missing",
        lambda d, u: _search(d, u, _preset(d, data={"name": "ali-ccp",
                                                    "data_dir": str(d / "nowhere")})),
        ("nowhere",)),
    # -- data files ----------------------------------------------------------------------------
    Row("csv_dense_beyond_float32", _csv_case(_edit_cell("D509", "1e308")),
        ("train.csv", "D509", "float32")),
    Row("csv_non_integer_id", _csv_case(_edit_cell("205", "3.5")),
        ("train.csv", "205", "non-integer id")),
    # one text label among 0/1 numbers: read as census text, every 1 silently became 0
    Row("csv_census_text_among_numeric_labels", _census_info(_edit_cell("income", "yes")),
        ("train.csv", "line 5", "'income'", "'yes'", "numbers only")),
    # a name written twice (in place of another): was reported as the other column "missing"
    Row("csv_duplicated_header_column", _census_info(_rename_header(2, "class of worker")),
        ("train.csv", "duplicated column(s) 'class of worker'", "'industry code' missing")),
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


@pytest.mark.parametrize("argv", [
    ["search", "--study-config", "preset.yaml", "--no-report"],
    ["study", "create", "--study-config", "preset.yaml"],
], ids=["search", "study_create"])
def test_a_bad_space_creates_no_database(argv: list[str], tmp_path: Path,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    """The space is checked before the database is created (a new SQLite file appeared,
    with Optuna's schema, before the space was read)."""
    _preset(tmp_path, space=SPACE + "  model.bogus: 3\n")
    db = tmp_path / "new.db"
    rc, out, err = run_cli(capfd, [*argv, "--storage", f"sqlite:///{db}"])
    assert_one_line(rc, out, err, ("space.yaml", "model.bogus"), 2)
    assert not db.exists()


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


def test_utf8_bom_header_and_text_ids_in_one_split_are_accepted(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A CSV saved by Excel (UTF-8 BOM) loads; an id column that is text in one split only
    (an 'abc' id) is re-indexed as text instead of crashing."""
    from datagen import write_processed

    paths = write_processed(tmp_path / "data", "ali-ccp", {"train": 40, "val": 10, "test": 10})
    paths["train"].write_bytes(b"\xef\xbb\xbf" + paths["train"].read_bytes())
    _edit_cell("205", "abc")(paths["val"])
    trial = _write(tmp_path / "t.yaml", _yaml({"data": {"name": "ali-ccp",
                                                        "data_dir": str(tmp_path / "data")},
                                               "train": {"epochs": 1, "device": "cpu"}}))
    rc, out, err = run_cli(capfd, ["train", "--config", str(trial)])
    assert rc == 0, err
    assert "parameters" in out


# -- stale RUNNING trials: shown with their heartbeat age, repaired on request ----------------

def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def _add_running(url: str, owner: str, heartbeat: str | None = None) -> int:
    """A RUNNING trial of STUDY owned by `owner`, optionally with an old heartbeat row."""
    storage = optuna.storages.RDBStorage(url)
    trial_id = storage.create_new_trial(storage.get_study_id_from_name(STUDY))
    storage.set_trial_user_attr(trial_id, "worker", owner)
    number = storage.get_trial(trial_id).number
    storage.engine.dispose()
    if heartbeat is not None:
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        con.execute("INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES (?, ?)",
                    (trial_id, heartbeat))
        con.commit()
        con.close()
    return number


def _state(url: str, number: int) -> str:
    storage = optuna.storages.RDBStorage(url)
    try:
        return optuna.load_study(study_name=STUDY, storage=storage).trials[number].state.name
    finally:
        storage.engine.dispose()


def test_stale_running_trials_are_shown_read_only_then_repaired(
        study_db: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import json
    import socket

    from automtl.report import load_snapshot

    db = tmp_path / "study.db"
    shutil.copy(study_db, db)
    url = _sqlite(tmp_path, "study.db")
    gone = _add_running(url, f"{socket.gethostname()}:{_dead_pid()}")
    silent = _add_running(url, "elsewhere:1", heartbeat="2000-01-01 00:00:00")
    before = _tree(tmp_path)

    rc, out, err = run_cli(capfd, ["studies", "--storage", url])
    assert rc == 0, err
    assert "2 stale" in out and "heartbeat" in out and "s ago" in out
    rc, out, err = run_cli(capfd, ["studies", "--storage", url, "-f", "json"])
    stale = {s["trial"]: s for s in json.loads(out)[0]["stale"]}
    assert "is gone" in stale[gone]["reason"]
    assert stale[silent]["heartbeat_age_s"] > 3600
    snap = load_snapshot(url, STUDY)  # what the dashboard's /api/state reports
    assert not snap.running and set(snap.stale) == {gone, silent}
    assert _tree(tmp_path) == before  # showing them wrote nothing

    rc, out, err = run_cli(capfd, ["studies", "--storage", url, "--repair"])
    assert rc == 0, err
    assert f"trial {gone} marked FAIL" in out and f"trial {silent} marked FAIL" in out
    assert _state(url, gone) == _state(url, silent) == "FAIL"


def test_a_live_running_trial_is_not_stale(study_db: Path, tmp_path: Path,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    import socket

    shutil.copy(study_db, tmp_path / "study.db")
    url = _sqlite(tmp_path, "study.db")
    alive = _add_running(url, f"{socket.gethostname()}:{os.getpid()}")
    rc, out, err = run_cli(capfd, ["studies", "--storage", url, "--repair"])
    assert rc == 0 and "stale" not in out and "marked" not in out
    assert _state(url, alive) == "RUNNING"


def test_resuming_search_fails_the_trials_of_a_killed_run_and_confines_its_report(
        study_db: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A resumed study without heartbeats marks the SIGKILLed run's trial FAIL by itself; a
    study name that looks like a path still writes its report inside reports/."""
    import socket

    shutil.copy(study_db, tmp_path / "study.db")
    url = _sqlite(tmp_path, "study.db")
    gone = _add_running(url, f"{socket.gethostname()}:{_dead_pid()}")
    rc, out, err = run_cli(capfd, _search(tmp_path, url, _preset(tmp_path)))
    assert rc == 0, err
    assert _state(url, gone) == "FAIL"

    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    os.chdir(work)
    rc, out, err = run_cli(capfd, ["search", "--study-config", str(_preset(tmp_path)),
                                   "--storage", _sqlite(tmp_path, "new.db"),
                                   "--study-name", "../../escaped"])
    assert rc == 0, err
    html = sorted(tmp_path.rglob("*.html"))
    assert [p.parent for p in html] == [work / "reports"], html
    assert not list(tmp_path.glob("escaped*")) and not list(work.parent.glob("escaped*"))


def test_study_create_prints_a_worker_command_that_pastes_and_no_optuna_log(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The hint was `--study it's x` unquoted (and --storage in bare single quotes), and
    Optuna's "[I ...] A new study created" INFO lines went to stderr."""
    import shlex

    name = "it's a \"study\""
    url = _sqlite(tmp_path, "w.db")
    rc, out, err = run_cli(capfd, ["study", "create", "--study-config", str(_preset(tmp_path)),
                                   "--study-name", name, "--storage", url])
    assert rc == 0 and not err.strip(), err
    line = next(ln for ln in out.splitlines() if "automtl worker" in ln)
    argv = shlex.split(line.split("start workers with: ", 1)[1])
    assert argv == ["automtl", "worker", "--study", name, "--storage", url]


def test_read_only_commands_read_a_database_in_a_folder_they_cannot_write(
        study_db: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A WAL database (as `search --workers` makes) in a folder this user cannot write (an
    archive, another user's results): SQLite's mode=ro still needed to create the -shm file,
    so `studies` and `pareto` said the file was "corrupt or truncated". The database bytes stay
    the same and no file appears beside it.

    As a user other than root the folder's mode denies the write. Root writes anywhere, and
    running as another user needs this checkout and its interpreter to be reachable by that
    user (not so on a CI checkout under a private folder), so under root the test denies the
    one thing root cannot be denied, the write check (`os.access(folder, W_OK)` answers False
    as it does for any other user); SQLite is real either way, and without the fix root's
    connection leaves a -shm file beside the database (the last assertion)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="automtl-ro-"))
    if os.geteuid() == 0:
        real_access = os.access

        def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
            if mode & os.W_OK and Path(str(path)).resolve() == folder.resolve():
                return False
            return real_access(path, mode, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "access", access)
    try:
        db = folder / "study.db"
        shutil.copy(study_db, db)
        from automtl.search.storage import enable_sqlite_wal

        enable_sqlite_wal(f"sqlite:///{db}")  # as `search --workers` leaves it
        db.chmod(0o444)
        folder.chmod(0o555)
        before = db.read_bytes()
        for argv in (["studies"], ["pareto", "--study", STUDY]):
            rc, out, err = run_cli(capfd, [*argv, "--storage", f"sqlite:///{db}"])
            assert rc == 0, err
            assert STUDY in out and "Traceback" not in err
        assert db.read_bytes() == before
        assert [p.name for p in folder.iterdir()] == ["study.db"]
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_study_names_that_sanitise_alike_never_share_a_report_or_checkpoint_folder(
        tmp_path: Path) -> None:
    """"a/b" and "a\\b" (or ".." and "ＡＢ") both became "a_b" ("_"): the second study's report
    replaced the first's, and their checkpoint folders were one (trial 3 of one study loaded the
    other's weights). A changed name carries a hash of itself; a plain name is kept; the
    longest name still makes a file name the file system accepts."""
    from automtl.search.naming import MAX_STUDY_NAME, confined_path
    from automtl.search.runner import checkpoint_dir

    url = _sqlite(tmp_path, "x.db")
    for group in (["a/b", "a\\b", "a_b"], ["..", "ＡＢ", "_"]):
        reports = {confined_path(tmp_path / "reports", n, ".html") for n in group}
        folders = {checkpoint_dir(url, n) for n in group}
        assert len(reports) == len(folders) == len(group)
    assert confined_path(tmp_path, "bud", ".html") == (tmp_path / "bud.html").resolve()
    longest = confined_path(tmp_path, "x" * MAX_STUDY_NAME, ".html")
    longest.write_text("ok")  # no "File name too long"
    assert longest.parent == tmp_path.resolve()


# -- dashboard: Host header checked against the bound host, real port, loud 0.0.0.0 ------------

def _status(app: object, host: str, path: str = "/api/state") -> int:
    """HTTP status of one GET through the ASGI app, with this Host header."""
    import asyncio

    sent: list[dict] = []
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "headers": [(b"host", host.encode())], "server": ("127.0.0.1", 8080),
             "client": ("127.0.0.1", 5000)}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    return int(sent[0]["status"])


def test_dashboard_refuses_a_foreign_host_header(study_db: Path) -> None:
    """DNS rebinding: a page on evil.example re-bound to 127.0.0.1 sends Host: evil.example."""
    from automtl.report.dashboard import create_app

    url = f"sqlite:///{study_db}"
    app = create_app(url, STUDY, host="127.0.0.1")
    assert _status(app, "127.0.0.1:8080") == 200
    assert _status(app, "localhost:8080") == 200
    assert _status(app, "[::1]:8080") == 200
    assert _status(app, "evil.example:8080") == 400
    assert _status(app, "127.0.0.1.evil.example", "/") == 400
    assert _status(app, "") == 400
    assert _status(create_app(url, STUDY, host="0.0.0.0"), "evil.example") == 200  # warned


def test_dashboard_port_0_prints_the_real_port_and_0000_warns(
        study_db: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import re
    import socket
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    entry = "import sys; from automtl.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", entry, "dashboard", "--study", STUDY,
                             "--storage", f"sqlite:///{study_db}", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line)[1])  # type: ignore[index]
        assert port != 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=60) as r:
            assert r.status == 200
        forged = urllib.request.Request(f"http://127.0.0.1:{port}/api/state",
                                        headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=60)
        assert refused.value.code == 400
    finally:
        proc.terminate()
        proc.communicate(timeout=60)  # also closes the pipes (no ResourceWarning later)

    with socket.socket() as busy:  # a taken port: the warning, then one error line
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        rc, out, err = run_cli(capfd, ["dashboard", "--study", STUDY, "--storage",
                                       f"sqlite:///{study_db}", "--host", "0.0.0.0",
                                       "--port", str(busy.getsockname()[1])])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 2, err
    assert "WARNING" in lines[0] and "0.0.0.0" in lines[0] and "without a password" in lines[0]
    assert "cannot listen" in lines[1]
