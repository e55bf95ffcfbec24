"""PLE / CGC (Tang et al., "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL)
Model for Personalized Recommendations", RecSys 2020), sec. 4.

Level j has m_s shared experts E_s and m_k specific experts E_k per task. Task k's gate mixes its
own and the shared experts: g^{k,j}(x) = w^{k,j}(x) S^{k,j}(x), w = softmax(W_g x),
S^{k,j} = [E_{k,1..m_k}, E_{s,1..m_s}]. At every level but the last a shared gate mixes ALL experts
of the level and feeds the next level's shared branch; level j+1's task-k branch reads
g^{k,j}. Towers read the last level's task outputs, y_k = t^k(g^{k,N}). n_levels = 1 is CGC.

All experts of a level (T*m_k specific + m_s shared) are one `StackedMLP` bank: one batched matmul
per layer, each expert reading its branch's rows. Gates are scattered into a zero-padded
``[T, B, E]`` matrix, so mixing is the same single `bmm` as in MMoE.

Per-task inputs x_k (task-specific bottoms; the paper has one shared input): task k's branch
at level 1 reads x_k, and the shared branch reads the mean over tasks of x_k (a choice: it keeps
one shared branch of the same width and cost, and no task dominates it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.schema import TaskSpec
from automtl.models.base import Body, BodyInput, as_input, require_layers
from automtl.models.blocks import SoftmaxGates, StackedMLP, Towers, mix_experts, scatter_gates
from automtl.models.registry import register_arch


class ExtractionLevel(nn.Module):
    """One CGC level: expert bank + per-task gates (+ shared gate unless it is the last level)."""

    def __init__(self, cfg: ModelConfig, in_dim: int, n_tasks: int, last: bool) -> None:
        super().__init__()
        m_k, m_s = cfg.n_specific_experts, cfg.n_shared_experts
        self.n_tasks, self.n_experts = n_tasks, n_tasks * m_k + m_s
        dims = require_layers(cfg, "expert_dims")
        self.experts = StackedMLP(self.n_experts, in_dim, dims, cfg.activation, cfg.dropout)
        self.out_dim = self.experts.out_dim
        self.task_gates = SoftmaxGates(n_tasks, in_dim, m_k + m_s)
        self.shared_gate = None if last else SoftmaxGates(1, in_dim, self.n_experts)
        shared = list(range(n_tasks * m_k, self.n_experts))
        select = [list(range(t * m_k, (t + 1) * m_k)) + shared for t in range(n_tasks)]
        branch = [t for t in range(n_tasks) for _ in range(m_k)] + [n_tasks] * m_s
        self.register_buffer("select", torch.tensor(select, dtype=torch.long), persistent=False)
        self.register_buffer("branch", torch.tensor(branch, dtype=torch.long), persistent=False)
        self.last_experts: Tensor | None = None

    def forward(self, tasks_in: Tensor, shared_in: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """tasks_in ``[B, D]`` (all branches equal) or ``[T, B, D]`` with shared_in ``[B, D]``."""
        if tasks_in.dim() == 2:
            experts = self.experts(tasks_in)  # [E, B, H]
            shared_src = tasks_in
        else:
            assert shared_in is not None
            branches = torch.cat([tasks_in, shared_in.unsqueeze(0)], dim=0)  # [T+1, B, D]
            experts = self.experts(branches.index_select(0, self.branch))
            shared_src = shared_in
        g = self.task_gates(tasks_in)  # [T, B, m_k + m_s]
        out = mix_experts(scatter_gates(g, self.select, self.n_experts), experts)
        if self.training:  # [E, B, H] of this training forward (FDN's constraints read them)
            self.last_experts = experts
        shared_out = None
        if self.shared_gate is not None:
            shared_out = mix_experts(self.shared_gate(shared_src), experts).squeeze(0)
        return out, shared_out


@register_arch("ple")
class PLE(Body):
    """`n_levels` stacked extraction levels (1 = CGC) + one tower per task."""

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(cfg, in_dim, tasks)
        levels = []
        d = in_dim
        for j in range(cfg.n_levels):
            level = ExtractionLevel(cfg, d, self.n_tasks, last=j == cfg.n_levels - 1)
            levels.append(level)
            d = level.out_dim
        self.levels = nn.ModuleList(levels)
        self.towers = Towers(self.n_tasks, d, cfg.tower_dims, cfg.activation, cfg.dropout)

    def forward(self, x: BodyInput) -> Tensor:
        h = as_input(x, self.n_tasks)
        shared = h.mean(0) if h.dim() == 3 else None
        for level in self.levels:
            h, shared = level(h, shared)
        return self.towers(h)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        # the last level's expert bank (its shared experts feed every task's gate)
        return self.levels[-1].experts.last_linear_parameters()
