"""`automtl reeval`: retrain a study's best front configurations with more seeds."""

from __future__ import annotations

import logging

import typer

from automtl.cli._common import console
from automtl.cli._options import DEFAULT_STORAGE, Device, Seeds, Storage, Study
from automtl.cli.pareto import front_table


def reeval_command(
    study: Study,
    storage: Storage = DEFAULT_STORAGE,
    top: int = typer.Option(3, "--top", min=1, help="How many front configs (best mean objective)."),
    seeds: Seeds = 3,
    device: Device = None,
) -> None:
    """Retrain the top front configs with S seeds; store and print val/test mean ± std."""
    import optuna

    from automtl.search.reeval import reevaluate
    from automtl.search.runner import SearchListener
    from automtl.search.storage import objective_names, open_study

    class _Lines(SearchListener):
        def on_trial_start(self, number: int, index: int, config: object) -> None:
            console.print(f"trial {number}: seed {index}/{seeds}", highlight=False)

    optuna.logging.set_verbosity(logging.WARNING)
    objectives = objective_names(open_study(storage, study))
    front = reevaluate(storage, study, top, seeds, device=device, listener=_Lines())
    console.print(front_table(front, objectives, f"Pareto front of {study!r} with seed "
                              "re-evaluation"))


def register(app: typer.Typer) -> None:
    """Add `automtl reeval` to the CLI."""
    app.command("reeval")(reeval_command)
