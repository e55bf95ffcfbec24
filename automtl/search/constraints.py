"""Cost-aware search: each trial's serving cost, measured before training, and the study's
cost constraints as Optuna constraints.

`ServingCost` is a trainer callback: when the model is built (`on_train_start`) it stores the
trial's trainable parameters (``n_params``) and inference latency per 1,000 rows on the training
device (``latency_ms``, `automtl.train.inference_latency_ms`) as user attributes, and, for every
limit the study sets (`max_params`, `max_latency_ms`), the constraint value ``cost - limit`` with
`optuna.Trial.set_constraint` (feasible when <= 0). Optuna's samplers read those values (TPE and
NSGA-II rank infeasible trials by their violation) and `Study.best_trials`, hence automtl's front,
keeps only feasible trials. An infeasible trial is not trained: it stops at once as PRUNED with
its constraint values and a "prune_reason", so its compute goes to designs that can be served.
A study whose third objective is a cost (`StudyConfig.cost_objective`) reads the measured value
through `ServingCost.objective_values`.
"""

from __future__ import annotations

from typing import Any

import optuna

from automtl.search.meta import TrialMeta
from automtl.train.loop import Callback

CONSTRAINT_KEYS = {"max_params": "n_params", "max_latency_ms": "latency_ms"}


def constraint_values(limits: dict[str, float | None], costs: dict[str, float]) -> dict[str, float]:
    """{limit name: cost - limit} for every limit that is set."""
    return {name: float(costs[CONSTRAINT_KEYS[name]]) - float(limit)
            for name, limit in limits.items() if limit is not None}


class ServingCost(Callback):
    """Trainer callback: measure and store serving cost, set constraints, skip infeasible trials."""

    def __init__(self, trial: optuna.Trial, dataset: Any, limits: dict[str, float | None],
                 precision: str = "fp32") -> None:
        self.trial, self.dataset, self.limits, self.precision = trial, dataset, limits, precision
        self._objectives: dict[str, float] = {}
        self._wanted: list[str] = []

    def objective_values(self, names: list[str]) -> dict[str, float]:
        """A dict that holds the costs `names` (``n_params`` / ``latency_ms``) once the model is
        built (filled in place by `on_train_start`; empty before)."""
        unknown = [n for n in names if n not in CONSTRAINT_KEYS.values()]
        if unknown:
            raise ValueError(f"not a serving cost: {unknown[0]!r}")  # a bug, not user input
        self._wanted = list(names)
        return self._objectives

    def on_train_start(self, model: Any) -> None:
        from automtl.models import count_parameters
        from automtl.train import device_split, inference_latency_ms, resolve_precision

        device = next(model.parameters()).device
        val = device_split(self.dataset, "val", device)
        costs = {"n_params": float(count_parameters(model)),
                 "latency_ms": inference_latency_ms(
                     model, val, [t.name for t in self.dataset.tasks],
                     precision=resolve_precision(self.precision, device))}
        TrialMeta.write(self.trial, n_params=int(costs["n_params"]),
                        latency_ms=float(costs["latency_ms"]))
        self._objectives.update({n: costs[n] for n in self._wanted})
        values = constraint_values(self.limits, costs)
        for name, value in values.items():
            self.trial.set_constraint(name, value)
        over = [f"{CONSTRAINT_KEYS[n]} {costs[CONSTRAINT_KEYS[n]]:.4g} > {n} "
                f"{self.limits[n]:.4g}" for n, v in values.items() if v > 0]
        if over:
            reason = "infeasible: " + ", ".join(over)
            TrialMeta.write(self.trial, prune_reason=reason)
            raise optuna.TrialPruned(reason)


__all__ = ["CONSTRAINT_KEYS", "ServingCost", "constraint_values"]
