"""SNR (Ma, Zhao, Chen, Li, Hong, Chi, "SNR: Sub-Network Routing for Flexible Parameter Sharing in
Multi-Task Learning", AAAI 2019), sec. 3, Fig. 1(b)-(c).

The shared bottom is split into `n_levels` layers of `n_experts` parallel sub-networks (MLPs of
`expert_dims`, one `StackedMLP` per layer). Between consecutive layers, and from the last layer to
the task towers, every (upper i, lower j) connection carries a coding variable z_ij:

    SNR-Trans:  v_i = sum_j z_ij W_ij u_j          (a learned H x H transformation per edge)
    SNR-Aver:   v_i = sum_j z_ij u_j               (I_ij: a z-weighted sum of same-size outputs)

where u_j is sub-network j's output and v_i the input of upper sub-network (or task tower) i. The
z are hard-concrete variables (`HardConcreteGates`, Louizos et al. 2018) trained jointly with the
network; the loss adds ``l0_weight * sum_ij P(z_ij != 0)`` (the L0 penalty, the body's `l0` term),
so unneeded connections close exactly (z = 0 at serving) and the model prunes its own routing.

Choices where the paper is not specific: the first layer reads the body input directly (no coding
variables on the input, as in the paper's figure); the last layer connects to the towers through
coding variables (so a task can drop sub-networks); one noise sample per mini-batch; log alpha
starts at 3 (all connections open); W_ij initialised like `nn.Linear`. Per-task inputs
``[T, B, D]``: the shared sub-networks read their mean over tasks (as in PLE's shared branch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.schema import TaskSpec
from automtl.models.base import Body, BodyInput, as_input, require_layers
from automtl.models.blocks import StackedMLP, Towers
from automtl.models.hard_concrete import HardConcreteGates
from automtl.models.registry import register_arch


class Route(nn.Module):
    """Coding-variable connections from `n_in` outputs to `n_out` inputs: ``[n_in, B, H]`` ->
    ``[n_out, B, H]`` (Trans: z-scaled transformations; Aver: z-weighted sum)."""

    def __init__(self, n_out: int, n_in: int, dim: int, variant: str) -> None:
        super().__init__()
        self.z = HardConcreteGates((n_out, n_in))
        self.weight: nn.Parameter | None = None
        if variant == "trans":
            bound = 1.0 / math.sqrt(dim)
            self.weight = nn.Parameter(torch.empty(n_out, n_in, dim, dim).uniform_(-bound, bound))

    def forward(self, u: Tensor) -> Tensor:
        z = self.z().to(u.dtype)
        if self.weight is None:
            return torch.einsum("ij,jbh->ibh", z, u)
        w = z[:, :, None, None] * self.weight.to(u.dtype)
        return torch.einsum("jbh,ijhk->ibk", u, w)  # one GEMM over (j, h)


@register_arch("snr")
class SNR(Body):
    """Layers of sub-networks routed by L0-regularised coding variables (Trans or Aver)."""

    aux_terms = ("l0",)

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(cfg, in_dim, tasks)
        dims = require_layers(cfg, "expert_dims")
        n = cfg.n_experts
        layers, d = [], in_dim
        for _ in range(cfg.n_levels):
            layers.append(StackedMLP(n, d, dims, cfg.activation, cfg.dropout))
            d = layers[-1].out_dim
        self.subnets = nn.ModuleList(layers)
        outs = [n] * (cfg.n_levels - 1) + [self.n_tasks]
        self.routes = nn.ModuleList(Route(o, n, d, cfg.snr_variant) for o in outs)
        self.towers = Towers(self.n_tasks, d, cfg.tower_dims, cfg.activation, cfg.dropout)
        self.l0_weight = cfg.l0_weight

    def forward(self, x: BodyInput) -> Tensor:
        x = as_input(x, self.n_tasks)
        u = self.subnets[0](x.mean(0) if x.dim() == 3 else x)  # [n, B, H]
        for route, subnet in zip(self.routes[:-1], self.subnets[1:]):
            u = subnet(route(u))
        return self.towers(self.routes[-1](u))

    def gates(self) -> list[Tensor]:
        """The coding variables z of every routing layer (test-time values in eval mode)."""
        return [r.z() for r in self.routes]

    def aux_losses(self, labels: Tensor) -> list[Tensor]:
        return [self.l0_weight * torch.stack([r.z.l0() for r in self.routes]).sum()]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return self.subnets[-1].last_linear_parameters()
