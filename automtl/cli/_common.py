"""Shared console objects and the error boundary of the CLI."""

from __future__ import annotations

import math
import sys
from typing import Callable

import typer
from rich.console import Console
from rich.markup import escape

from automtl.errors import AutomtlError

console = Console()
err_console = Console(stderr=True)


def check_seconds(value: float, option: str) -> float:
    """A duration option: a finite number of seconds > 0 (click's ranges let NaN through)."""
    if not math.isfinite(value) or value <= 0:
        raise AutomtlError(f"{option} {value}: must be a finite number of seconds > 0")
    return value


def use_data_on(data_on: str | None) -> None:
    """Validate `--data-on` and pass it on through $AUTOMTL_DATA_ON (read by every `fit` of this
    process and of the worker processes it starts); show the library's data-plan lines."""
    import logging
    import os

    if data_on is not None:
        text = data_on.strip().lower()
        if text not in ("auto", "device", "host"):
            raise AutomtlError(f"--data-on {data_on!r}: use auto, device or host")
        os.environ["AUTOMTL_DATA_ON"] = text
    log = logging.getLogger("automtl.train")
    if not any(getattr(h, "_automtl", False) for h in log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._automtl = True  # type: ignore[attr-defined]
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def handle_errors(run: Callable[[], object]) -> int:
    """Run a Typer app in non-standalone mode; print user errors as one line, no traceback."""
    from typer._click import exceptions as click_exc  # typer vendors click

    try:
        result = run()
    except AutomtlError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)
        return exc.exit_code
    except click_exc.UsageError as exc:  # one line, not click's usage + hint + error block
        ctx = exc.ctx
        where = ctx.command_path if ctx is not None else "automtl"
        err_console.print(f"[bold red]error:[/] {escape(where)}: {escape(exc.format_message())} "
                          f"(see `{escape(where)} --help`)", highlight=False, soft_wrap=True)
        return exc.exit_code
    except click_exc.ClickException as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False,
                          soft_wrap=True)
        return exc.exit_code
    except typer.Abort:  # typer.Abort: the vendored click has no Abort
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:
        grpc = sys.modules.get("grpc")  # loaded only when a grpc:// storage is in use
        if grpc is None or not isinstance(exc, grpc.RpcError):
            raise
        code = getattr(exc.code(), "name", exc.code())  # type: ignore[attr-defined]
        detail = (exc.details() or "").strip().splitlines()  # type: ignore[attr-defined]
        err_console.print(f"[bold red]error:[/] the storage proxy stopped answering ({code}: "
                          f"{escape(detail[0] if detail else '?')}); check that `automtl "
                          "storage-proxy` still runs and rerun", highlight=False, soft_wrap=True)
        return 2
    return result if isinstance(result, int) else 0
