"""`automtl storage-proxy`: serve one database to many workers through Optuna's gRPC storage
proxy (plus automtl's tables, heartbeats and study lock); workers use `--storage grpc://HOST:PORT`.
"""

from __future__ import annotations

import signal
import threading

import typer

from automtl.cli._common import console
from automtl.search.defaults import STORAGE_ENV


def storage_proxy_command(
    storage: str = typer.Option(..., "--storage", envvar=STORAGE_ENV,
                                help="Database the proxy serves, e.g. postgresql+psycopg://user:"
                                "pass@db-host/automtl (or $AUTOMTL_STORAGE)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every "
                             "interface, for workers on other machines)."),
    port: int = typer.Option(13000, "--port", min=0, max=65535, help="Port to listen on "
                             "(0: any free port, printed)."),
    threads: int = typer.Option(128, "--threads", min=4, help="Server threads; each worker "
                                "waiting for the study lock holds one, so use at least twice "
                                "the number of workers."),
) -> None:
    """Serve a study database to workers through Optuna's gRPC storage proxy (only the proxy
    connects to the database; workers, search, report, dashboard, pareto and studies take
    --storage grpc://HOST:PORT)."""
    from automtl.errors import AutomtlError
    from automtl.search.proxy import start_proxy

    if host.strip() == "":
        raise AutomtlError("--host '': give an address such as 127.0.0.1 or 0.0.0.0")
    server = start_proxy(storage, host=host, port=port, threads=threads)
    shown = "HOST" if host in ("0.0.0.0", "::", "[::]") else host
    # the backend URL only ever appears masked (server.backend)
    console.print(f"automtl storage proxy: {server.address} -> {server.backend} "
                  f"({server.versions}, {threads} threads)", highlight=False, soft_wrap=True)
    console.print(f"workers: automtl worker --study NAME --storage grpc://{shown}:{server.port}",
                  highlight=False, soft_wrap=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop(grace=5.0)
        console.print("storage proxy stopped", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `automtl storage-proxy` to the CLI."""
    app.command("storage-proxy")(storage_proxy_command)
