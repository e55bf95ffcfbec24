"""FDN (Zhou, Yu, Luo, Zhang, "Feature Decomposition for Reducing Negative Transfer: A Novel
Multi-task Learning Method for Recommender System", AAAI 2023 student abstract, arXiv 2302.05031),
sec. "Method", Fig. 2.

Each task k owns m DeComposition Pairs (DCPs, `n_specific_experts`): a task-specific expert S_kj
and a task-shared expert C_kj. Task k's gate mixes its own specific experts and the shared experts
of ALL pairs (a CGC level whose shared experts are the T*m pair partners; `ExtractionLevel` of PLE),
and its tower reads the mixture. Two constraints decompose the features:

    L_orth = sum_{k,j} || S_kj^T C_kj / B ||_F^2      (orthogonality of the pair's features)
    L_aux  = mean_{k,j} BCE(sigmoid(a_kj^T S_kj + c_kj), y_k)   (auxiliary head per pair)

so S_kj must carry what task k needs on its own and C_kj what is left, and the loss adds
``fdn_orth_weight * L_orth + fdn_aux_weight * L_aux`` (the body's `orth` and `aux` terms).

Choices where the abstract is brief: the Gram matrix is divided by the batch size B (the raw
Frobenius norm grows with B^2 and would make the weight batch-size dependent); one linear
auxiliary head per pair; one level of pairs (no progressive stacking); per-task inputs feed
their task's branch and the shared experts read the mean over tasks (as PLE).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.schema import TaskSpec
from automtl.models.archs.ple import ExtractionLevel
from automtl.models.base import Body, BodyInput, as_input
from automtl.models.blocks import StackedLinear, Towers
from automtl.models.registry import register_arch


@register_arch("fdn")
class FDN(Body):
    """Decomposition pairs (specific + shared expert) per task, gated per task, two constraints."""

    aux_terms = ("orth", "aux")

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(cfg, in_dim, tasks)
        m = max(cfg.n_specific_experts, 1)
        self.m = m
        level_cfg = dataclasses.replace(cfg, n_specific_experts=m, n_shared_experts=self.n_tasks * m)
        self.level = ExtractionLevel(level_cfg, in_dim, self.n_tasks, last=True)
        h = self.level.out_dim
        self.aux_heads = StackedLinear(self.n_tasks * m, h, 1)
        self.towers = Towers(self.n_tasks, h, cfg.tower_dims, cfg.activation, cfg.dropout)
        self.orth_weight, self.aux_weight = cfg.fdn_orth_weight, cfg.fdn_aux_weight
        # pair (k, j): specific expert k*m + j, shared partner T*m + k*m + j; head row k*m + j
        self.register_buffer("pair_task", torch.arange(self.n_tasks).repeat_interleave(m),
                             persistent=False)

    def forward(self, x: BodyInput) -> Tensor:
        h = as_input(x, self.n_tasks)
        out, _ = self.level(h, h.mean(0) if h.dim() == 3 else None)
        return self.towers(out)

    def aux_losses(self, labels: Tensor) -> list[Tensor]:
        e = self.level.last_experts
        assert e is not None, "aux_losses needs a forward first"
        n = self.n_tasks * self.m
        specific, shared = e[:n].float(), e[n:].float()  # [n, B, H] each, pair-aligned
        gram = torch.bmm(specific.transpose(1, 2), shared) / specific.shape[1]  # [n, H, H]
        orth = gram.pow(2).sum()
        aux_logits = self.aux_heads(specific).squeeze(-1).float()  # [n, B]
        # pairs of labelled tasks only: a head's extra towers (DCMT's twin, ESM2's other-action
        # path) come last among the body's tasks and have no label column
        k = labels.shape[1] * self.m
        targets = labels.float().t().index_select(0, self.pair_task[:k])
        aux = F.binary_cross_entropy_with_logits(aux_logits[:k], targets)
        return [self.orth_weight * orth, self.aux_weight * aux]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return self.level.experts.last_linear_parameters()
