"""MMoE (Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts", KDD 2018), sec. 4:

    y_k = h^k(f^k(x)),  f^k(x) = sum_i g^k(x)_i f_i(x),  g^k(x) = softmax(W_gk x).

The n experts f_i (MLPs of `expert_dims`) are one `StackedMLP`: one batched matmul per layer.
Per-task inputs x_k: task k's gate and the experts both read x_k, i.e. f^k(x_k) =
sum_i g^k(x_k)_i f_i(x_k) (the experts run once over the T*B stacked rows). The last gate weights
are kept (detached) in `last_gates` ``[T, B, n]`` for inspection.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.schema import TaskSpec
from automtl.models.base import Body, BodyInput, as_input, require_layers
from automtl.models.blocks import SoftmaxGates, StackedMLP, Towers, mix_experts
from automtl.models.registry import register_arch


@register_arch("mmoe")
class MMoE(Body):
    """`n_experts` shared experts, one softmax gate and one tower per task."""

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(cfg, in_dim, tasks)
        dims = require_layers(cfg, "expert_dims")
        self.experts = StackedMLP(cfg.n_experts, in_dim, dims, cfg.activation, cfg.dropout)
        self.gates = SoftmaxGates(self.n_tasks, in_dim, cfg.n_experts)
        self.towers = Towers(
            self.n_tasks, self.experts.out_dim, cfg.tower_dims, cfg.activation, cfg.dropout
        )
        self.last_gates: Tensor | None = None

    def forward(self, x: BodyInput) -> Tensor:
        x = as_input(x, self.n_tasks)
        g = self.gates(x)  # [T, B, E]
        self.last_gates = g.detach()
        if x.dim() == 2:
            mixed = mix_experts(g, self.experts(x))  # experts [E, B, H]
        else:
            t, b, d = x.shape
            e = self.experts(x.reshape(t * b, d))  # [E, T*B, H]: all tasks' rows in one pass
            mixed = mix_experts(g.reshape(1, t * b, -1), e).view(t, b, -1)
        return self.towers(mixed)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return self.experts.last_linear_parameters()
