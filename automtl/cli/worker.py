"""`automtl worker`: join an existing study and run its trials (one process per GPU/machine)."""

from __future__ import annotations

import logging

import typer

from automtl.cli._common import check_seconds, console, use_data_on
from automtl.cli._options import DataOn, Device, Timeout
from automtl.search.defaults import STORAGE_ENV


def worker_command(
    study: str = typer.Option(..., "--study", help="Name of the study to join."),
    storage: str = typer.Option(..., "--storage", envvar=STORAGE_ENV,
                                help="Database URL shared by all workers, e.g. "
                                "postgresql+psycopg://user:pass@host/db, or grpc://HOST:PORT of "
                                "`automtl storage-proxy` (or $AUTOMTL_STORAGE)."),
    n_trials: int | None = typer.Option(None, "--n-trials", min=1, help="Stop after this many "
                                        "trials of this worker (default: until the study's "
                                        "target)."),
    timeout: Timeout = None,
    device: Device = None,
    heartbeat_interval: int | None = typer.Option(
        None, "--heartbeat-interval", min=1, help="Seconds between a running trial's heartbeats "
        "(default: the study's setting, else 10)."),
    grace_period: int | None = typer.Option(
        None, "--grace-period", min=1, help="Seconds without a heartbeat after which a trial's "
        "worker counts as dead and the trial is retried (default: the study's setting, else 60)."),
    data_on: DataOn = None,
    trials_per_device: int = typer.Option(1, "--trials-per-device", min=1, help="Concurrent trial "
                                          "processes on --device sharing one copy of the data "
                                          "(CUDA only)."),
) -> None:
    """Join a study in a shared database and run trials until its target count is reached."""
    import optuna

    from automtl.search.meta import TrialMeta
    from automtl.search import interrupt
    from automtl.search.dburl import mask_url
    from automtl.search.storage import make_storage, objective_names
    from automtl.search.distributed import (
        Budget,
        Heartbeat,
        run_worker,
        run_worker_group,
        worker_name,
    )

    if timeout is not None:
        check_seconds(timeout, "--timeout")
    optuna.logging.set_verbosity(logging.WARNING)
    use_data_on(data_on)
    interrupt.install()  # a Ctrl-C (the launcher's stop signal) is never lost
    hb = None
    if heartbeat_interval is not None or grace_period is not None:
        interval = heartbeat_interval or Heartbeat().interval
        hb = Heartbeat(interval, grace_period or max(Heartbeat().grace, 2 * interval))
    names: list[str] = []

    def on_trial(t: optuna.trial.FrozenTrial, b: Budget) -> None:
        if not names:
            names.extend(objective_names(optuna.load_study(study_name=study,
                                                           storage=make_storage(storage))))
        values = " ".join(f"{n}={v:.4f}" for n, v in zip(names, t.values or []))
        meta = TrialMeta.read(t)
        reason = meta.fail_reason or meta.prune_reason or ""
        target = b.target if b.target is not None else "-"
        console.print(f"trial {t.number} {t.state.name} {values or reason} "
                      f"[{b.finished}/{target} finished]", highlight=False, soft_wrap=True)

    console.print(f"worker {worker_name()} joining study {study!r} in {mask_url(storage)}",
                  highlight=False, soft_wrap=True)
    if trials_per_device != 1:
        results = run_worker_group(storage, study, device=device or "auto",
                                   trials_per_device=trials_per_device, n_trials=n_trials,
                                   timeout=timeout, heartbeat=hb)
        for r in results:
            states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(r.states.items())) or "none"
            console.print(f"worker {r.worker}: {len(r.trials)} trials ({states}) in "
                          f"{r.seconds:.0f} s; stopped: {r.stopped_by}", highlight=False)
        if any(r.stopped_by == "interrupted" for r in results):
            raise typer.Exit(130)
        return
    result = run_worker(storage, study, n_trials=n_trials, timeout=timeout, device=device,
                        heartbeat=hb, on_trial=on_trial)
    states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(result.states.items())) or "none"
    console.print(f"worker {result.worker}: {len(result.trials)} trials ({states}) in "
                  f"{result.seconds:.0f} s; stopped: {result.stopped_by}", highlight=False)
    if result.stopped_by == "interrupted":
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    """Add `automtl worker` to the CLI."""
    app.command("worker")(worker_command)
