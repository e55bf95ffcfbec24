"""The proxy process (`automtl storage-proxy`): Optuna's gRPC storage service and automtl's own
service on one port, both over ONE set of database connections.

automtl's service runs on the proxy host what a worker would otherwise do over its own
connection: the `Store` methods (per-epoch metrics, sweep points, re-evaluations, the Pareto
front refresh behind its lock row), heartbeats and their ages, and the per-study lock (the same
PostgreSQL advisory lock / lock file that direct workers take, so direct and proxied workers
can share a study). Every answer is JSON; errors a user caused travel as one masked line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import optuna

import automtl
from automtl.errors import AutomtlError
from automtl.search.dbopen import check_database
from automtl.search.dburl import is_proxy_url, mask_url, scrub
from automtl.search.locks import study_lock
from automtl.search.proxy._wire import CALL, HOLD, SERVICE, decode, encode, require_grpc
from automtl.search.storage import enable_sqlite_wal, make_storage
from automtl.search.store import Store, read_or
from automtl.search.tables import metadata

_log = logging.getLogger("automtl.proxy")


class _StudyGate:
    """One study's lock on the proxy: a thread lock queues this proxy's clients, so only the
    holder keeps the database-level lock (one connection per study, not one per waiter)."""

    def __init__(self, url: str, study_name: str) -> None:
        self.local = threading.Lock()
        self.url, self.study_name = url, study_name
        self._backend: Any = None

    def acquire_backend(self) -> None:
        if self._backend is None:
            self._backend = study_lock(self.url, self.study_name)
        self._backend.acquire()

    def release_backend(self) -> None:
        if self._backend is not None:
            self._backend.release()


class ProxyService:
    """automtl's operations on the database at `url` (see the module docstring)."""

    def __init__(self, url: str, storage: optuna.storages.BaseStorage,
                 rdb: optuna.storages.RDBStorage) -> None:
        self.url, self.storage, self.rdb = url, storage, rdb
        self.store = Store(url, create=False, engine=rdb.engine)
        self._tables = False
        self._gates: dict[str, _StudyGate] = {}
        self._mutex = threading.Lock()
        self.ops: dict[str, Callable[..., Any]] = {
            "info": self.info, "refresh_front": self.refresh_front,
            "record_heartbeat": self.rdb.record_heartbeat,
            "heartbeat_ages": self.heartbeat_ages,
        }
        for name in ("record_epoch", "record_sweep", "record_reeval", "delete_study"):
            self.ops[name] = self._writer(getattr(self.store, name))
        reads: dict[str, Any] = {"epoch_history": {}, "rung_values": {}, "front": [],
                                 "front_version": 0, "sweeps": {}, "reeval_seeds": set(),
                                 "reeval": {}, "row_counts": {}, "running_epochs": {}}
        for name, default in reads.items():
            self.ops[name] = self._reader(getattr(self.store, name), default)

    # -- operations --------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Versions, the masked backend URL and its tables (refusing a foreign database)."""
        tables = check_database(self.url)
        return {"automtl": automtl.__version__, "optuna": optuna.__version__,
                "backend": mask_url(self.url), "tables": sorted(tables)}

    def refresh_front(self, study_name: str) -> Any:
        """Fold the trials not folded yet, read by id from the uncached RDB storage: the cost
        does not grow with the study, a restarted proxy has nothing to load first, and no
        second copy of the study is kept here (Optuna's service keeps its own cache). Not
        through Optuna's cache: it holds its lock while it writes (set_trial_param ...) and a
        refresh holds the front's lock row (on SQLite the database's write lock), so a writer
        and a refresher could wait on each other until SQLite's busy timeout."""
        self._ensure_tables()
        study = optuna.load_study(study_name=study_name, storage=self.rdb)
        return self.store.refresh_front(study, storage=self.rdb)

    def heartbeat_ages(self, study_name: str, numbers: list[int]) -> dict[int, float]:
        from automtl.search.stale import heartbeat_ages

        return heartbeat_ages(self.rdb.engine, study_name, [int(n) for n in numbers])

    def _ensure_tables(self) -> None:
        # automtl's tables appear on the first write, as with a direct `Store`; reads of a
        # plain-Optuna database find none and answer empty (`read_or`).
        with self._mutex:
            if not self._tables:
                metadata.create_all(self.rdb.engine)
                self._tables = True

    def _writer(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def write(**args: Any) -> Any:
            self._ensure_tables()
            return method(**args)
        return write

    def _reader(self, method: Callable[..., Any], default: Any) -> Callable[..., Any]:
        return lambda **args: read_or(lambda: method(**args), default)

    # -- gRPC handlers -----------------------------------------------------------------------

    def call(self, request: bytes, context: Any) -> bytes:
        import grpc

        msg = decode(request) or {}
        op = self.ops.get(str(msg.get("op")))
        if op is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown operation {msg.get('op')!r}")
        try:
            return encode({"result": op(**(msg.get("args") or {}))})
        except AutomtlError as exc:
            code, text = grpc.StatusCode.FAILED_PRECONDITION, str(exc)
        except Exception as exc:  # noqa: BLE001 - a client sees one masked line, we log it all
            _log.exception("automtl storage proxy: %s failed", msg.get("op"))
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            code, text = grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {first}"
        context.abort(code, scrub(text, self.url))
        raise AssertionError("unreachable")  # context.abort raises

    def hold(self, request: bytes, context: Any) -> Iterator[bytes]:
        """Hold the study lock for as long as the client keeps this call open."""
        study_name = str((decode(request) or {}).get("study"))
        with self._mutex:
            gate = self._gates.setdefault(study_name, _StudyGate(self.url, study_name))
        while not gate.local.acquire(timeout=0.5):
            if not context.is_active():  # the client gave up (or died) while waiting
                return
        try:
            done = threading.Event()
            context.add_callback(done.set)  # cancelled, finished or the client's connection died
            gate.acquire_backend()
            try:
                yield encode({"held": study_name})
                while context.is_active() and not done.wait(1.0):
                    pass
            finally:
                gate.release_backend()
        finally:
            gate.local.release()


@dataclass
class ProxyServer:
    """A started proxy: its address, and `stop()`."""

    server: Any
    host: str
    port: int
    backend: str  # masked
    threads: int
    versions: str  # "optuna X, grpcio Y"

    @property
    def address(self) -> str:
        return f"grpc://{self.host}:{self.port}"

    def stop(self, grace: float | None = 5.0) -> None:
        self.server.stop(grace).wait()

    def wait(self) -> None:
        self.server.wait_for_termination()


def start_proxy(url: str, *, host: str = "127.0.0.1", port: int = 13000,
                threads: int = 128) -> ProxyServer:
    """Serve the database at `url` on `host:port` (port 0: any free port) and return at once.

    The database is checked first like any automtl open (`dbopen.check_database`): a foreign,
    corrupt or incompatible one is refused before anything is served or written.
    """
    grpc = require_grpc(url)
    if is_proxy_url(url):
        raise AutomtlError(f"--storage {url}: the proxy needs a database URL (postgresql+psycopg:"
                           "//... or sqlite:///...), not another proxy")
    if threads < 4:
        raise AutomtlError(f"--threads {threads}: must be >= 4 (each waiting worker holds one)")
    rdb = make_storage(url)
    enable_sqlite_wal(url)  # one SQLite file, many server threads (and maybe direct workers)
    storage = optuna.storages.get_storage(rdb)  # Optuna's in-process trial cache
    # Optuna's own service beside automtl's on one server: the public `run_grpc_proxy_server`
    # blocks and serves only Optuna's, so the server is built from the same two parts it uses.
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    service = ProxyService(url, storage, rdb)
    server = grpc.server(ThreadPoolExecutor(max_workers=threads))
    api_pb2_grpc.add_StorageServiceServicer_to_server(OptunaStorageProxyService(storage), server)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        CALL: grpc.unary_unary_rpc_method_handler(service.call),
        HOLD: grpc.unary_stream_rpc_method_handler(service.hold),
    }),))
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:  # grpc could not bind
        raise AutomtlError(f"--host {host} --port {port}: cannot listen there ({exc}); pick "
                           "another --port or free that one") from None
    server.start()
    return ProxyServer(server, host, bound, mask_url(url), threads,
                       f"optuna {optuna.__version__}, grpcio {grpc.__version__}")


__all__ = ["ProxyServer", "ProxyService", "start_proxy"]
