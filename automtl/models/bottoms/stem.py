"""STEM: shared and task-specific embedding tables with an All-Forward-Task-specific-Backward gate.

Paper: Su, Pan, Wang, Xiao, Quan, Chen, Jiang, "STEM: Unleashing the Power of Embeddings for
Multi-task Recommendation", AAAI 2024. STEM-Net keeps one shared embedding table E_0 plus one
table E_k per task; task k's gate sees every table in the forward pass, but gradients from task k
reach only E_0 and E_k (stop-gradient on E_j, j != k).

As a bottom (its per-task outputs feed any body), the tables play the role of STEM-Net's experts:

    v_g = E_g(x)                      [B, F, s]     g = 0 (shared), 1..T (tasks)
    u_{k,g} = v_g if g in {0, k} else stopgrad(v_g)
    w_k = softmax_g(Gate_k(flatten(v_0 + v_k)))      [B, F, T+1]   (the official code gates on
                                                                     own + shared embeddings)
    r_k = [flatten(v_0), flatten(v_k), flatten(sum_g w_{k,g} * u_{k,g}), dense]

Choices (documented and tested): gate weights are per field (the paper gates whole expert
outputs; here each field chooses its mix of tables); r_k keeps the shared and own embeddings
explicitly next to the gated mixture so a body sees the task's own view undiluted; every table has
dimension ``stem_embedding_dim``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.models.blocks import StackedLinear
from automtl.models.embedding import FeatureEmbedding, SequencePooling
from automtl.models.registry import register_bottom


class AFTBGate(nn.Module):
    """All-Forward-Task-specific-Backward mixing of T+1 embedding views into per-task outputs.

    forward(views [T+1, B, F, s], index 0 shared) -> [T, B, 3 * F * s].
    """

    def __init__(self, n_tasks: int, n_fields: int, dim: int) -> None:
        super().__init__()
        self.n_tasks, self.n_fields = n_tasks, n_fields
        self.gates = StackedLinear(n_tasks, n_fields * dim, n_fields * (n_tasks + 1))
        self.out_dim = 3 * n_fields * dim

    def forward(self, views: Tensor) -> Tensor:
        g1, b, f, _ = views.shape
        t = self.n_tasks
        shared, own = views[0], views[1:]  # [B, F, s], [T, B, F, s]
        logits = self.gates((shared.unsqueeze(0) + own).flatten(2))  # [T, B, F * (T+1)]
        w = torch.softmax(logits.view(t, b, f, g1), dim=-1)
        # mix[k] = w[k, :, :, 0] v_0 + w[k, :, :, k+1] v_k + sum_{j != k} w[k, :, :, j+1] sg(v_j):
        # the full mix on detached views plus the two gradient-carrying terms' live parts.
        detached = views.detach()
        mix = torch.einsum("tbfg,gbfs->tbfs", w, detached)
        idx = torch.arange(t, device=views.device)
        w_own = w[idx, :, :, idx + 1].unsqueeze(-1)  # [T, B, F, 1]
        mix = mix + w[..., :1] * (shared - detached[0]) + w_own * (own - detached[1:])
        return torch.cat([shared.unsqueeze(0).expand(t, -1, -1, -1).flatten(2),
                          own.flatten(2), mix.flatten(2)], dim=-1)


@register_bottom("stem")
class STEMBottom(nn.Module):
    """STEM bottom: T+1 embedding tables (one lookup, `FeatureEmbedding(copies=T+1)`; copy 0 is
    shared, copy k+1 is task k's) -> AFTB gate -> per-task ``[T, B, 3 * F * s + n_dense]``.

    Fields are the sparse fields plus pooled sequences (``seq_pooling``), each from its table.
    """

    def __init__(self, cfg: ModelConfig, features: Sequence[FeatureSpec],
                 tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        s = cfg.stem_embedding_dim
        self.n_tasks = len(tasks)
        self.embedding = FeatureEmbedding(features, s, copies=self.n_tasks + 1)
        n_seq = len(self.embedding.sequence_specs)
        self.pooling = SequencePooling(features, s, cfg.seq_pooling) if n_seq else None
        n_fields = self.embedding.n_sparse + n_seq
        self.gate = AFTBGate(self.n_tasks, n_fields, s)
        self.out_dim = self.gate.out_dim + self.embedding.n_dense

    def forward(self, batch: Batch) -> Tensor:
        emb = self.embedding(batch)  # rows: (T+1) * B, copy-major
        fields = emb.sparse
        if self.pooling is not None:
            fields = torch.cat([fields, self.pooling(emb)], dim=1)
        b = batch.sparse.shape[0]
        views = fields.view(self.n_tasks + 1, b, *fields.shape[1:])
        mixed = self.gate(views)  # [T, B, 3 F s]
        dense = batch.dense.to(mixed.dtype).unsqueeze(0).expand(self.n_tasks, -1, -1)
        return torch.cat([mixed, dense], dim=-1)
