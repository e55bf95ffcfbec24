"""`automtl pareto`: print a study's Pareto front (table, CSV or JSON)."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table

from automtl.cli._common import console
from automtl.cli._options import DEFAULT_STORAGE, Storage, Study
from automtl.search.objectives import is_cost, metric_objectives

if TYPE_CHECKING:
    from automtl.search.front import FrontRow


# Parameters shown in the "key params" column, in this order (short name = last path part).
_SKIP = {"model.arch", "model.head"}


def fmt(value: Any, digits: int = 4) -> str:
    """A metric for a table cell ('-' when missing or not finite)."""
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "-" if not math.isfinite(v) else f"{v:.{digits}f}"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace(" ", "")


def key_params(params: dict[str, Any], limit: int = 6) -> str:
    """Compact `name=value` summary of a trial's sampled parameters (architecture excluded)."""
    parts = [f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in params.items()
             if k not in _SKIP and v is not False]
    text = " ".join(parts[:limit])
    return text + (" …" if len(parts) > limit else "")


def human_count(n: Any) -> str:
    """12345 -> '12.3k'."""
    if not isinstance(n, (int, float)):
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}"
    return f"{n:.0f}"


def _reeval_cell(row: FrontRow, split: str, name: str) -> str:
    stats = (row.reeval or {}).get(f"{split}/{name}")
    if not stats:
        return ""
    return f"{stats['mean']:.4f}±{stats['std']:.3f}"


def weights_text(weights: dict[str, float] | None) -> str:
    """``ctr=0.7 ctcvr=0.3`` for a point of a conditioned trial, '' otherwise."""
    return " ".join(f"{k}={v:.3g}" for k, v in (weights or {}).items())


def _is_selected(row: FrontRow, selected: int | FrontRow | None) -> bool:
    if selected is not None and not isinstance(selected, int):  # a FrontRow (a sweep point)
        return row.trial_number == selected.trial_number and row.point == selected.point
    return selected is not None and selected == row.trial_number


def front_table(front: list[FrontRow], objectives: list[str], title: str = "Pareto front",
                selected: int | FrontRow | None = None, cost: bool | None = None) -> Table:
    """Rich table of a front: trial, architecture, key params, val/test per objective, cost
    (parameter count, training samples/s; by default only on consoles >= 100 columns). Points
    of preference-conditioned trials show their task-weight vector."""
    wide = console.width >= 100
    cost = wide if cost is None else cost
    # Narrow consoles: no outer edge and fewer key params, so every AUC column stays visible.
    table = Table(title=title, title_justify="left", show_edge=wide, pad_edge=wide)
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("arch", overflow="fold")
    table.add_column("key params", overflow="fold", min_width=12, max_width=44, ratio=1)
    has_weights = any(r.weights for r in front)
    if has_weights:
        table.add_column("task weights", overflow="fold")
    # a cost objective (minimised, the same on every split) gets one column, after the metrics
    metrics = metric_objectives(objectives)
    costs = [o for o in objectives if is_cost(o)]
    short = [o.removesuffix("_auc") for o in metrics]
    for name in short:
        table.add_column(f"{name}\nval", justify="right", no_wrap=True)
    for name in short:
        table.add_column(f"{name}\ntest", justify="right", no_wrap=True)
    for name in costs:
        table.add_column(f"{name}\n(min)", justify="right", no_wrap=True)
    has_reeval = any(r.reeval for r in front)
    if has_reeval:
        for name in short:
            table.add_column(f"{name} val\nseed mean±std", justify="right", no_wrap=True)
    if cost:
        table.add_column("params", justify="right", no_wrap=True)
        table.add_column("smp/s", justify="right", no_wrap=True)
    for r in sorted(front, key=lambda r: [-r.values.get(o, 0.0) for o in metrics]):
        meta = r.meta
        arch = meta.label()
        mark = " ◀" if _is_selected(r, selected) else ""
        cells = [f"{r.trial_number}{mark}", arch, key_params(r.params, 6 if wide else 3)]
        if has_weights:
            cells.append(weights_text(r.weights))
        cells += [fmt(r.values.get(o)) for o in metrics]
        cells += [fmt(r.test.get(o)) for o in metrics]
        cells += [human_count(r.values.get(o)) if o == "n_params" else fmt(r.values.get(o), 3)
                  for o in costs]
        if has_reeval:
            cells += [_reeval_cell(r, "val", o) for o in metrics]
        if cost:
            cells += [human_count(meta.n_params), human_count(meta.samples_per_s)]
        table.add_row(*cells)
    return table


def _blank(value: Any) -> Any:
    return "" if value is None else value


def front_csv(front: list[FrontRow], objectives: list[str]) -> str:
    """CSV text of a front (one row per trial; reeval mean/std/n columns when present)."""
    has_reeval = any(r.reeval for r in front)
    header = ["trial", "arch", "bottom", "head"]
    header += [f"val_{o}" for o in objectives] + [f"test_{o}" for o in objectives]
    if has_reeval:
        for split in ("val", "test"):
            for o in objectives:
                header += [f"reeval_{split}_{o}_{s}" for s in ("mean", "std", "n")]
    header += ["n_params", "samples_per_s", "epochs_run", "checkpoint", "params"]
    has_weights = any(r.weights for r in front)
    if has_weights:
        header += ["task_weights"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in front:
        meta = r.meta
        model = meta.model
        row: list[Any] = [r.trial_number, meta.arch or model.get("arch", ""),
                          meta.bottom or model.get("bottom", ""), model.get("head", "")]
        row += [r.values.get(o, "") for o in objectives] + [r.test.get(o, "") for o in objectives]
        if has_reeval:
            for split in ("val", "test"):
                for o in objectives:
                    stats = (r.reeval or {}).get(f"{split}/{o}") or {}
                    row += [stats.get(s, "") for s in ("mean", "std", "n")]
        row += [_blank(meta.n_params), _blank(meta.samples_per_s), _blank(meta.epochs_run),
                _blank(meta.checkpoint), json.dumps(r.params, sort_keys=True)]
        if has_weights:
            row += [json.dumps(r.weights) if r.weights else ""]
        w.writerow(row)
    return buf.getvalue()


def front_json(study_name: str, storage: str, objectives: list[str],
               front: list[FrontRow], selected: int | FrontRow | None = None) -> str:
    """JSON text of a front: study, storage (masked), objectives, rows (FrontRow fields)."""
    doc: dict[str, Any] = {"study": study_name, "storage": storage, "objectives": objectives,
                           "front": [asdict(r) for r in front]}
    if selected is not None and not isinstance(selected, int):  # a FrontRow (a sweep point)
        doc["selected"] = selected.trial_number
        if selected.weights is not None:
            doc["selected_weights"] = selected.weights
    elif selected is not None:
        doc["selected"] = selected
    return json.dumps(doc, indent=2, default=str)


def points_front(storage: str, study: str) -> list[FrontRow] | None:
    """The study's front over points (ordinary trials one point, a conditioned trial one per
    sweep vector, each with its weight vector) when it has conditioned trials; else None."""
    from automtl.search.dbopen import open_study_readonly
    from automtl.search.store import Store, read_or

    store = Store.readonly(storage)
    try:
        if not read_or(lambda: store.sweeps(study), {}):
            return None
        return store.point_front(open_study_readonly(storage, study))
    finally:
        store.dispose()


def pareto_command(
    study: Study,
    storage: Storage = DEFAULT_STORAGE,
    format: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
    trial: Optional[int] = typer.Option(None, "--trial", min=0, help="Mark this front trial."),
    pick: Optional[str] = typer.Option(None, "--pick", help="Mark a point by rule: knee."),
    weights: Optional[list[str]] = typer.Option(None, "--weights", help="Mark the best weighted "
                                                "sum, e.g. ctr=0.7,cvr=0.3."),
    minimum: Optional[list[str]] = typer.Option(None, "--min", help="Constraint, e.g. "
                                                "ctr=0.72 (with --maximize)."),
    maximize: Optional[str] = typer.Option(None, "--maximize", help="Objective to maximise "
                                           "under --min constraints."),
) -> None:
    """Print the Pareto front of a study (val AUC per objective, test AUC, seed mean±std)."""
    from automtl.errors import AutomtlError
    from automtl.search.dbopen import open_study_readonly
    from automtl.search.selection import parse_selection, select
    from automtl.search.dburl import mask_url
    from automtl.search.storage import objective_names
    from automtl.search.store import Store, compute_front, read_or

    if format not in ("table", "csv", "json"):
        raise AutomtlError(f"--format {format}: use table, csv or json")
    rule = parse_selection(trial=trial, pick=pick, weights=weights, minimums=minimum,
                           maximize=maximize)
    st = open_study_readonly(storage, study)  # read-only: pareto never writes
    objectives = objective_names(st)
    store = Store.readonly(storage)
    front = read_or(lambda: store.front(study), [])
    if not front:  # a study automtl's tables do not know (plain Optuna, older automtl)
        front = compute_front(st, objectives)
    points = bool(read_or(lambda: store.sweeps(study), {}))
    if points:  # conditioned trials: the front over points (a trial may give several)
        front = store.point_front(st)
    selected: FrontRow | None = None
    if rule is not None and rule.within is not None:
        from automtl.search.points import choose_within

        selected = choose_within(st, store, rule)
    elif rule is not None:
        selected = select(front, objectives, rule)
    if format == "csv":
        typer.echo(front_csv(front, objectives), nl=False)
    elif format == "json":
        typer.echo(front_json(study, mask_url(storage), objectives, front, selected))
    else:
        n = len(st.get_trials(deepcopy=False))
        what = f"{len(front)} points of {n} trials" if points else f"{len(front)} of {n} trials"
        console.print(front_table(front, objectives, f"Pareto front of {study!r}: {what}",
                                  selected))
        if selected is not None:
            extra = f" at task weights {weights_text(selected.weights)}" \
                if selected.weights is not None else ""
            console.print(f"selected: trial {selected.trial_number}{extra}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `automtl pareto` to the CLI."""
    app.command("pareto")(pareto_command)
