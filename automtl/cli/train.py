"""`automtl train`: train one trial from a YAML config and print its per-task metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from automtl.cli._common import console, use_data_on
from automtl.cli._options import DataDir, DataOn, Device
from automtl.errors import AutomtlError, TrialFailedError

if TYPE_CHECKING:
    from automtl.config import TrialConfig
    from automtl.train.loop import TrainResult


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def metrics_table(result: TrainResult, task_rows: list[tuple[str, bool]],
                  bayes: dict[str, float] | None) -> Table:
    """Per-task table: val/test AUC and logloss, Bayes AUC when the data has true probabilities."""
    table = Table(title=f"best epoch {result.best_epoch} of {result.epochs_run}")
    for col in ("task", "val AUC", "test AUC", "val logloss", "test logloss"):
        table.add_column(col, justify="left" if col == "task" else "right")
    if bayes is not None:
        table.add_column("Bayes AUC (test)", justify="right")
    for name, has_logloss in task_rows:
        row = [name, _fmt(result.val.get(f"{name}_auc")), _fmt(result.test.get(f"{name}_auc")),
               _fmt(result.val.get(f"{name}_logloss")) if has_logloss else "",
               _fmt(result.test.get(f"{name}_logloss")) if has_logloss else ""]
        if bayes is not None:
            row.append(_fmt(bayes.get(f"{name}_auc")))
        table.add_row(*row)
    return table


def sweep_table(result: "TrainResult", metrics: list[str]) -> Table:
    """The validation/test metrics of a conditioned model at each task-weight vector."""
    table = Table(title="task-weight sweep (◀ the point reported above)", title_justify="left")
    table.add_column("task weights")
    for m in metrics:
        table.add_column(f"{m.removesuffix('_auc')}\nval", justify="right")
        table.add_column(f"{m.removesuffix('_auc')}\ntest", justify="right")
    for i, p in enumerate(result.sweep):
        mark = " ◀" if i == result.sweep_index else ""
        cells = [" ".join(f"{k}={v:.3g}" for k, v in p.weights.items()) + mark]
        for m in metrics:
            cells += [f"{p.val.get(m, float('nan')):.4f}", f"{p.test.get(m, float('nan')):.4f}"]
        table.add_row(*cells)
    return table


def train_command(
    config: Path = typer.Option(..., "--config", "-c", help="Trial config YAML (model, loss, train, data)."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset name (overrides data.name; "
                                          "data.options are kept only for the same dataset)."),
    data_dir: DataDir = None,
    device: Device = None,
    out: Path | None = typer.Option(None, "--out", help="Save the best weights (model.pt) and config.yaml here."),
    data_on: DataOn = None,
) -> None:
    """Train one trial: progress per epoch, then per-task val/test AUC and logloss."""
    from rich.progress import Progress

    from automtl.cli._progress import EpochProgress, epoch_columns
    from automtl.config import load_trial_config
    from automtl.data import bayes_auc, check_data_config, get_info, load_dataset
    from automtl.errors import config_file
    from automtl.train import fit, save_trained

    use_data_on(data_on)
    cfg: TrialConfig = load_trial_config(config)
    own_data = dataset is None or dataset == cfg.data.name  # else the name is --dataset's
    if dataset is not None and dataset != cfg.data.name:
        cfg.data.name, cfg.data.options = dataset, {}
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    if device is not None:
        cfg.train.device = device
    if own_data:
        check_data_config(cfg.data, str(config))
    # a key found wrong only against the data or the model (a task name, a data option) is
    # still a line of the file: say which file; --device's value is the option's, not the file's
    generated = own_data and not get_info(cfg.data.name).needs_files  # synthetic: options only
    with config_file(config, unless=("train.device",) if device is not None else (),
                     data_too=generated):
        data = load_dataset(cfg.data)
        try:
            with Progress(*epoch_columns(), console=console, transient=True) as progress:
                result = fit(cfg, data, callbacks=[EpochProgress(progress)])
        except TrialFailedError as exc:  # a failed trial is the user's config: one line
            raise AutomtlError(f"{config}: training failed: {exc}") from None
    has_truth = all(s.truth is not None for s in data.splits.values())
    bayes = bayes_auc(data, "test") if has_truth and "test" in data.splits else None
    rows = [(t.name, True) for t in data.tasks]
    rows += [(t.cond_name, False) for t in data.tasks if t.depends_on and t.cond_name]
    console.print(metrics_table(result, rows, bayes))
    if result.sweep:  # preference-conditioned: the curve, and the point reported above
        console.print(sweep_table(result, [f"{n}_auc" for n, _ in rows]))
    console.print(
        f"training: {result.samples_per_s:,.0f} samples/s on {result.device} ({result.precision}), "
        f"{result.n_params:,} parameters, {result.seconds:.1f} s in all"
    )
    if out is not None:
        folder = save_trained(out, cfg, result.model)
        console.print(f"saved {folder / 'model.pt'} and {folder / 'config.yaml'}")


def register(app: typer.Typer) -> None:
    """Add `automtl train` to the app."""
    app.command("train")(train_command)
