"""`automtl studies`: list the studies in a database (trials by state, front size)."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from automtl.cli._common import console
from automtl.cli._options import DEFAULT_STORAGE, Storage
from automtl.cli.pareto import fmt

_STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def study_rows(storage: str) -> list[dict[str, Any]]:
    """One summary dict per study: name, dataset, objectives, state counts, front, best."""
    import optuna

    from automtl.search.dbopen import study_names_readonly
    from automtl.search.meta import StudyMeta, count_states
    from automtl.search.stale import heartbeat_source, running_trials
    from automtl.search.storage import objective_names
    from automtl.search.store import Store, compute_front, read_or

    rdb, names = study_names_readonly(storage)  # read-only: listing never writes
    store = Store.readonly(storage)
    rows = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=rdb)
        trials = study.get_trials(deepcopy=False)
        counts = count_states(trials, first=_STATES)
        objectives = objective_names(study)
        best = {o: max((t.values[i] for t in trials if t.values), default=None)
                for i, o in enumerate(objectives)}
        dataset = StudyMeta.read(study).dataset or {}
        stale = [{"trial": r.number, "owner": r.owner, "heartbeat_age_s": r.heartbeat_age_s,
                  "reason": r.reason}
                 for r in running_trials(study, heartbeat_source(rdb)) if r.stale]
        rows.append({"stale": stale, "study": name, "dataset": dataset.get("name", "?"),
                     "objectives": objectives, "trials": len(trials),
                     "states": counts, "best": best,
                     "front": len(read_or(lambda: store.front(name), [])
                                  or compute_front(study, objectives)),
                     "created": min((t.datetime_start for t in trials if t.datetime_start),
                                    default=None)})
    return rows


def studies_command(
    storage: Storage = DEFAULT_STORAGE,
    format: str = typer.Option("table", "--format", "-f", help="table or json."),
    repair: bool = typer.Option(False, "--repair", help="Mark stale RUNNING trials (heartbeat "
                                "older than the grace period, or their process gone on this "
                                "machine) FAIL; the only option of this command that writes."),
) -> None:
    """List the studies in a database: dataset, objectives, trials by state, front size."""
    from automtl.errors import AutomtlError
    from automtl.search.dburl import mask_url

    if format not in ("table", "json"):
        raise AutomtlError(f"--format {format}: use table or json")
    if repair:
        _repair(storage)
    rows = study_rows(storage)
    if format == "json":
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print(f"no studies in {mask_url(storage)}; run `automtl search` to make one",
                      highlight=False)
        return
    table = Table(title=f"studies in {mask_url(storage)}", title_justify="left")
    table.add_column("study", overflow="fold")
    table.add_column("dataset")
    table.add_column("objectives", overflow="fold")
    table.add_column("trials\nall", justify="right")
    table.add_column("complete/pruned\n/failed/running", justify="right")
    table.add_column("front", justify="right")
    table.add_column("best val", overflow="fold")
    for r in rows:
        s = r["states"]
        running = str(s["RUNNING"])
        if r["stale"]:
            ages = [x["heartbeat_age_s"] for x in r["stale"] if x["heartbeat_age_s"] is not None]
            beat = f", heartbeat {max(ages):.0f} s ago" if ages else ""
            running += f" ({len(r['stale'])} stale{beat}; --repair)"
        table.add_row(r["study"], r["dataset"], " ".join(r["objectives"]), str(r["trials"]),
                      f"{s['COMPLETE']}/{s['PRUNED']}/{s['FAIL']}/{running}",
                      str(r["front"]),
                      " ".join(f"{k.removesuffix('_auc')}={fmt(v)}" for k, v in r["best"].items()))
    console.print(table)


def _repair(storage: str) -> None:
    """Mark the stale RUNNING trials of automtl's studies FAIL (others' studies untouched)."""
    import optuna

    from automtl.search.dbopen import is_automtl_study, study_names_readonly
    from automtl.search.stale import mark_stale_failed
    from automtl.search.storage import close_storage, make_storage

    study_names_readonly(storage)  # refuses foreign, corrupt and empty databases first
    rdb = make_storage(storage, must_exist=True)
    try:
        for name in sorted(optuna.get_all_study_names(rdb)):
            study = optuna.load_study(study_name=name, storage=rdb)
            if not is_automtl_study(study):
                continue
            for r in mark_stale_failed(study, rdb):
                console.print(f"study {name!r}: trial {r.number} marked FAIL ({r.reason})",
                              highlight=False, soft_wrap=True)
    finally:
        close_storage(rdb)


def register(app: typer.Typer) -> None:
    """Add `automtl studies` to the CLI."""
    app.command("studies")(studies_command)
