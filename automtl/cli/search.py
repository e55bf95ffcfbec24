"""`automtl search`: run (or resume) a multi-objective search and print its Pareto front."""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from automtl._typed import SEED_MAX
from automtl.cli._common import check_seconds, console, err_console, use_data_on
from automtl.cli._options import (
    DEFAULT_STORAGE,
    DataDir,
    DataOn,
    Device,
    Seeds,
    Storage,
    Timeout,
)
from automtl.cli.pareto import front_table, points_front
from automtl.search.defaults import PRUNER_KINDS
from automtl.search.samplers import sampler_names

if TYPE_CHECKING:  # the real imports happen when the command runs (--help stays light)
    from automtl.search.enqueue import WarmStart
    from automtl.search.front import FrontRow
    from automtl.search.runner import SearchResult
    from automtl.search.study_config import StudyConfig

# Choices from their one vocabulary (the sampler registry, the pruner kinds): typer checks them,
# and `handle_errors` prints click's message as one line.
SamplerName = Enum("SamplerName", {n: n for n in sampler_names()}, type=str)  # type: ignore[misc]
PrunerKind = Enum("PrunerKind", {n: n for n in PRUNER_KINDS}, type=str)  # type: ignore[misc]

# Help panels of this command's own options (the shared ones stay under "Options").
_STUDY, _DATA, _TRIALS, _WORKERS, _OUTPUT = "Study", "Data", "Trials", "Workers", "Output"


def _opt(*names: str, panel: str, help: str, **kw: object) -> typer.models.OptionInfo:
    """A `--option` of `automtl search`, shown in help panel `panel`."""
    return typer.Option(*names, help=help, rich_help_panel=panel, **kw)  # type: ignore[arg-type]


Dataset = Annotated[Optional[str], _opt("--dataset", panel=_STUDY, help="Preset or dataset name "
                                        "(synthetic, ali-ccp, aliexpress-nl, census-income ...).")]
StudyConfigOpt = Annotated[Optional[str], _opt("--study-config", panel=_STUDY,
                                               help="Study preset YAML file (or a preset name).")]
Space = Annotated[Optional[str], _opt("--space", panel=_STUDY, help="Search space name "
                                      "(default, mmoe, ple, losses) or YAML file.")]
StudyName = Annotated[Optional[str], _opt("--study-name", panel=_STUDY, help="Study name "
                                          "(default: the preset's); an existing name resumes.")]
Sampler = Annotated[Optional[SamplerName], _opt("--sampler", panel=_STUDY,
                                                help="Optuna sampler (default: the preset's).")]
Pruner = Annotated[Optional[PrunerKind], _opt("--pruner", panel=_STUDY,
                                              help="pareto (default) or none.")]
NTrials = Annotated[Optional[int], _opt("--n-trials", panel=_TRIALS, min=1,
                                        help="New trials to run (default: the preset's); "
                                        "sizes the search by trials: the preset's budget is "
                                        "dropped unless --budget is given too.")]
BudgetOpt = Annotated[Optional[float], _opt("--budget", panel=_TRIALS, min=0.01,
                                            help="Compute cap in baseline trainings (one = the "
                                            "epochs over the training split); probes at a rows "
                                            "rung, then the best trained in full (default: the "
                                            "preset's budget).")]
Epochs = Annotated[Optional[int], _opt("--epochs", panel=_TRIALS, min=1, help="Epochs per trial.")]
Seed = Annotated[Optional[int], _opt("--seed", panel=_TRIALS, min=0, max=SEED_MAX,
                                     help="Sampler and training seed (0 .. 2^32-1).")]
# --cost-objective stays a string checked in the command (its message names the accepted values).
CostObjectiveOpt = Annotated[Optional[str], _opt("--cost-objective", panel=_TRIALS, help="Third "
                                                 "objective, minimised: latency (ms per 1,000 "
                                                 "rows) or params (trainable parameters).")]
MaxParams = Annotated[Optional[int], _opt("--max-params", panel=_TRIALS, help="Constraint: "
                                          "trials with more trainable parameters are "
                                          "infeasible.")]
MaxLatency = Annotated[Optional[float], _opt("--max-latency-ms", panel=_TRIALS, help="Constraint: "
                                             "trials slower than this many ms per 1,000 rows "
                                             "(inference, training device) are infeasible.")]
WarmStartOpt = Annotated[Optional[str], _opt("--warm-start", panel=_TRIALS, help="Enqueue this "
                                             "study's Pareto front first (best mean objective "
                                             "first, at most half of --n-trials).")]
WarmStartStorage = Annotated[Optional[str], _opt("--warm-start-storage", panel=_TRIALS,
                                                 help="Storage of --warm-start (default: "
                                                 "--storage).")]
DataOptions = Annotated[Optional[list[str]], _opt("--data-option", panel=_DATA, help="Dataset "
                                                  "option KEY=VALUE (repeatable), e.g. "
                                                  "rows=20000.")]
Workers = Annotated[int, _opt("--workers", panel=_WORKERS, min=1, help="Local worker processes "
                              "sharing the study (see `automtl worker`; one per --devices entry "
                              "by default).")]
Devices = Annotated[Optional[str], _opt("--devices", panel=_WORKERS, help="Devices of the "
                                        "workers, e.g. 0,1 (= cuda:0,cuda:1), assigned "
                                        "round-robin.")]
TrialsPerDevice = Annotated[int, _opt("--trials-per-device", panel=_WORKERS, min=1,
                                      help="Concurrent trials (worker processes) per GPU of "
                                      "--devices, for models too small to fill one; CUDA only.")]
SaveCheckpoints = Annotated[bool, _opt("--save-checkpoints", panel=_OUTPUT, help="Save each "
                                       "completed trial's best-epoch weights next to the "
                                       "database.")]
ReevalTop = Annotated[int, _opt("--reeval-top", panel=_OUTPUT, min=0, help="Afterwards retrain "
                                "the K best front configs with --seeds seeds (mean ± std per "
                                "task).")]
Report = Annotated[Optional[Path], _opt("--report", panel=_OUTPUT, help="HTML report path "
                                        "(default reports/<study>.html).")]
NoReport = Annotated[bool, _opt("--no-report", panel=_OUTPUT,
                                help="Do not write the HTML report.")]


def search_command(
    dataset: Dataset = None,
    study_config: StudyConfigOpt = None,
    space: Space = None,
    n_trials: NTrials = None,
    budget: BudgetOpt = None,
    timeout: Timeout = None,
    storage: Storage = DEFAULT_STORAGE,
    study_name: StudyName = None,
    sampler: Sampler = None,
    pruner: Pruner = None,
    epochs: Epochs = None,
    device: Device = None,
    seed: Seed = None,
    data_dir: DataDir = None,
    data_option: DataOptions = None,
    save_checkpoints: SaveCheckpoints = False,
    reeval_top: ReevalTop = 0,
    seeds: Seeds = 3,
    report: Report = None,
    no_report: NoReport = False,
    workers: Workers = 1,
    devices: Devices = None,
    trials_per_device: TrialsPerDevice = 1,
    warm_start: WarmStartOpt = None,
    warm_start_storage: WarmStartStorage = None,
    max_params: MaxParams = None,
    max_latency_ms: MaxLatency = None,
    data_on: DataOn = None,
    cost_objective: CostObjectiveOpt = None,
) -> None:
    """Search MTL architectures, losses and task weights; keep the Pareto front in SQL."""
    import optuna

    from automtl.data import parse_options
    from automtl.errors import AutomtlError
    from automtl.search.dburl import mask_url
    from automtl.search.naming import check_study_name
    from automtl.search.objectives import COST_OBJECTIVES
    from automtl.search.study_config import (
        apply_overrides,
        size_search,
        study_for_dataset,
        study_preset,
    )

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
    if cost_objective is not None and cost_objective not in COST_OBJECTIVES:
        raise AutomtlError(f"--cost-objective {cost_objective}: use "
                           f"{' or '.join(COST_OBJECTIVES)}")
    cfg = study_preset(study_config) if study_config else study_for_dataset(dataset or "synthetic")
    apply_overrides(cfg, {
        "space": space, "n_trials": n_trials, "timeout": timeout, "epochs": epochs, "seed": seed,
        "sampler": sampler.value if sampler else None,
        "pruner.kind": pruner.value if pruner else None,
        "data.data_dir": data_dir,
        "data.options": {**cfg.data.options, **parse_options(data_option)} if data_option
        else None,
        "max_params": max_params, "max_latency_ms": max_latency_ms,
        "cost_objective": cost_objective,
    })
    size_search(cfg, n_trials, budget)
    if warm_start_storage is not None and warm_start is None:
        raise AutomtlError("--warm-start-storage needs --warm-start STUDY")
    cfg.validate()
    from automtl.search.enqueue import WarmStart

    ws = WarmStart(warm_start, warm_start_storage or storage) if warm_start is not None else None
    from automtl.data import get_info, resolve_options

    resolve_options(get_info(cfg.data.name), dict(cfg.data.options))  # typed, finite, in range
    name = study_name or cfg.name
    if ws is not None:  # before any note is printed: a refusal is the only line
        from automtl.search.enqueue import check_warm_start

        check_warm_start(ws, name, storage)
    from automtl.search.budget import resume_note

    spent = resume_note(cfg, storage, name)  # a resumed study whose budget is spent
    if spent and budget is not None:
        raise AutomtlError(spent)  # the --budget given buys nothing: refused before any write
    optuna.logging.set_verbosity(logging.WARNING)
    console.print(f"study {name!r} in {mask_url(storage)}: dataset {cfg.data.name} "
                  f"{cfg.data.options or ''}, space {cfg.space}, sampler {cfg.sampler}, pruner "
                  f"{cfg.pruner.kind}, {cfg.n_trials} trials × ≤{cfg.epochs} epochs"
                  + (f", budget {cfg.budget.trainings:g} trainings (probes: "
                     f"{cfg.budget.rows_fraction:g} of epoch 1)" if cfg.budget else ""),
                  highlight=False, soft_wrap=True)
    if spent:  # the preset's budget on a finished study: say why no trial runs, show its front
        err_console.print(spent, highlight=False, soft_wrap=True)

    started = time.perf_counter()
    if workers != 1 or devices or trials_per_device != 1:  # several processes: see workers
        from automtl.cli._progress import RichWorkersView
        from automtl.search.distributed import search_with_workers

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


def _search_in_process(cfg: StudyConfig, storage: str, name: str, device: Optional[str],
                       save_checkpoints: bool, warm_start: WarmStart | None = None
                       ) -> SearchResult:
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


def _print_result(result: SearchResult, name: str, storage: str, elapsed: float,
                  device: Optional[str], reeval_top: int, seeds: int, report: Optional[Path],
                  no_report: bool) -> None:
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
                              f"`automtl report --study {shlex.quote(name)}` later",
                              highlight=False)
    again = f"automtl pareto --study {shlex.quote(name)}" + (
        "" if storage == DEFAULT_STORAGE else f" --storage {shlex.quote(result.storage)}")
    console.print(f"study {name!r} lives in {result.storage}; see `{again}`",
                  highlight=False, soft_wrap=True)
    if result.interrupted:
        raise typer.Exit(130)


def _points_front(storage: str, name: str) -> list[FrontRow] | None:
    try:
        return points_front(storage, name)
    except Exception as exc:  # the search result is stored; a table problem must not hide it
        err_console.print(f"front over points not shown ({type(exc).__name__}: {exc}); run "
                          f"`automtl pareto --study {name}`", highlight=False)
        return None


def register(app: typer.Typer) -> None:
    """Add `automtl search` to the CLI."""
    app.command("search")(search_command)

