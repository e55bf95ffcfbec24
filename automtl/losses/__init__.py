"""Loss terms of automtl and their combination (see each module's docstring for the paper).

`build_loss(LossConfig, tasks, model) -> MTLLoss`; `MTLLoss(logits [B, T], labels [B, T], epoch)`
returns the total, the per-task BCE and every term separately.
"""

from automtl.losses._cascade import cascade_chain, require_cascade
from automtl.losses.bce import task_bce, task_bce_rows
from automtl.losses.conditioned import ConditionedWeighting, simplex_grid, sweep_vectors
from automtl.losses.calibrator import calibrator_loss
from automtl.losses.dependency import dependency_loss
from automtl.losses.mix import LossOutput, MTLLoss, build_loss
from automtl.losses.pwiser import margin_pair_loss, pwiser_loss
from automtl.losses.weighting import (
    FixedWeighting,
    GradNorm,
    PLEDecay,
    UncertaintyWeighting,
    Weighting,
    build_weighting,
    shared_parameters,
)

__all__ = [
    "ConditionedWeighting", "FixedWeighting", "GradNorm", "LossOutput", "MTLLoss", "PLEDecay",
    "UncertaintyWeighting",
    "Weighting", "build_loss", "build_weighting", "calibrator_loss", "cascade_chain",
    "dependency_loss", "margin_pair_loss", "pwiser_loss", "require_cascade", "shared_parameters",
    "simplex_grid", "sweep_vectors", "task_bce", "task_bce_rows",
]
