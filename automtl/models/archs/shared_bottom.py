"""SharedBottom (Caruana, "Multitask Learning", Machine Learning 1997; the hard-parameter-sharing
baseline of MMoE, KDD 2018): y_k = h^k(f(x)), one shared MLP f and one tower h^k per task.

Per-task inputs x_k (task-specific bottoms): the same shared MLP is applied to each task's input,
y_k = h^k(f(x_k)) (the rows of all tasks go through f in one matmul). With `bottom_dims: []` the
shared part is the embedding layer alone: per-task towers on shared embeddings, the network of
ESMM (SIGIR 2018, Fig. 2) when combined with `head: esmm`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.schema import TaskSpec
from automtl.models.base import Body, BodyInput, as_input
from automtl.models.blocks import Towers, mlp
from automtl.models.registry import register_arch


@register_arch("shared_bottom")
class SharedBottom(Body):
    """Shared MLP (`bottom_dims`) + one tower (`tower_dims`) per task."""

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(cfg, in_dim, tasks)
        self.shared = mlp(in_dim, cfg.bottom_dims, cfg.activation, cfg.dropout)
        width = cfg.bottom_dims[-1] if cfg.bottom_dims else in_dim
        self.towers = Towers(self.n_tasks, width, cfg.tower_dims, cfg.activation, cfg.dropout)

    def forward(self, x: BodyInput) -> Tensor:
        # nn.Linear works on [B, D] and [T, B, D] alike; towers take shared or per-task rows
        return self.towers(self.shared(as_input(x, self.n_tasks)))

    def last_shared_parameters(self) -> list[nn.Parameter]:
        linears = [m for m in self.shared if isinstance(m, nn.Linear)]
        return list(linears[-1].parameters()) if linears else []
