"""`automtl search`: run (or resume) a multi-objective search and print its Pareto front."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional

import typer

from automtl._typed import SEED_MAX
from automtl.cli._common import DATA_ON_HELP, check_seconds, console, err_console, use_data_on
from automtl.cli._options import DEFAULT_STORAGE, Storage
from automtl.cli.pareto import front_table, points_front
from automtl.search.samplers import sampler_names


def search_command(
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Preset or dataset name "
                                          "(synthetic, ali-ccp, aliexpress-nl, census-income ...)."),
    study_config: Optional[str] = typer.Option(None, "--study-config", help="Study preset YAML "
                                               "file (or a preset name)."),
    space: Optional[str] = typer.Option(None, "--space", help="Search space name (default, mmoe, "
                                        "ple, losses) or YAML file."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", min=1, help="New trials to run "
                                           "(default: the preset's)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop starting trials after "
                                            "this many seconds."),
    storage: Storage = DEFAULT_STORAGE,
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Study name (default: "
                                             "the preset's); an existing name resumes."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Optuna sampler: "
                                          f"{', '.join(sampler_names())}."),
    pruner: Optional[str] = typer.Option(None, "--pruner", help="pareto (default) or none."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs per trial."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=SEED_MAX,
                                       help="Sampler and training seed (0 .. 2^32-1)."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with the dataset's "
                                           "files (default: $AUTOMTL_DATA/<name> or the cache)."),
    data_option: Optional[list[str]] = typer.Option(None, "--data-option", help="Dataset option "
                                                    "KEY=VALUE (repeatable), e.g. rows=20000."),
    save_checkpoints: bool = typer.Option(False, "--save-checkpoints", help="Save each completed "
                                          "trial's best-epoch weights next to the database."),
    reeval_top: int = typer.Option(0, "--reeval-top", min=0, help="Afterwards retrain the K best front "
                                   "configs with --seeds seeds (mean ± std per task)."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Seeds per re-evaluated config."),
    report: Optional[Path] = typer.Option(None, "--report", help="HTML report path (default "
                                          "reports/<study>.html)."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write the HTML report."),
    workers: int = typer.Option(1, "--workers", min=1, help="Local worker processes sharing the study "
                                "(see `automtl worker`; one per --devices entry by default)."),
    devices: Optional[str] = typer.Option(None, "--devices", help="Devices of the workers, "
                                          "e.g. 0,1 (= cuda:0,cuda:1), assigned round-robin."),
    trials_per_device: int = typer.Option(1, "--trials-per-device", min=1, help="Concurrent trials "
                                          "(worker processes) per GPU of --devices, for models "
                                          "too small to fill one; CUDA only."),
    warm_start: Optional[str] = typer.Option(None, "--warm-start", help="Enqueue this study's "
                                             "Pareto front first (best mean objective first, at "
                                             "most half of --n-trials)."),
    warm_start_storage: Optional[str] = typer.Option(None, "--warm-start-storage",
                                                     help="Storage of --warm-start (default: "
                                                     "--storage)."),
    max_params: Optional[int] = typer.Option(None, "--max-params", help="Constraint: trials "
                                             "with more trainable parameters are infeasible."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="Constraint: "
                                                   "trials slower than this many ms per 1,000 "
                                                   "rows (inference, training device) are "
                                                   "infeasible."),
    cost_objective: Optional[str] = typer.Option(None, "--cost-objective", help="Third "
                                                 "objective, minimised: latency (ms per 1,000 "
                                                 "rows) or params (trainable parameters)."),
    data_on: Optional[str] = typer.Option(None, "--data-on", help=DATA_ON_HELP),
) -> None:
    """Search MTL architectures, losses and task weights; keep the Pareto front in SQL."""
    import optuna

    from automtl.data import parse_options
    from automtl.errors import AutomtlError
    from automtl.search.dburl import mask_url
    from automtl.search.naming import check_study_name
    from automtl.search.objectives import COST_OBJECTIVES
    from automtl.search.study_config import apply_overrides, study_for_dataset, study_preset

    # Every option is checked here, before the preset, the data or the database is touched.
    if dataset and study_config:
        raise AutomtlError("give --dataset or --study-config, not both")
    if timeout is not None:
        check_seconds(timeout, "--timeout")
    if study_name is not None:
        check_study_name(study_name)
    if no_report and report is not None:
        raise AutomtlError("give --report PATH or --no-report, not both")
    use_data_on(data_on)
    if sampler is not None and sampler not in sampler_names():
        raise AutomtlError(f"--sampler {sampler}: use {', '.join(sampler_names())}")
    if pruner is not None and pruner not in ("pareto", "none"):
        raise AutomtlError(f"--pruner {pruner}: use pareto or none")
    if cost_objective is not None and cost_objective not in COST_OBJECTIVES:
        raise AutomtlError(f"--cost-objective {cost_objective}: use "
                           f"{' or '.join(COST_OBJECTIVES)}")
    cfg = study_preset(study_config) if study_config else study_for_dataset(dataset or "synthetic")
    apply_overrides(cfg, {
        "space": space, "n_trials": n_trials, "timeout": timeout, "sampler": sampler,
        "pruner.kind": pruner, "epochs": epochs, "seed": seed, "data.data_dir": data_dir,
        "data.options": {**cfg.data.options, **parse_options(data_option)} if data_option
        else None,
        "max_params": max_params, "max_latency_ms": max_latency_ms,
        "cost_objective": cost_objective,
    })
    if warm_start_storage is not None and warm_start is None:
        raise AutomtlError("--warm-start-storage needs --warm-start STUDY")
    cfg.validate()
    from automtl.search.enqueue import WarmStart

    ws = WarmStart(warm_start, warm_start_storage or storage) if warm_start else None
    from automtl.data import get_info, resolve_options

    resolve_options(get_info(cfg.data.name), dict(cfg.data.options))  # typed, finite, in range
    name = study_name or cfg.name
    optuna.logging.set_verbosity(logging.WARNING)
    console.print(f"study {name!r} in {mask_url(storage)}: dataset {cfg.data.name} "
                  f"{cfg.data.options or ''}, space {cfg.space}, sampler {cfg.sampler}, pruner "
                  f"{cfg.pruner.kind}, {cfg.n_trials} trials × ≤{cfg.epochs} epochs",
                  highlight=False, soft_wrap=True)

    started = time.perf_counter()
    if workers != 1 or devices or trials_per_device != 1:  # several processes: see workers
        from automtl.cli._progress import RichWorkersView
        from automtl.search.distributed import search_with_workers

        if workers < 1:
            raise AutomtlError(f"--workers {workers}: must be >= 1")
        if save_checkpoints:
            raise AutomtlError("--save-checkpoints is not supported with --workers; drop one")
        result = search_with_workers(cfg, storage=storage, study_name=name,
                                     n_workers=workers if workers > 1 else None,
                                     devices=devices, device=device, view=RichWorkersView(console),
                                     trials_per_device=trials_per_device, warm_start=ws)
    else:
        result = _search_in_process(cfg, storage, name, device, save_checkpoints, ws)
    elapsed = time.perf_counter() - started
    _print_result(result, name, storage, elapsed, device, reeval_top, seeds, report, no_report)


def _search_in_process(cfg: Any, storage: str, name: str, device: Optional[str],
                       save_checkpoints: bool, warm_start: Any = None) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from automtl.cli._progress import RichSearchListener
    from automtl.search.runner import run_search

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20),
                  MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        listener = RichSearchListener(progress, list(cfg.objectives or []), storage)
        return run_search(cfg, storage=storage, study_name=name, device=device,
                          save_checkpoints=save_checkpoints, listener=listener,
                          warm_start=warm_start)


def _print_result(result: Any, name: str, storage: str, elapsed: float, device: Optional[str],
                  reeval_top: int, seeds: int, report: Optional[Path], no_report: bool) -> None:
    from automtl.search.reeval import reevaluate

    states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(result.states.items()))
    points = _points_front(storage, name) if result.front else None
    if points:  # conditioned trials: the front over points, each with its trial and weights
        n = sum(result.states.values())
        console.print(front_table(points, result.objectives, f"Pareto front of {name!r}: "
                                  f"{len(points)} points of {n} trials"))
    elif result.front:
        console.print(front_table(result.front, result.objectives,
                                  f"Pareto front of {name!r}: {len(result.front)} trials"))
    else:
        console.print(f"no completed trial in study {name!r} yet, so no Pareto front",
                      highlight=False)
    plural = "" if result.trials_run == 1 else "s"
    console.print(f"{result.trials_run} trial{plural} in {elapsed / 60:.1f} min ({states} in the "
                  "study)",
                  highlight=False)
    if result.interrupted:
        err_console.print("interrupted: the running trial is stored as FAIL; run the same command "
                          "again to resume", highlight=False)
    if reeval_top and not result.interrupted and result.front:
        console.print(f"re-evaluating the top {reeval_top} front configs with {seeds} seeds ...",
                      highlight=False)
        front = reevaluate(storage, name, reeval_top, seeds, device=device)
        console.print(front_table(front, result.objectives, f"Pareto front of {name!r} with "
                                  f"seed re-evaluation"))
    if not no_report and result.front:
        from automtl.search.naming import confined_path

        # the study name is text, not a path: sanitised and kept inside reports/
        out = report or confined_path(Path("reports"), name, ".html")
        try:
            from automtl.report import write_report

            out.parent.mkdir(parents=True, exist_ok=True)
            console.print(f"report: {write_report(storage, name, out)}", highlight=False)
        except Exception as exc:  # the search result is stored; a report problem must not hide it
            err_console.print(f"report not written ({type(exc).__name__}: {exc}); run "
                              f"`automtl report --study {name}` later", highlight=False)
    console.print(f"study {name!r} lives in {result.storage}; see `automtl pareto --study {name}"
                  f"{'' if storage == DEFAULT_STORAGE else ' --storage ' + repr(result.storage)}`",
                  highlight=False, soft_wrap=True)
    if result.interrupted:
        raise typer.Exit(130)


def _points_front(storage: str, name: str) -> Any:
    try:
        return points_front(storage, name)
    except Exception as exc:  # the search result is stored; a table problem must not hide it
        err_console.print(f"front over points not shown ({type(exc).__name__}: {exc}); run "
                          f"`automtl pareto --study {name}`", highlight=False)
        return None


def register(app: typer.Typer) -> None:
    """Add `automtl search` to the CLI."""
    app.command("search")(search_command)

