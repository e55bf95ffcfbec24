"""A real, throwaway PostgreSQL server for the distributed-search tests.

`PostgresServer` runs Debian's `initdb`/`pg_ctl` into a temporary directory, listens on
127.0.0.1 and a free port (no unix socket outside the temp dir), requires a password (so the
tests can check that passwords never reach the output), and is stopped and deleted afterwards.
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user.

The session fixtures `pg_server` / `pg_url` live in `conftest.py` (tests marked `postgres`).
When the binaries are missing the tests are skipped on a developer machine but FAIL under
`CI=true`: CI installs Debian's `postgresql` (scripts/system_deps.sh) and must run them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

PG_USER = "automtl"
# A password with URL-special characters: masking must cope with them.
PG_PASSWORD = "s3cr3t-Pw.9"


def pg_bin() -> Path | None:
    """Folder of initdb/pg_ctl: $PG_BIN, the newest /usr/lib/postgresql/*/bin, or $PATH."""
    env = os.environ.get("PG_BIN")
    if env and (Path(env) / "initdb").exists():
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temp dir; `url(db)` gives a SQLAlchemy URL (psycopg 3)."""

    def __init__(self, bin_dir: Path, max_connections: int = 100) -> None:
        self.bin = bin_dir
        self.max_connections = max_connections
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="automtl-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_root:  # postgres refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        r = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", PG_USER,
                      f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                      "--no-instructions")
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip() or r.stdout.strip()}")
        # Small, fast, local-only: fsync off (throwaway data); 100 connections unless asked for more.
        opts = (f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off -c max_connections={self.max_connections}")
        r = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                      "-o", opts, "-w", "-t", "60", "start")
        if r.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()} {log[-500:]}")

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                      "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return (f"postgresql+psycopg://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/"
                f"{database}")

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import sqlalchemy as sa

        name = "t_" + uuid.uuid4().hex[:12]
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)


def missing(reason: str) -> None:
    """Skip (fail under CI=true) because PostgreSQL cannot run here."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"PostgreSQL is required in CI: {reason} (run scripts/system_deps.sh)",
                    pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")
