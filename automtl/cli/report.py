"""`automtl report`: write the static, offline HTML report of a study."""

from __future__ import annotations

from pathlib import Path

import typer

from automtl.cli._common import console
from automtl.cli._options import DEFAULT_STORAGE, Storage, Study


def report(
    study: Study,
    storage: Storage = DEFAULT_STORAGE,
    output: Path = typer.Option(Path("report.html"), "-o", "--output",
                                help="HTML file to write (self-contained, works offline)."),
) -> None:
    """Write one self-contained HTML report (summary table + all figures) of a study."""
    from automtl.report import write_report  # plotly import only when the command runs

    path = write_report(storage, study, output)
    console.print(f"report written to {path}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add `automtl report` to the CLI."""
    app.command("report")(report)
