"""MFH (Liu, Xia, Lei, Li, Wang, "Multi-Faceted Hierarchical Multi-Task Learning for a Large Number
of Tasks with Multi-dimensional Relations", arXiv 2110.13365, Tencent 2021), sec. 3, Fig. 3.

MFH arranges many tasks (the cartesian product of task facets, e.g. user group x behaviour) in a
nested tree: the root shares one expert pool among all tasks; each node of the first facet (a
"switcher") mixes the root's experts into its own representation and owns a sub-MMoE whose
experts only its tasks share; the leaves are the task towers. Sharing is widest at the root and
narrows level by level, so related tasks (same facet value) share more than unrelated ones:

    r_g   = sum_e softmax(W_g x)_e  f_e(x)                 (switcher g over the root experts)
    h_t   = sum_k softmax(V_t r_g)_k  f_{g,k}(r_g)          (task t in group g, its group's experts)
    y_t   = sigmoid(tower_t(h_t))

Choices, documented: the first facet's groups are `model.mfh_groups` (lists of task names); empty
means the task list cut into two consecutive halves (on a funnel: early steps click/cart vs late
steps purchase/review), the only task facet automtl's datasets carry. The paper also routes each
sample by its own facet value (new vs old user); datasets here have no such field, so every sample
goes through every switcher. Root experts: `n_experts` x `expert_dims`; experts per group:
`n_specific_experts` (>= 1) of `expert_dims`. Per-task inputs ``[T, B, D]``: the root reads their
mean (as PLE's shared branch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.schema import TaskSpec
from automtl.errors import ConfigError
from automtl.models.base import Body, BodyInput, as_input, require_layers
from automtl.models.blocks import SoftmaxGates, StackedMLP, Towers, mix_experts, scatter_gates
from automtl.models.registry import register_arch


def task_groups(tasks: Sequence[TaskSpec], groups: list[list[str]]) -> list[list[int]]:
    """Task indices per first-facet group; ConfigError unless every task is in exactly one."""
    names = [t.name for t in tasks]
    if not groups:
        half = -(-len(names) // 2)
        return [list(range(half)), list(range(half, len(names)))] if len(names) > 1 else [[0]]
    flat = [n for g in groups for n in g]
    unknown = [n for n in flat if n not in names]
    if unknown or sorted(flat) != sorted(names) or any(not g for g in groups):
        raise ConfigError(f"model.mfh_groups: {groups} must put every task ({', '.join(names)}) "
                          "in exactly one non-empty group")
    return [[names.index(n) for n in g] for g in groups]


@register_arch("mfh")
class MFH(Body):
    """Root expert pool -> one switcher (gate + sub-MMoE) per task group -> task towers."""

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(cfg, in_dim, tasks)
        dims = require_layers(cfg, "expert_dims")
        self.groups = task_groups(self.tasks, cfg.mfh_groups)
        n_groups, m = len(self.groups), max(cfg.n_specific_experts, 1)
        self.m = m
        self.root = StackedMLP(cfg.n_experts, in_dim, dims, cfg.activation, cfg.dropout)
        h = self.root.out_dim
        self.switchers = SoftmaxGates(n_groups, in_dim, cfg.n_experts)
        self.experts = StackedMLP(n_groups * m, h, dims, cfg.activation, cfg.dropout)
        self.task_gates = SoftmaxGates(self.n_tasks, h, m)
        group_of = [0] * self.n_tasks
        for g, members in enumerate(self.groups):
            for t in members:
                group_of[t] = g
        self.register_buffer("group_of_task", torch.tensor(group_of), persistent=False)
        self.register_buffer("group_of_expert", torch.arange(n_groups).repeat_interleave(m),
                             persistent=False)
        # columns of task t's group's experts in the [G * m] bank
        cols = [[group_of[t] * m + k for k in range(m)] for t in range(self.n_tasks)]
        self.register_buffer("cols", torch.tensor(cols), persistent=False)
        self.towers = Towers(self.n_tasks, self.experts.out_dim, cfg.tower_dims, cfg.activation,
                             cfg.dropout)

    def forward(self, x: BodyInput) -> Tensor:
        x = as_input(x, self.n_tasks)
        x = x.mean(0) if x.dim() == 3 else x
        r = mix_experts(self.switchers(x), self.root(x))  # [G, B, H] one per switcher
        e = self.experts(r.index_select(0, self.group_of_expert))  # [G*m, B, H2]
        g = self.task_gates(r.index_select(0, self.group_of_task))  # [T, B, m]
        return self.towers(mix_experts(scatter_gates(g, self.cols, e.shape[0]), e))

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return self.root.last_linear_parameters()
