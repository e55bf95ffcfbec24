"""Option types shared by the commands (`Annotated` Typer options): one definition per option,
so `--storage` reads `$AUTOMTL_STORAGE` and says so the same way in every command."""

from __future__ import annotations

from typing import Annotated

import typer

from automtl.search.defaults import DEFAULT_STORAGE, STORAGE_ENV

STORAGE_HELP = f"Database URL (Optuna RDB storage), e.g. {DEFAULT_STORAGE} (or ${STORAGE_ENV})."

Study = Annotated[str, typer.Option("--study", help="Study name (see `automtl studies`).")]
Storage = Annotated[str, typer.Option("--storage", envvar=STORAGE_ENV, help=STORAGE_HELP)]


__all__ = ["DEFAULT_STORAGE", "STORAGE_ENV", "STORAGE_HELP", "Storage", "Study"]
