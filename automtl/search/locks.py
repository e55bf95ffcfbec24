"""The per-study lock: a cross-process mutex around "count trial slots, then create a trial".

Taken by workers (`automtl.search.distributed`) and by the storage proxy on their behalf
(`automtl.search.proxy`); kept out of `distributed` so that the proxy process, which needs the
lock but never trains, does not import the training stack (torch, scikit-learn).

SQLite: a lock file beside the database (`filelock`, flock(2) on POSIX: processes on one machine).
PostgreSQL: a session advisory lock, which the server frees when a worker's connection dies.
Storage proxy (grpc://): the proxy holds the database's lock while the worker's call is open.
Other backends: a thread lock, serialising this process only (documented limitation).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from pathlib import Path
from typing import Protocol

import filelock
import sqlalchemy as sa

from automtl.errors import AutomtlError
from automtl.search.dburl import is_proxy_url, sqlite_path


class StudyLock(Protocol):
    """A cross-process mutex around "count trial slots, then create a trial"."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class _HeldLock:
    """A process-level lock (a `filelock.FileLock`, a `threading.Lock`) whose `release` is
    idempotent: the worker releases early once its trial exists, and again when it ends."""

    def __init__(self, lock: filelock.BaseFileLock | threading.Lock) -> None:
        self._lock = lock
        self._held = False

    def acquire(self) -> None:
        self._lock.acquire()
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()

    def close(self) -> None:
        self.release()


def _file_lock(path: Path) -> _HeldLock:
    """A lock file beside the SQLite database (processes on one machine)."""
    try:  # fail now, with the fix, rather than at the first trial
        path.touch(exist_ok=True)
    except OSError as exc:
        raise AutomtlError(f"{path}: cannot create the workers' lock file beside the SQLite "
                           f"database ({exc.strerror}); make the folder writable") from None
    return _HeldLock(filelock.FileLock(path, thread_local=False))


class _AdvisoryLock:
    """A PostgreSQL session advisory lock (freed by the server when a worker's connection dies)."""

    def __init__(self, url: str, key: int) -> None:
        self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self._conn: sa.Connection | None = None
        self._key = key
        self._held = False

    def _connection(self) -> sa.Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def acquire(self) -> None:
        self._connection().execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        self._held = True

    def release(self) -> None:
        if self._held and self._conn is not None:
            self._held = False
            self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})

    def close(self) -> None:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            self.release()
        if self._conn is not None:
            self._conn.close()
        self._engine.dispose()


def study_lock(url: str, study_name: str) -> StudyLock:
    """The cross-process lock of one study in the storage at `url` (through a storage proxy:
    held on the proxy host, which takes the database's lock)."""
    if is_proxy_url(url):
        from automtl.search.proxy import ProxyLock

        return ProxyLock(url, study_name)
    path = sqlite_path(url)
    if path is not None:
        return _file_lock(path.with_name(path.name + "-lock"))
    backend = sa.engine.make_url(url).get_backend_name()
    if backend == "postgresql":
        digest = hashlib.sha1(f"automtl-study:{study_name}".encode()).digest()
        return _AdvisoryLock(url, int.from_bytes(digest[:8], "big", signed=True))
    # other backends: serialises this process only (documented limitation)
    return _HeldLock(threading.Lock())


__all__ = ["StudyLock", "study_lock"]
