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


__all__ = ["epoch_metrics", "front_folded", "front_version", "metadata", "pareto_front", "reeval_metrics",
           "sweep_points"]
