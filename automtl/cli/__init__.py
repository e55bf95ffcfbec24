"""The `automtl` command line (Typer). Every command parses, calls one library function, prints.

Command groups live in one module each (`automtl/cli/<group>.py`) and register themselves on
`app` via `register(app)`. User errors (`AutomtlError`) are printed as one line, exit code 2.
"""

from __future__ import annotations

import pkgutil
import sys
from importlib import import_module

import typer

from automtl import __version__
from automtl.cli._common import console, err_console, handle_errors

app = typer.Typer(
    name="automtl",
    help="AutoML for multi-task recommendation models: search MTL architectures, losses and "
    "task weights; see the Pareto front across task AUCs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"automtl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """automtl command line."""


# Each public module of this package defines `register(app)`; this order is the --help order,
# modules not listed come after it alphabetically.
_ORDER = ["search", "worker", "study", "studies", "pareto", "reeval", "report", "dashboard",
          "export", "train", "data"]


def _command_modules() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted(names, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))


for _name in _command_modules():
    import_module(f"automtl.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, map user errors to one line + exit code 2."""
    return handle_errors(lambda: app(args=argv, prog_name="automtl", standalone_mode=False))


__all__ = ["app", "console", "err_console", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
