"""Option types shared by the commands (`Annotated` Typer options): one definition per option,
so `--storage` reads `$AUTOMTL_STORAGE` and says so the same way in every command."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from automtl.search.defaults import DEFAULT_STORAGE, STORAGE_ENV

STORAGE_HELP = (f"Database URL (Optuna RDB storage), e.g. {DEFAULT_STORAGE}, or grpc://HOST:PORT of "
                f"`automtl storage-proxy` (or ${STORAGE_ENV}).")
DATA_ON_HELP = ("Where the data lives during training: device (resident), host (streamed "
                "batch by batch) or auto (the memory plan: resident what fits).")

Study = Annotated[str, typer.Option("--study", help="Study name (see `automtl studies`).")]
Storage = Annotated[str, typer.Option("--storage", envvar=STORAGE_ENV, help=STORAGE_HELP)]
Device = Annotated[Optional[str], typer.Option(
    "--device", help="auto, cpu, cuda or cuda:N (training and retraining).")]
DataDir = Annotated[Optional[str], typer.Option(
    "--data-dir", help="Folder of the dataset files (default: $AUTOMTL_DATA/<name> or the "
    "cache).")]
# --data-on stays a string checked by `use_data_on` (its message names the accepted values).
DataOn = Annotated[Optional[str], typer.Option("--data-on", help=DATA_ON_HELP)]
# --timeout: finite and > 0 is checked by `check_seconds` (click's ranges let NaN through).
Timeout = Annotated[Optional[float], typer.Option(
    "--timeout", help="Stop starting new trials after this many seconds.")]
Seeds = Annotated[int, typer.Option(
    "--seeds", min=1, help="Seeds per re-evaluated config (stored seeds are skipped, so a rerun "
    "resumes).")]


__all__ = ["DATA_ON_HELP", "DEFAULT_STORAGE", "STORAGE_ENV", "STORAGE_HELP", "DataDir", "DataOn",
           "Device", "Seeds", "Storage", "Study", "Timeout"]
