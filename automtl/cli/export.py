"""`automtl export`: write a chosen trial of a study as a config, a foreign-stack config or
script, or a trained model (ONNX / TorchScript)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from automtl.cli._common import console, err_console
from automtl.cli._options import DEFAULT_STORAGE, DataDir, Device, Storage, Study

FORMAT_HELP = ("yaml | json (automtl TrialConfig, for `automtl train --config`), fuxictr (folder "
               "with model_config.yaml + dataset_config.yaml), torch-rechub (training script), "
               "onnx | torchscript (trained model).")


def export_command(
    study: Study,
    storage: Storage = DEFAULT_STORAGE,
    format: str = typer.Option(..., "--format", "-f", help=FORMAT_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (fuxictr: output folder)."),
    trial: Optional[int] = typer.Option(None, "--trial", min=0, help="Export this completed trial "
                                        "(with --weights/--pick/--min: a point inside this "
                                        "preference-conditioned trial)."),
    pick: Optional[str] = typer.Option(None, "--pick", help="Choose by rule: knee (of the "
                                       "normalised front)."),
    weights: Optional[list[str]] = typer.Option(None, "--weights", help="Best weighted sum of "
                                                "validation AUCs, e.g. ctr=0.7,cvr=0.3 (with "
                                                "--trial N: the task-weight vector a "
                                                "conditioned trial is served at)."),
    minimum: Optional[list[str]] = typer.Option(None, "--min", help="Lower bound, e.g. ctr=0.72 "
                                                "(repeatable; with --maximize)."),
    maximize: Optional[str] = typer.Option(None, "--maximize", help="Objective to maximise "
                                           "under the --min bounds."),
    data_dir: DataDir = None,
    write_data: Optional[Path] = typer.Option(None, "--write-data", help="fuxictr/torch-rechub: "
                                              "also write train/val/test CSVs here."),
    retrain: bool = typer.Option(False, "--retrain", help="onnx/torchscript: retrain even if the "
                                 "search saved a checkpoint."),
    device: Device = None,
    weights_input: bool = typer.Option(False, "--weights-input", help="onnx/torchscript of a "
                                       "conditioned trial: take the task-weight vector as an "
                                       "input (task_weights [B, T]) instead of baking it in."),
) -> None:
    """Export one trial of a study, chosen by --trial, --pick, --weights or --min/--maximize."""
    from automtl.errors import AutomtlError
    from automtl.export import export_trial
    from automtl.search.selection import parse_selection

    rule = parse_selection(trial=trial, pick=pick, weights=weights, minimums=minimum,
                           maximize=maximize)
    if rule is None:
        raise AutomtlError("choose a trial: --trial N, --pick knee, --weights ctr=0.7,cvr=0.3, "
                           "or --min ctr=0.72 --maximize cvr")
    from automtl.cli._progress import LazyEpochProgress

    progress = LazyEpochProgress(err_console)
    try:
        result = export_trial(storage, study, rule, format, out, data_dir=data_dir,
                              write_data=write_data, retrain=retrain, device=device,
                              callbacks=[progress], weights_input=weights_input)
    finally:
        progress.close()
    chosen = result.chosen
    values = ", ".join(f"{k} {v:.4f}" for k, v in chosen.row.values.items())
    console.print(f"trial {chosen.trial_number} ({chosen.rule}): val {values or 'not stored'}",
                  highlight=False)
    if chosen.row.weights is not None:
        vec = " ".join(f"{k}={v:.4g}" for k, v in chosen.row.weights.items())
        console.print(f"task weights: {vec}", highlight=False)
    if result.model_source == "checkpoint":
        console.print(f"model: the trial's checkpoint {chosen.row.meta.checkpoint}",
                      highlight=False, soft_wrap=True)
    elif result.model_source == "retrained":
        again = ", ".join(f"{k} {result.retrain_val[k]:.4f}" for k in chosen.row.values
                          if result.retrain_val and k in result.retrain_val)
        console.print(f"model: retrained from the config: val {again}", highlight=False)
    for line in result.dropped:
        err_console.print(f"[yellow]dropped:[/] {line}", highlight=False, soft_wrap=True)
    for line in result.notes:
        err_console.print(f"note: {line}", highlight=False, soft_wrap=True)
    for path in result.paths:
        console.print(f"wrote {path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `automtl export` to the CLI."""
    app.command("export")(export_command)
