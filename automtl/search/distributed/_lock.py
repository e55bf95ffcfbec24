"""The per-study lock: a cross-process mutex around "count trial slots, then create a trial".

SQLite: a lock file beside the database (`filelock`, flock(2) on POSIX: processes on one machine).
PostgreSQL: a session advisory lock, which the server frees when a worker's connection dies.
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
from automtl.search.store import sqlite_path


class StudyLock(Protocol):
    """A cross-process mutex around "count trial slots, then create a trial"."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class _FileLock:
    """A lock file beside the SQLite database; `release` is idempotent."""

    def __init__(self, path: Path) -> None:
        try:  # fail now, with the fix, rather than at the first trial
            path.touch(exist_ok=True)
        except OSError as exc:
            raise AutomtlError(f"{path}: cannot create the workers' lock file beside the SQLite "
                               f"database ({exc.strerror}); make the folder writable") from None
        self._lock = filelock.FileLock(path, thread_local=False)
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


class _ThreadLock:
    """Fallback for other backends: serialises this process only (documented limitation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
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


def study_lock(url: str, study_name: str) -> StudyLock:
    """The cross-process lock of one study in the storage at `url`."""
    path = sqlite_path(url)
    if path is not None:
        return _FileLock(path.with_name(path.name + "-lock"))
    backend = sa.engine.make_url(url).get_backend_name()
    if backend == "postgresql":
        digest = hashlib.sha1(f"automtl-study:{study_name}".encode()).digest()
        return _AdvisoryLock(url, int.from_bytes(digest[:8], "big", signed=True))
    return _ThreadLock()


__all__ = ["StudyLock", "study_lock"]
