"""The client side of a ``grpc://host:port`` storage: Optuna's `GrpcStorageProxy` with
heartbeats, automtl's tables (`RemoteStore`) and the study lock (`ProxyLock`), all through the
proxy; the worker opens no database connection of its own."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from automtl.errors import AutomtlError
from automtl.search.front import FrontRow, SweepRow, front_points
from automtl.search.proxy._wire import (
    CALL_PATH,
    CONNECT_TIMEOUT_S,
    HOLD_PATH,
    address,
    decode,
    encode,
    require_grpc,
    rpc_error,
)


class ProxyConnection:
    """One channel to the proxy at `url` and automtl's calls on it (shared per process)."""

    _open: dict[str, "ProxyConnection"] = {}
    _guard = threading.Lock()

    def __init__(self, url: str) -> None:
        grpc = require_grpc(url)
        self.url = url
        self.host, self.port = address(url)
        self.channel = grpc.insecure_channel(f"{self.host}:{self.port}",
                                             options=[("grpc.max_receive_message_length", -1)])
        self._call = self.channel.unary_unary(CALL_PATH)
        self._hold = self.channel.unary_stream(HOLD_PATH)
        self.info: dict[str, Any] = self.call("info", timeout=CONNECT_TIMEOUT_S)

    @classmethod
    def of(cls, url: str) -> "ProxyConnection":
        """The process's connection to `url` (checked with the proxy on first use)."""
        key = url.strip().lower()
        with cls._guard:
            conn = cls._open.get(key)
            if conn is None:
                conn = cls._open[key] = cls(url)
            return conn

    def call(self, op: str, timeout: float | None = None, **args: Any) -> Any:
        import grpc

        try:
            reply = self._call(encode({"op": op, "args": args}), timeout=timeout)
        except grpc.RpcError as exc:
            raise rpc_error(self.url, exc) from None
        return (decode(reply) or {}).get("result")

    def hold(self, study_name: str) -> Any:
        """Block until this process holds the study lock; returns the call (cancel = release)."""
        import grpc

        stream = self._hold(encode({"study": study_name}))
        try:
            next(stream)
        except grpc.RpcError as exc:
            raise rpc_error(self.url, exc) from None
        return stream


def _int_keys(d: dict[str, Any] | None) -> dict[int, Any]:
    return {int(k): v for k, v in (d or {}).items()}


class ProxyStorage(optuna.storages.GrpcStorageProxy, BaseHeartbeat):
    """Optuna's gRPC client storage, plus heartbeats (recorded and aged on the proxy host), so a
    dead worker's trial is failed and retried as with a direct RDB storage. Optuna's
    `study.optimize` runs heartbeats only for a `BaseHeartbeat` (its one interface for them,
    in a private module), hence the base class."""

    def __init__(self, url: str, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None,
                 heartbeat_stale_trial_callback: Callable[..., None] | None = None) -> None:
        self.url = url
        self.conn = ProxyConnection.of(url)
        self._interval, self._grace = heartbeat_interval, grace_period
        self._stale_callback = heartbeat_stale_trial_callback
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(host=self.conn.host, port=self.conn.port)

    def __repr__(self) -> str:
        return f"ProxyStorage({self.url!r})"

    def record_heartbeat(self, trial_id: int) -> None:
        self.conn.call("record_heartbeat", trial_id=int(trial_id))

    def heartbeat_ages(self, study_name: str, numbers: Iterable[int]) -> dict[int, float]:
        """Trial number -> seconds since its last heartbeat (the database's clock)."""
        return _int_keys(self.conn.call("heartbeat_ages", study_name=study_name,
                                        numbers=[int(n) for n in numbers]))

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        grace = self._grace if self._grace is not None else 2 * (self._interval or 0)
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        ages = self.heartbeat_ages(self.get_study_name_from_id(study_id),
                                   [t.number for t in running])
        return [self.get_trial_id_from_study_id_trial_number(study_id, t.number)
                for t in running if ages.get(t.number, -1.0) > grace]

    def get_heartbeat_interval(self) -> int | None:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[..., None] | None:
        return self._stale_callback


class RemoteStore:
    """automtl's tables through the proxy: the methods of `automtl.search.store.Store`, run on
    the proxy host (`Store(url)` returns one for a ``grpc://`` URL). `readonly`: writes are
    refused here, as the read-only engine refuses them for a database URL."""

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = url
        self.readonly = readonly
        self.conn = ProxyConnection.of(url)

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    def dispose(self) -> None:
        """Nothing to close: the connection is the process's, shared."""

    def _write(self, op: str, **args: Any) -> Any:
        if self.readonly:
            raise AutomtlError(f"{op} through {self.url}: this store was opened read-only")
        return self.conn.call(op, **args)

    def record_epoch(self, study_name: str, trial_number: int, epoch: int,
                     metrics: dict[str, float]) -> None:
        self._write("record_epoch", study_name=study_name, trial_number=int(trial_number),
                    epoch=int(epoch), metrics={str(k): float(v) for k, v in metrics.items()})

    def epoch_history(self, study_name: str) -> dict[int, list[dict[str, float]]]:
        return _int_keys(self.conn.call("epoch_history", study_name=study_name))

    def rung_values(self, study_name: str, epoch: int,
                    metrics: Iterable[str]) -> dict[int, dict[str, float]]:
        return _int_keys(self.conn.call("rung_values", study_name=study_name, epoch=int(epoch),
                                        metrics=list(metrics)))

    def refresh_front(self, study: optuna.Study) -> list[FrontRow]:
        return [FrontRow(**r) for r in self._write("refresh_front", study_name=study.study_name)]

    def front(self, study_name: str) -> list[FrontRow]:
        return [FrontRow(**r) for r in self.conn.call("front", study_name=study_name)]

    def front_version(self, study_name: str) -> int:
        return int(self.conn.call("front_version", study_name=study_name))

    def point_front(self, study: optuna.Study) -> list[FrontRow]:
        from automtl.search.storage import objective_names

        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return front_points(done, self.sweeps(study.study_name), objective_names(study))

    def record_sweep(self, study_name: str, trial_number: int, points: list[dict[str, Any]],
                     objectives: list[str]) -> None:
        self._write("record_sweep", study_name=study_name, trial_number=int(trial_number),
                    points=points, objectives=list(objectives))

    def sweeps(self, study_name: str) -> dict[int, list[SweepRow]]:
        raw = _int_keys(self.conn.call("sweeps", study_name=study_name))
        return {n: [SweepRow(**p) for p in points] for n, points in raw.items()}

    def record_reeval(self, study_name: str, trial_number: int, seed: int,
                      val: dict[str, float], test: dict[str, float]) -> None:
        self._write("record_reeval", study_name=study_name, trial_number=int(trial_number),
                    seed=int(seed), val=val, test=test)

    def reeval_seeds(self, study_name: str, trial_number: int) -> set[int]:
        return {int(s) for s in self.conn.call("reeval_seeds", study_name=study_name,
                                               trial_number=int(trial_number))}

    def reeval(self, study_name: str) -> dict[int, dict[str, dict[str, float]]]:
        return _int_keys(self.conn.call("reeval", study_name=study_name))

    def row_counts(self, study_name: str) -> dict[str, int]:
        return dict(self.conn.call("row_counts", study_name=study_name))

    def delete_study(self, study_name: str) -> None:
        self._write("delete_study", study_name=study_name)

    def running_epochs(self, study_name: str, trials: Sequence[int]) -> dict[int, int]:
        """Trial -> last recorded epoch, for the given trials."""
        return _int_keys(self.conn.call("running_epochs", study_name=study_name,
                                        trials=[int(t) for t in trials]))


class ProxyLock:
    """The per-study lock, held on the proxy host for as long as this client's call is open
    (a worker that dies drops its connection, and the proxy releases the lock)."""

    def __init__(self, url: str, study_name: str) -> None:
        self.conn = ProxyConnection.of(url)
        self.study_name = study_name
        self._call: Any = None

    def acquire(self) -> None:
        self._call = self.conn.hold(self.study_name)

    def release(self) -> None:
        if self._call is not None:
            call, self._call = self._call, None
            call.cancel()

    def close(self) -> None:
        self.release()


__all__ = ["ProxyConnection", "ProxyLock", "ProxyStorage", "RemoteStore"]
