"""AITM (Xi et al., "Modeling the Sequential Dependence among Audience Multi-step Conversions with
Multi-task Learning in Targeted Display Advertising", KDD 2021), sec. 3 (the AIT module).

Each task t has its own tower q_t = Tower_t(x) (`bottom_dims`). Along the cascade (`depends_on`),
the Adaptive Information Transfer module fuses what the parent step transfers with the task's own
representation:

    p_{t-1} = g_{t-1}(z_{t-1})                       (transfer MLP: Linear + ReLU)
    z_t = sum_{u in {p_{t-1}, q_t}} w_u h3(u)
    w_u = softmax_u( <h1(u), h2(u)> / sqrt(k) )

with z_t = q_t for a root task, and y_t = sigmoid(MLP_t(z_t)) (`tower_dims`). Choices: h1, h2 map to
k = `aitm_dim` (the attention dimension), h3 maps to the tower width so z_t and q_t have one size;
every dependent task has its own g, h1, h2, h3 (the paper's two-task model has one of each). A task
tree (several children of one parent) is handled edge by edge. Per-task inputs x_t feed Tower_t.
The behavioural-expectation calibrator is a loss term (`automtl.losses`).
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
from automtl.models.heads import cascade_order, parent_indices
from automtl.models.registry import register_arch


class InfoTransfer(nn.Module):
    """The AIT module of one cascade edge: (z_parent, q_t) -> z_t."""

    def __init__(self, dim: int, attn_dim: int) -> None:
        super().__init__()
        self.transfer = nn.Sequential(nn.Linear(dim, dim), nn.ReLU())
        self.h1 = nn.Linear(dim, attn_dim)
        self.h2 = nn.Linear(dim, attn_dim)
        self.h3 = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(attn_dim)

    def forward(self, z_parent: Tensor, q: Tensor) -> Tensor:
        u = torch.stack([self.transfer(z_parent), q], dim=1)  # [B, 2, H]
        w = torch.softmax((self.h1(u) * self.h2(u)).sum(-1) * self.scale, dim=1)  # [B, 2]
        return torch.bmm(w.unsqueeze(1), self.h3(u)).squeeze(1)


@register_arch("aitm")
class AITM(Body):
    """Per-task towers linked by adaptive information transfer along the cascade."""

    needs_cascade = True

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(cfg, in_dim, tasks)
        dims = require_layers(cfg, "bottom_dims")
        self.encoders = StackedMLP(self.n_tasks, in_dim, dims, cfg.activation, cfg.dropout)
        h = self.encoders.out_dim
        self.order = cascade_order(self.tasks)
        self.parents = parent_indices(self.tasks)
        self.ait = nn.ModuleDict(
            {t.name: InfoTransfer(h, cfg.aitm_dim) for t in self.tasks if t.depends_on is not None}
        )
        self.towers = Towers(self.n_tasks, h, cfg.tower_dims, cfg.activation, cfg.dropout)

    def forward(self, x: BodyInput) -> Tensor:
        q = self.encoders(as_input(x, self.n_tasks))  # [T, B, H]
        z: list[Tensor | None] = [None] * self.n_tasks
        for i in self.order:  # cascade steps (T is 2-3), sequential by definition
            parent = self.parents[i]
            z[i] = q[i] if parent is None else self.ait[self.tasks[i].name](z[parent], q[i])
        return self.towers(torch.stack(z, dim=0))  # type: ignore[arg-type]
