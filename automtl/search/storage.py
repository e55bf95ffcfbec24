"""Opening Optuna storages and studies safely: automtl's engine settings, one-line errors for
unusable URLs (password masked), a read-only look before Optuna writes, and objective names."""

from __future__ import annotations

from typing import Any

import optuna
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from automtl.errors import AutomtlError
from automtl.search.dburl import is_proxy_url, mask_url, scrub, sqlite_path
from automtl.search.meta import StudyMeta


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for `url` (every engine automtl opens on a storage uses them)."""
    # SQLite: wait for other writers (workers, dashboards) instead of failing at once.
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def db_error(url: str, exc: BaseException) -> AutomtlError:
    """One-line user error for an unusable storage URL (password masked)."""
    masked = mask_url(url)
    if isinstance(exc, (sa_exc.ArgumentError, ValueError)):
        return AutomtlError(f"--storage {masked}: malformed database URL; use e.g. "
                            "sqlite:///automtl.db or postgresql+psycopg://user@host/db")
    if isinstance(exc, ImportError):
        from automtl.search.dbopen import missing_driver

        return missing_driver(url, exc)
    detail = str(getattr(exc, "orig", exc)).splitlines()[0] if str(exc) else type(exc).__name__
    detail = scrub(detail, url)
    return AutomtlError(f"--storage {masked}: cannot use the database ({detail}); check the URL, "
                        "that the server is reachable and the file is writable")


def make_storage(url: str, *, must_exist: bool = False,
                 **rdb_kwargs: Any) -> optuna.storages.BaseStorage:
    """Optuna RDB storage for `url` with automtl's engine settings; errors are one line.

    The database is looked at read-only first (`dbopen.check_database`): a corrupt file, another
    application's database or an incompatible Optuna schema is refused before Optuna writes.
    `must_exist`: a SQLite URL whose file is missing, or a database without any table (an empty
    file, a new server database), is an error instead of a new database: the caller reads or
    joins studies, so nothing is created for it.
    Extra keyword arguments (heartbeat_interval, grace_period, ...) go to `RDBStorage`.
    A ``grpc://host:port`` URL gives the storage proxy's client (`automtl.search.proxy`).
    """
    from automtl.search.dbopen import check_database, schema_error

    if is_proxy_url(url):
        from automtl.search.proxy import ProxyStorage

        return ProxyStorage(url, **rdb_kwargs)

    path = sqlite_path(url)
    if must_exist and path is not None and not path.is_file():
        raise AutomtlError(f"--storage {mask_url(url)}: no database file at {path}; run "
                           "`automtl search` first or pass the right --storage")
    if not check_database(url) and must_exist:
        raise AutomtlError(f"--storage {mask_url(url)}: the database is empty (no study in it); "
                           "run `automtl search` first or pass the right --storage")
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), **rdb_kwargs)
    except AutomtlError:
        raise
    except RuntimeError as exc:  # Optuna's schema-version mismatch
        raise schema_error(url, exc) from None
    except (sa_exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise db_error(url, exc) from None


def enable_sqlite_wal(url: str) -> None:
    """Switch a SQLite database to WAL journaling (persistent; no-op for other backends)."""
    if sqlite_path(url) is None:
        return
    engine = sa.create_engine(url, **engine_kwargs(url))
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    except sa.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise AutomtlError(f"--storage {mask_url(url)}: cannot open the SQLite database for "
                           f"several workers ({detail}); check the file is writable") from None
    finally:
        engine.dispose()


def close_storage(storage: optuna.storages.BaseStorage) -> None:
    """Close a storage's database connections (a proxy client's channel stays shared)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def study_names(storage: str | optuna.storages.BaseStorage) -> list[str]:
    """Names of the studies in a storage (URL or storage object)."""
    if isinstance(storage, str):
        storage = make_storage(storage, must_exist=True)
    return sorted(optuna.get_all_study_names(storage))


def open_study(storage_url: str, study_name: str) -> optuna.Study:
    """Load an existing study; a one-line `AutomtlError` lists the available ones if missing."""
    storage = make_storage(storage_url, must_exist=True)
    names = study_names(storage)
    if study_name not in names:
        avail = ", ".join(names) if names else "none"
        raise AutomtlError(f"no study named {study_name!r} in {mask_url(storage_url)} "
                           f"(available: {avail}); pass --study NAME or --storage URL")
    return optuna.load_study(study_name=study_name, storage=storage)


def objective_names(study: optuna.Study) -> list[str]:
    """Objective (metric) names of a study: its record's, else Optuna's metric names."""
    names = StudyMeta.read(study).objectives
    if names and len(names) == len(study.directions):
        return [str(n) for n in names]
    if study.metric_names is not None:
        return list(study.metric_names)
    return [f"objective_{i}" for i in range(len(study.directions))]



__all__ = ["close_storage", "db_error", "enable_sqlite_wal", "engine_kwargs", "make_storage",
           "objective_names", "open_study", "study_names"]
