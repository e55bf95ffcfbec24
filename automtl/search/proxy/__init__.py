"""Optuna's gRPC storage proxy as an automtl storage: ``--storage grpc://host:port``.

`automtl storage-proxy --storage DATABASE_URL` (`start_proxy`) serves one database to many
workers: every worker talks gRPC to the proxy and only the proxy holds database connections, so
their count no longer grows with the number of workers.

Design: automtl writes its own tables (per-epoch metrics, Pareto front and its version/lock row,
sweep points, re-evaluations) and takes a per-study lock around "count trial slots, create a
trial"; a proxied worker has no database connection for either. Two ways were weighed:

(a) keep automtl's per-trial data in Optuna trial attributes (they travel through Optuna's own
    proxy service) and compute the front from the trials on every read. It still needs the study
    lock (Optuna's service has no lock or compare-and-set, so the target count could overshoot),
    cannot store re-evaluations (Optuna refuses attributes on finished trials), and makes every
    reader handle two layouts: a study run through the proxy would look different from the same
    study run directly, and mixed direct + proxied workers would disagree.
(b) run automtl's table writes on the proxy host: the proxy also serves automtl's own small gRPC
    service (`_server.ProxyService`), whose operations are `Store`'s methods, heartbeats and the
    study lock, executed there with the proxy's connections.

(b) is the simpler correct one: one code path for the tables (`Store` itself, on the proxy
host), byte-identical databases for SQLite/PostgreSQL with or without the proxy, direct and
proxied workers on one study (the proxy takes the same advisory lock / lock file), and read
commands need nothing new (`Store(url)` and `Store.readonly(url)` return a `RemoteStore`).
Heartbeats go the same way: Optuna's gRPC client has none, so `ProxyStorage` records them and
reads their ages on the proxy host, and Optuna's stale-trial handling (FAIL + one retry) runs
unchanged. The proxy refuses a foreign, corrupt or incompatible database when it starts and again
for every client that connects (`info`); a study automtl did not create is refused by the same
`require_automtl_study` check, which reads its attributes through the proxy.

grpcio and protobuf are the `automtl[grpc]` extra; nothing here imports them before a
``grpc://`` URL or the proxy command is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ProxyConnection": "_client", "ProxyLock": "_client", "ProxyStorage": "_client",
    "RemoteStore": "_client", "ProxyServer": "_server", "ProxyService": "_server",
    "start_proxy": "_server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'automtl.search.proxy' has no attribute {name!r}")
    return getattr(import_module(f"automtl.search.proxy.{module}"), name)


def __dir__() -> list[str]:
    return __all__
