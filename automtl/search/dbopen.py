"""Opening a storage safely: look before Optuna writes, and read-only where nothing may change.

Optuna's `RDBStorage` creates its tables and stamps its version rows on first contact, so
pointing it at another application's database (or a corrupt file) would change it. Every open
here first looks at the database through a read-only connection:

- `check_database` refuses a file that is not SQLite (corrupt, truncated, another format), a
  database holding another application's tables, and an Optuna schema this Optuna cannot use;
- `readonly_storage` / `open_study_readonly` open an existing automtl/Optuna database without
  write access (SQLite ``mode=ro``, PostgreSQL read-only transactions): what `studies`, `pareto`,
  `report` and `dashboard` use;
- `require_automtl_study` refuses, before any write, a study automtl did not create.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from automtl.errors import AutomtlError
from automtl.search.dburl import is_proxy_url, mask_url, scrub, sqlite_path
from automtl.search.meta import StudyMeta

_SQLITE_MAGIC = b"SQLite format 3\x00"
# Tables every Optuna RDB storage has; automtl's own tables start with "automtl_".
_OPTUNA_TABLES = {"studies", "trials", "version_info"}
# User attributes that only automtl writes on a study (any one marks it as ours).


def _fail(url: str, what: str, fix: str) -> AutomtlError:
    return AutomtlError(f"--storage {mask_url(url)}: {what}; {fix}")


def _detail(url: str, exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    first = text.splitlines()[0] if text.strip() else type(exc).__name__
    return scrub(first, url)


def readonly_url(url: str) -> tuple[str, dict[str, Any]]:
    """URL and engine kwargs that open `url` without write access: SQLite with mode=ro,
    PostgreSQL with read-only transactions."""
    kwargs: dict[str, Any] = {}
    if is_proxy_url(url):  # the proxy reads; automtl's read commands call only its reads
        return url, kwargs
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is None:
            raise _fail(url, "an in-memory database has nothing to read",
                        "pass a SQLite file (sqlite:///automtl.db)")
        if path.exists() and not path.is_file():
            raise _fail(url, f"{path} is not a file", "pass a SQLite database file")
        if not path.is_file():
            raise _fail(url, f"no database file at {path}",
                        "run `automtl search` first or pass the right --storage")
        # SQLite URI filename: mode=ro makes every write fail inside SQLite itself. The timeout
        # lets a read wait while a running search holds its short write lock.
        kwargs["connect_args"] = {"timeout": 30}
        # A WAL database needs its -shm file even to read: in a folder this user cannot write
        # (an archive, another user's results), mode=ro alone failed ("attempt to write a
        # readonly database"). Without a -wal file nothing is left outside the main file, so
        # it is read as immutable (no locks, no -shm).
        frozen = not os.access(path.parent, os.W_OK) and not Path(f"{path}-wal").exists()
        return (f"sqlite:///file:{quote(path.resolve().as_posix())}?mode=ro"
                f"{'&immutable=1' if frozen else ''}&uri=true"), kwargs
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
    return url, kwargs


def _engine(url: str, kwargs: dict[str, Any]) -> sa.Engine:
    try:
        return sa.create_engine(url, **kwargs)
    except ImportError as exc:
        raise missing_driver(url, exc) from None
    except (sa_exc.SQLAlchemyError, ValueError) as exc:
        raise _fail(url, "malformed database URL",
                    "use e.g. sqlite:///automtl.db or postgresql+psycopg://user@host/db") from None


def missing_driver(url: str, exc: ImportError) -> AutomtlError:
    """One line naming the missing database driver and how to install it."""
    cause = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__ or exc
    name = getattr(cause, "name", None) or "its driver"
    return _fail(url, f"the database driver {name!r} is not installed",
                 f"pip install {name} (or 'automtl[postgres]' for PostgreSQL)")


def database_tables(url: str) -> set[str]:
    """Table names of the database at `url`, looked at read-only (one-line errors for a file
    that is not SQLite, a corrupt/truncated one, an unreachable server or a missing driver)."""
    if is_proxy_url(url):  # the proxy host looks (and refuses a foreign database itself)
        from automtl.search.proxy import ProxyConnection

        return set(ProxyConnection.of(url).info["tables"])
    path = sqlite_path(url)
    if path is None and url.startswith("sqlite"):
        return set()  # in-memory: nothing exists before this process creates it
    if path is not None:
        if not path.exists():
            return set()
        if not path.is_file():
            raise _fail(url, f"{path} is not a file", "pass a SQLite database file")
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
        if not head:
            return set()  # an empty file is an empty SQLite database
        if head != _SQLITE_MAGIC:
            raise _fail(url, f"{path} is not a SQLite database (corrupt or another format)",
                        "pass the database file automtl wrote")
    ro, kwargs = readonly_url(url)
    engine = _engine(ro, kwargs)
    try:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            if path is not None:  # reading the schema alone misses a truncated file
                conn.exec_driver_sql("PRAGMA quick_check(1)").fetchall()
            return names
    except ImportError as exc:
        raise missing_driver(url, exc) from None
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        if path is not None:
            raise _fail(url, f"{path} cannot be read as a SQLite database "
                        f"({_detail(url, exc)})", "it is corrupt or truncated; restore it "
                        "from a copy or pass another --storage") from None
        raise _fail(url, f"cannot connect ({_detail(url, exc)})",
                    "check the URL and that the server is reachable") from None
    finally:
        engine.dispose()


def check_database(url: str) -> set[str]:
    """Refuse a database automtl must not touch (see the module docstring); returns its tables."""
    tables = database_tables(url)
    foreign = sorted(t for t in tables if t not in _OPTUNA_TABLES and not t.startswith(
        ("automtl_", "alembic_", "trial_", "study_", "tenant")))
    if tables and not _OPTUNA_TABLES <= tables:
        shown = ", ".join(foreign[:5]) or ", ".join(sorted(tables)[:5])
        raise _fail(url, f"holds another application's tables ({shown}), not an Optuna study "
                    "database", "automtl writes only into its own or an empty database; pass "
                    "another --storage")
    return tables


def schema_error(url: str, exc: BaseException) -> AutomtlError:
    """One line for a database whose Optuna schema version this Optuna cannot use."""
    return _fail(url, f"its Optuna schema does not match optuna {optuna.__version__} "
                 f"({_detail(url, exc)})",
                 "upgrade it with `optuna storage upgrade --storage URL` or use the Optuna "
                 "version that wrote it")


def readonly_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage on an existing automtl/Optuna database that cannot write (through
    a storage proxy: its client, on which read commands call only reads)."""
    ro, kwargs = readonly_url(url)  # a missing file or an in-memory URL: its own message
    tables = check_database(url)
    if not tables:
        raise _fail(url, "the database is empty (no study in it)",
                    "run `automtl search` first or pass the right --storage")
    if is_proxy_url(url):
        from automtl.search.proxy import ProxyStorage

        return ProxyStorage(url)
    try:
        storage = optuna.storages.RDBStorage(ro, engine_kwargs=kwargs, skip_table_creation=True,
                                             skip_compatibility_check=True)
        storage._version_manager.check_table_schema_compatibility()
        return storage
    except ImportError as exc:
        raise missing_driver(url, exc) from None
    except RuntimeError as exc:  # Optuna's schema-version mismatch
        raise schema_error(url, exc) from None
    except (sa_exc.SQLAlchemyError, ValueError) as exc:
        raise _fail(url, f"cannot read the database ({_detail(url, exc)})",
                    "check the URL and that it is an automtl study database") from None


def study_names_readonly(url: str) -> tuple[optuna.storages.BaseStorage, list[str]]:
    """A read-only storage and the sorted study names in it."""
    storage = readonly_storage(url)
    try:
        return storage, sorted(optuna.get_all_study_names(storage))
    except sa_exc.SQLAlchemyError as exc:
        raise _fail(url, f"cannot read the study list ({_detail(url, exc)})",
                    "check that it is an automtl study database") from None


def readonly_study(storage_url: str,
                   study_name: str) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """An existing study loaded without write access, and its read-only storage (whose
    `engine` the caller disposes when done); a missing study is a one-line error listing the
    available ones."""
    storage, names = study_names_readonly(storage_url)
    if study_name not in names:
        avail = ", ".join(names) if names else "none"
        raise AutomtlError(f"no study named {study_name!r} in {mask_url(storage_url)} "
                           f"(available: {avail}); pass --study NAME or --storage URL")
    return optuna.load_study(study_name=study_name, storage=storage), storage


def open_study_readonly(storage_url: str, study_name: str) -> optuna.Study:
    """Load an existing study without write access (see `readonly_study`)."""
    return readonly_study(storage_url, study_name)[0]


def is_automtl_study(study: optuna.Study) -> bool:
    """Whether automtl created `study` (it carries automtl's study attributes)."""
    return StudyMeta.read(study).made_by_automtl


def require_automtl_study(study: optuna.Study, storage_url: str) -> None:
    """Refuse (before any write) a study that automtl did not create."""
    if not is_automtl_study(study):
        raise AutomtlError(f"study {study.study_name!r} in {mask_url(storage_url)} was not made "
                           "by automtl (no study_config); automtl never writes into it: pass "
                           "another --study-name / --study")


__all__ = ["check_database", "database_tables", "is_automtl_study", "open_study_readonly",
           "readonly_storage", "readonly_study", "readonly_url", "require_automtl_study",
           "study_names_readonly"]
