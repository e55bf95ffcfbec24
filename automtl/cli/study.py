"""`automtl study create`: make a study in a shared database for `automtl worker`s to join."""

from __future__ import annotations

import typer

from automtl.cli._common import console
from automtl.search.defaults import STORAGE_ENV

study_app = typer.Typer(help="Manage studies in a shared database (for `automtl worker`).",
                        no_args_is_help=True)


@study_app.command("create")
def create_command(
    study_config: str = typer.Option(..., "--study-config", help="Study preset name or YAML file "
                                     "(dataset, objectives, space, epochs, n_trials ...)."),
    storage: str = typer.Option(..., "--storage", envvar=STORAGE_ENV,
                                help="Database URL the workers will share (or $AUTOMTL_STORAGE)."),
    study_name: str | None = typer.Option(None, "--study-name", help="Default: the preset's "
                                             "name."),
    n_trials: int | None = typer.Option(None, "--n-trials", min=1, help="Target trial count "
                                           "(default: the preset's n_trials)."),
    heartbeat_interval: int = typer.Option(10, "--heartbeat-interval", min=1, help="Seconds between a "
                                           "running trial's heartbeats."),
    grace_period: int = typer.Option(60, "--grace-period", min=1, help="Seconds without a heartbeat "
                                     "after which a trial's worker counts as dead."),
) -> None:
    """Create a study (refuses an existing name) with a target trial count for workers."""
    from automtl.search.dburl import mask_url
    from automtl.search.storage import objective_names
    from automtl.search.naming import check_study_name
    from automtl.search.study_config import study_preset
    from automtl.search.distributed import Heartbeat, prepare_shared_study, study_target

    import logging
    import shlex

    import optuna

    if study_name is not None:
        check_study_name(study_name)
    optuna.logging.set_verbosity(logging.WARNING)  # "[I ...] A new study created": not ours
    hb = Heartbeat(heartbeat_interval, grace_period)
    cfg = study_preset(study_config)
    study = prepare_shared_study(cfg, storage, study_name, n_trials=n_trials, heartbeat=hb,
                                 must_be_new=True)
    masked = mask_url(storage)
    console.print(f"created study {study.study_name!r} in {masked}: target "
                  f"{study_target(study)} trials, objectives {', '.join(objective_names(study))}",
                  highlight=False, soft_wrap=True)
    hint = f"  (give the real password, or set ${STORAGE_ENV})" if masked != storage else ""
    # quoted for the shell, so the line pastes whatever the name or URL holds
    console.print(f"start workers with: automtl worker --study {shlex.quote(study.study_name)} "
                  f"--storage {shlex.quote(masked)}{hint}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `automtl study ...` to the CLI."""
    app.add_typer(study_app, name="study")
