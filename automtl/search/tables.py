"""automtl's own tables beside Optuna's, in the same database (SQLAlchemy Core); `Store`
(`automtl.search.store`) reads and writes them.

- ``automtl_epoch_metrics``: one row per (study, trial, epoch, metric): the per-epoch validation
  metrics of every trial (read by the Pareto pruner, learning-curve figures and dashboards);
- ``automtl_pareto_front``: one row per front trial (study, trial, validation objective values,
  test metrics, config JSON, params JSON, attrs JSON), updated from Optuna's stored values in
  one transaction whenever a trial finishes, so concurrent workers converge on the same front;
- ``automtl_front_folded``: one row per (study, COMPLETE trial) already folded into the front:
  a refresh folds only the trials missing here (incremental; a trial whose worker died before
  its refresh is folded by the next one);
- ``automtl_front_version``: one row per study, bumped by every front refresh (also the per-study
  lock that serialises refreshes; dashboards can poll it to know when to redraw);
- ``automtl_reeval``: per-seed re-evaluation metrics of front configurations (Optuna forbids
  user attributes on finished trials, so they live here; `Store.reeval` gives mean/std/n);
- ``automtl_sweep_points``: one row per (study, trial, sweep point) of a preference-conditioned
  trial (issue 16): the task-weight vector, validation and test metrics there, and whether the
  point is non-dominated within its trial; written in one transaction before the trial
  completes. The study front is then the non-dominated set over POINTS (`point_front`): an
  ordinary trial is one point, a conditioned trial one per sweep vector.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

epoch_metrics = sa.Table(
    "automtl_epoch_metrics",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_name", sa.String(512), nullable=False),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False),
    sa.Column("metric", sa.String(128), nullable=False),
    sa.Column("value", sa.Float, nullable=True),  # NULL = NaN/inf
    sa.UniqueConstraint("study_name", "trial_number", "epoch", "metric",
                        name="uq_automtl_epoch_metric"),
    sa.Index("ix_automtl_epoch_metrics_study_epoch", "study_name", "epoch"),
)

pareto_front = sa.Table(
    "automtl_pareto_front",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_name", sa.String(512), nullable=False),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("values_json", sa.Text, nullable=False),  # {objective: validation value}
    sa.Column("test_json", sa.Text, nullable=False),  # {metric: test value} at the best epoch
    sa.Column("config_json", sa.Text, nullable=False),  # TrialConfig as a plain dict
    sa.Column("params_json", sa.Text, nullable=False),  # Optuna params of the trial
    sa.Column("attrs_json", sa.Text, nullable=False),  # arch, bottom, n_params, checkpoint ...
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("study_name", "trial_number", name="uq_automtl_front_trial"),
)

front_version = sa.Table(
    "automtl_front_version",
    metadata,
    sa.Column("study_name", sa.String(512), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

front_folded = sa.Table(
    "automtl_front_folded",
    metadata,
    sa.Column("study_name", sa.String(512), primary_key=True),
    sa.Column("trial_number", sa.Integer, primary_key=True),
)

reeval_metrics = sa.Table(
    "automtl_reeval",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_name", sa.String(512), nullable=False),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("split", sa.String(16), nullable=False),  # "val" | "test"
    sa.Column("metric", sa.String(128), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.UniqueConstraint("study_name", "trial_number", "seed", "split", "metric",
                        name="uq_automtl_reeval"),
)

sweep_points = sa.Table(
    "automtl_sweep_points",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study_name", sa.String(512), nullable=False),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("point", sa.Integer, nullable=False),  # index in the trial's sweep
    sa.Column("weights_json", sa.Text, nullable=False),  # {task: weight}, sums to 1
    sa.Column("val_json", sa.Text, nullable=False),  # {metric: validation value}
    sa.Column("test_json", sa.Text, nullable=False),  # {metric: test value}
    sa.Column("trial_front", sa.Boolean, nullable=False),  # non-dominated within the trial
    sa.UniqueConstraint("study_name", "trial_number", "point", name="uq_automtl_sweep_point"),
)


# Read-only views of the Optuna tables automtl joins with SQL where Optuna has no public reader
# (heartbeat ages, the COMPLETE trials not folded into the front yet); columns of Optuna's
# versioned schema, never written, not part of `metadata`.
optuna_studies = sa.table("studies", sa.column("study_id"), sa.column("study_name"))
optuna_trials = sa.table("trials", sa.column("trial_id"), sa.column("study_id"),
                         sa.column("number"), sa.column("state"))
optuna_heartbeats = sa.table("trial_heartbeats", sa.column("trial_id"), sa.column("heartbeat"))


def unfolded_trials(study_name: str) -> sa.Select[tuple[int, int]]:
    """(number, trial_id) of the study's COMPLETE trials missing from ``automtl_front_folded``:
    what a front refresh folds, found by the database (an anti-join on indexed keys) instead of
    reading every trial. Optuna stores the state as the enum's name (a native enum type on
    PostgreSQL, hence the cast)."""
    t, s, ff = optuna_trials.c, optuna_studies.c, front_folded.c
    return (sa.select(t.number, t.trial_id)
            .select_from(optuna_trials.join(optuna_studies, t.study_id == s.study_id))
            .where(s.study_name == study_name, sa.cast(t.state, sa.String) == "COMPLETE",
                   ~sa.exists().where(ff.study_name == study_name, ff.trial_number == t.number))
            .order_by(t.number))


__all__ = ["epoch_metrics", "front_folded", "front_version", "metadata", "optuna_heartbeats",
           "optuna_studies", "optuna_trials", "pareto_front", "reeval_metrics", "sweep_points",
           "unfolded_trials"]
