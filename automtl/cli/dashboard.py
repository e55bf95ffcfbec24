"""`automtl dashboard`: a local, read-only web dashboard of a study."""

from __future__ import annotations

import math

import typer

from automtl.cli._common import console, err_console
from automtl.cli._options import DEFAULT_STORAGE, Storage, Study
from automtl.errors import AutomtlError


def dashboard(
    study: Study,
    storage: Storage = DEFAULT_STORAGE,
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Interface to bind; keep 127.0.0.1 unless you mean to share."),
    port: int = typer.Option(8080, "--port", min=0, max=65535,
                            help="TCP port (0: any free port, printed)."),
    refresh: float = typer.Option(5.0, "--refresh", min=0.5,
                                  help="Seconds between checks for new trials."),
) -> None:
    """Serve the study's figures and trials table at http://HOST:PORT (read-only, live)."""
    from automtl.report.dashboard import serve

    if not math.isfinite(refresh):
        raise AutomtlError(f"--refresh {refresh}: must be a finite number of seconds >= 0.5")
    if host in ("0.0.0.0", "::"):
        err_console.print(f"[bold red]WARNING:[/] --host {host} serves this dashboard (study "
                          "names, configs, metrics) without a password to every machine that "
                          "can reach this one; use 127.0.0.1 and an SSH tunnel unless the network "
                          "is yours", highlight=False, soft_wrap=True)

    def announce(url: str) -> None:
        console.print(f"automtl dashboard of study {study!r}: {url} (read-only; Ctrl+C to stop)",
                      markup=False, highlight=False)

    serve(storage, study, host=host, port=port, refresh_s=refresh, announce=announce)


def register(app: typer.Typer) -> None:
    """Add `automtl dashboard` to the CLI."""
    app.command("dashboard")(dashboard)
