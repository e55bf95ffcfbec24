"""Shared fixtures and markers of the test suite.

Session fixtures: a throwaway PostgreSQL server (`pg_server`, and `pg_url`: a fresh database on
it), a study searched once through the CLI for the export tests (`searched_study`), the
database written by an older automtl (`old_study_url`) and small synthetic datasets
(`synthetic`, cached per options). `one_thread`: torch on one intra-op thread for a module of
tiny models (``pytestmark = pytest.mark.usefixtures("one_thread")``). `load_benchmark(name)`:
a script of benchmarks/ as a module, for the suite-sized runs and study files tests share with it.

Markers (registered in pyproject.toml): `postgres` (added to every test that uses `pg_server`),
`browser` (headless Chromium), `slow` (real worker processes, full-size matrices). CI runs them
all; on a laptop without PostgreSQL or Chromium: ``pytest -m "not postgres and not browser"``.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import sys
from types import ModuleType
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from export_study import SearchedStudy, run_searched_study
from pg import PostgresServer, missing, pg_bin

FIXTURES = Path(__file__).parent / "fixtures"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# A 3-trial SQLite study written by main at 60f8d82 (before StudyMeta/TrialMeta), as SQL text.
OLD_STUDY_SQL = FIXTURES / "study_main_60f8d82.sql"
BROWSER_MODULES = {"test_dashboard_browser", "test_conditioned_report", "test_optuna_dashboard"}
SLOW_MODULES = {"test_distributed", "test_export_rechub_matrix", "test_workers_chaos"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by what they need, so a subset can be chosen with -m."""
    for item in items:
        module = item.module.__name__ if item.module is not None else ""
        if "pg_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
        if module in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A running throwaway PostgreSQL server for the whole test session."""
    bin_dir = pg_bin()
    if bin_dir is None:
        missing("initdb not found (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    server = PostgresServer(bin_dir)  # type: ignore[arg-type]
    try:
        server.start()
    except Exception as exc:
        server.stop()
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        missing(str(exc))
    yield server
    server.stop()


@pytest.fixture()
def pg_url(pg_server: PostgresServer) -> str:
    """URL of a fresh, empty database on the session's PostgreSQL server."""
    return pg_server.create_database()


@pytest.fixture(scope="session")
def searched_study(tmp_path_factory: pytest.TempPathFactory) -> SearchedStudy:
    """A real `automtl search` study (2 trials, checkpoints), run once per session."""
    return run_searched_study(tmp_path_factory.mktemp("exported"))


def restore_sql(sql: Path, db: Path) -> str:
    """A SQLite database rebuilt from a text dump; returns its URL."""
    conn = sqlite3.connect(db)
    conn.executescript(sql.read_text(encoding="utf-8"))
    conn.close()
    return f"sqlite:///{db}"


@pytest.fixture()
def old_study_url(tmp_path: Path) -> str:
    """A fresh copy of the study database written by an older automtl (study "old")."""
    return restore_sql(OLD_STUDY_SQL, tmp_path / "old.db")


@pytest.fixture(scope="session")
def synthetic() -> Callable[..., Any]:
    """`synthetic(rows=..., seed=..., ...)`: a small synthetic `Dataset`, generated once per
    distinct options in the session (treat it as read-only)."""
    from automtl.config import DataConfig
    from automtl.data import load_dataset

    made: dict[tuple[tuple[str, Any], ...], Any] = {}

    def get(**options: Any) -> Any:
        key = tuple(sorted(options.items()))
        if key not in made:
            made[key] = load_dataset(DataConfig(options=dict(options)))
        return made[key]

    return get


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one intra-op thread for the module: tiny models on a shared 2-core machine spend
    more time in OpenMP barriers than in the ops (a run took 20 s instead of 1.5 s with two)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_benchmark(name: str) -> ModuleType:
    """The script benchmarks/NAME.py as a module (loaded once), for the suite-sized runs and
    study files that tests share with a benchmark."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]
