"""Objective names and their directions: validation metrics (maximised) and, optionally, one
serving cost (minimised) as a third objective.

A study's objectives are its validation metrics (`StudyConfig.objectives`, e.g. ctr_auc, cvr_auc)
followed by the cost named by `StudyConfig.cost_objective`: ``latency`` -> ``latency_ms``
(inference ms per 1,000 rows on the training device), ``params`` -> ``n_params`` (trainable
parameters). Costs are measured before training (`automtl.search.constraints.ServingCost`), so a
trial's cost value is the same at every epoch, on validation and on test. The direction of an
objective follows from its name alone, so every reader (front, pruner, selection, reports) agrees
with the directions the study was created with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

# StudyConfig.cost_objective -> objective name (= the TrialMeta field that stores the cost)
COST_OBJECTIVES: dict[str, str] = {"latency": "latency_ms", "params": "n_params"}
CostObjective = Literal["latency", "params"]


def is_cost(name: str) -> bool:
    """Whether objective `name` is a serving cost (minimised)."""
    return name in COST_OBJECTIVES.values()


def direction(name: str) -> Literal["maximize", "minimize"]:
    """Optuna direction of objective `name`: costs are minimised, metrics maximised."""
    return "minimize" if is_cost(name) else "maximize"


def directions(names: Sequence[str]) -> list[str]:
    """`direction` of each name."""
    return [direction(n) for n in names]


def signs(names: Sequence[str]) -> list[float]:
    """+1 per maximised objective, -1 per minimised one: `value * sign` is maximised."""
    return [-1.0 if is_cost(n) else 1.0 for n in names]


def metric_objectives(names: Sequence[str]) -> list[str]:
    """The names that are validation metrics (not costs)."""
    return [n for n in names if not is_cost(n)]


__all__ = ["COST_OBJECTIVES", "CostObjective", "direction", "directions", "is_cost",
           "metric_objectives", "signs"]
