"""`automtl data list|info|prepare`: what datasets exist, what one holds, raw -> prepared."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from automtl.cli._common import console
from automtl.errors import DataError

data_app = typer.Typer(help="Datasets: list them, describe one, prepare raw files.",
                       no_args_is_help=True)


@data_app.command("list")
def list_command(
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Look for files here."),
) -> None:
    """Registered datasets: tasks, where the data comes from, whether the files are present."""
    from automtl.data import DATASETS, files_present, resolve_data_dir

    table = Table(title="datasets")
    for col in ("name", "tasks", "options", "source", "files"):
        table.add_column(col)
    for name, info in DATASETS.items():
        if not info.needs_files:
            present = "[green]generated[/]"
        elif files_present(name, data_dir):
            present = f"[green]present[/] {resolve_data_dir(name, data_dir)}"
        else:
            present = "[red]missing[/]"
        opts = ", ".join(f"{k}={v}" for k, v in info.options.items())
        table.add_row(name, ", ".join(info.tasks), opts, info.source, present)
    console.print(table)


def _fmt(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.4f}"


@data_app.command("info")
def info_command(
    name: str = typer.Argument("synthetic", help="Dataset name (see `automtl data list`)."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder of the dataset files."),
    option: Optional[list[str]] = typer.Option(
        None, "--option", "-o", "--data-option",
        help="Dataset option KEY=VALUE (repeatable), e.g. -o rows=20000 -o n_tasks=3."),
) -> None:
    """Rows per split, fields by kind, per-task positive rates, load time (+ Bayes AUC)."""
    import numpy as np

    from automtl.config import DataConfig
    from automtl.data import bayes_auc, load_dataset, parse_options

    cfg = DataConfig(name=name, data_dir=data_dir, options=parse_options(option or []))
    t0 = time.perf_counter()
    ds = load_dataset(cfg)
    seconds = time.perf_counter() - t0

    splits = Table(title=f"{ds.name}: splits")
    splits.add_column("split")
    splits.add_column("rows", justify="right")
    names = ds.task_names
    for t in ds.tasks:
        splits.add_column(f"{t.name} rate", justify="right")
    conds = [t for t in ds.tasks if t.depends_on and t.cond_name]
    for t in conds:
        splits.add_column(f"{t.cond_name} rate", justify="right")
    for split_name, s in ds.splits.items():
        y = np.asarray(s.labels, dtype=np.float64)
        n = len(s)
        row = [split_name, f"{n:,}"]
        row += [f"{y[:, k].mean():.4%}" if n else "-" for k in range(len(names))]
        for t in conds:
            parent = y[:, names.index(t.depends_on or "")] == 1
            k = names.index(t.name)
            row.append(f"{y[parent, k].mean():.4%}" if parent.any() else "-")
        splits.add_row(*row)
    console.print(splits)

    fields = Table(title=f"{ds.name}: fields")
    for col in ("kind", "count", "fields (vocab size / max_len)"):
        fields.add_column(col)
    sparse = ", ".join(f"{f.name} ({f.vocab_size:,})" for f in ds.sparse_features)
    dense_names = [f.name for f in ds.dense_features]
    if len(dense_names) > 10:  # e.g. AliExpress numerical_1..63
        dense_names = [*dense_names[:4], "...", *dense_names[-2:]]
    dense = ", ".join(dense_names)
    seqs = ", ".join(
        f"{f.name} ({f.vocab_size:,} / {f.max_len}"
        + (f", shares {f.shares_with})" if f.shares_with else ")")
        for f in ds.sequence_features)
    fields.add_row("sparse", str(len(ds.sparse_features)), sparse or "-")
    fields.add_row("dense", str(len(ds.dense_features)), dense or "-")
    fields.add_row("sequence", str(len(ds.sequence_features)), seqs or "-")
    console.print(fields)

    tasks = ", ".join(
        t.name + (f" (after {t.depends_on}; conditional metric {t.cond_name})" if t.depends_on
                  else "") for t in ds.tasks)
    console.print(f"tasks: {tasks}")
    if all(s.truth is not None for s in ds.splits.values()):
        bayes = Table(title="Bayes-optimal AUC (true probabilities)")
        bayes.add_column("metric")
        for split_name in ("val", "test"):
            bayes.add_column(split_name, justify="right")
        val, test = bayes_auc(ds, "val"), bayes_auc(ds, "test")
        for metric in val:
            bayes.add_row(metric, _fmt(val[metric]), _fmt(test[metric]))
        console.print(bayes)
    for key in ("dropped_cascade_noise", "noise_rows_dropped"):
        dropped = ds.meta.get(key)
        if isinstance(dropped, dict) and any(dropped.values()):
            what = ", ".join(f"{k} {v:,}" for k, v in dropped.items())
            console.print(f"[yellow]dropped purchase-without-click rows:[/] {what}")
    for key in ("source", "val", "cache"):
        if key in ds.meta:
            console.print(f"{key}: {ds.meta[key]}", highlight=False)
    console.print(f"load time: {seconds:.3f} s")


@data_app.command("prepare")
def prepare_command(
    name: str = typer.Argument(..., help="Dataset to prepare (ali-ccp)."),
    raw: Path = typer.Option(..., "--raw", help="Folder with sample_skeleton_{train,test}.csv and "
                             "common_features_{train,test}.csv (Tianchi dataset 408)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default "
                                       "$AUTOMTL_DATA/ali-ccp or ~/.cache/automtl/ali-ccp)."),
    max_len: int = typer.Option(20, "--max-len", min=1, help="Keep this many behaviour ids per "
                                "field (each costs 4 bytes per row)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=0.9,
                                       help="Share of train rows for val."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Seed of the val split."),
) -> None:
    """Convert raw Tianchi Ali-CCP files in one streaming pass (bounded memory)."""
    from rich.progress import (BarColumn, DownloadColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    from automtl.data.ali_ccp_raw import check_prepare_out, prepare_ali_ccp, raw_files

    if not math.isfinite(val_fraction):
        raise DataError(f"--val-fraction {val_fraction}: must be a number in 0 .. 0.9")
    if name != "ali-ccp":
        raise DataError(f"prepare {name!r}: only ali-ccp has a raw format to prepare; "
                        "the other datasets load their CSV files directly")
    if not raw.is_dir():
        raise DataError(f"--raw {raw}: folder not found; point it at the extracted Tianchi files")
    if out is None:
        root = os.environ.get("AUTOMTL_DATA")
        out = (Path(root).expanduser() if root else Path.home() / ".cache" / "automtl") / name
    files = raw_files(raw)
    check_prepare_out(out)  # before the progress bar: one line
    total = sum(p.stat().st_size for pair in files.values() for p in pair)
    columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               DownloadColumn(), TextColumn("{task.fields[rate]}"),  # rows/s of the file
               TimeElapsedColumn(), TimeRemainingColumn()]
    state = {"desc": "", "lines": 0, "t0": time.perf_counter()}
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("reading", total=total, rate="")

        def on_progress(desc: str, nbytes: int, nlines: int) -> None:
            if desc != state["desc"]:
                state.update(desc=desc, lines=0, t0=time.perf_counter())
            state["lines"] += nlines
            rate = state["lines"] / max(time.perf_counter() - state["t0"], 1e-9)
            progress.update(task, advance=nbytes, description=desc,
                            rate=f"{rate:,.0f} rows/s")

        report = prepare_ali_ccp(raw, out, max_len=max_len, val_fraction=val_fraction, seed=seed,
                                 progress=on_progress)
    table = Table(title=f"prepared {out}")
    for col in ("split", "rows", "noise rows dropped", "rows without user features"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split in ("train", "val", "test"):
        src = "train" if split == "val" else split
        table.add_row(split, f"{report.rows[split]:,}",
                      f"{report.noise_rows_dropped.get(split, 0):,}" if split != "val" else "",
                      f"{report.rows_without_common.get(src, 0):,}" if split != "val" else "")
    console.print(table)
    console.print(f"{sum(report.lines.values()):,} lines in {report.seconds:.1f} s "
                  f"({report.lines_per_s:,.0f} lines/s); load it with "
                  f"`automtl data info ali-ccp --data-dir {out}`", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `automtl data` command group to the app."""
    app.add_typer(data_app, name="data")
