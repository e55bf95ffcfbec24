"""Single-task baseline: one independent model per task, nothing shared (the "Single-Task" line of
MMoE, KDD 2018; PLE, RecSys 2020; AITM, KDD 2021): y_k = h^k(x_k).

Each task has its own MLP (`bottom_dims`) followed by its own tower (`tower_dims`), evaluated as one
stacked MLP for all tasks. With the default "shared" bottom, `independent_inputs` makes
`build_model` give every task its own embedding-table replica, so no parameter is shared and
training the sum of the task losses equals training T separate models. With another bottom the
tasks share that bottom (its per-task outputs go to the per-task MLPs).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from automtl.config import ModelConfig
from automtl.data.schema import TaskSpec
from automtl.models.base import Body, BodyInput, as_input
from automtl.models.blocks import Towers
from automtl.models.registry import register_arch


@register_arch("single")
class SingleTask(Body):
    """One MLP (`bottom_dims` + `tower_dims` -> 1 logit) per task, nothing shared."""

    independent_inputs = True

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(cfg, in_dim, tasks)
        dims = list(cfg.bottom_dims) + list(cfg.tower_dims)
        self.towers = Towers(self.n_tasks, in_dim, dims, cfg.activation, cfg.dropout)

    def forward(self, x: BodyInput) -> Tensor:
        return self.towers(as_input(x, self.n_tasks))
