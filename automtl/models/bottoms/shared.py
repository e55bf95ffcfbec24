"""The default input bottom "shared": field embeddings + pooled sequences + dense values, concat.

x = [e_1, ..., e_F, pool(seq_1), ..., pool(seq_S), dense] in R^{F*d + S*d + n_dense}: the
embedding-and-concatenate input layer shared by SharedBottom (Caruana, 1997), MMoE (KDD 2018),
PLE (RecSys 2020), ESMM (SIGIR 2018) and AITM (KDD 2021). Sequence pooling is mean or target
attention (`model.seq_pooling`, see `automtl.models.embedding`).

With ``copies = T`` (used by the single-task baseline) each task gets its own independent
embedding table replica, looked up in the same single call, and the output is ``[T, B, D]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.models.embedding import FeatureEmbedding, SequencePooling
from automtl.models.registry import register_bottom


@register_bottom("shared")
class SharedInput(nn.Module):
    """Embeddings + sequence pooling + dense -> ``[B, D]`` (``[copies, B, D]`` when copies > 1)."""

    def __init__(
        self,
        cfg: ModelConfig,
        features: Sequence[FeatureSpec],
        tasks: Sequence[TaskSpec],
        copies: int = 1,
    ) -> None:
        super().__init__()
        d = cfg.embedding_dim
        self.copies = copies
        self.embedding = FeatureEmbedding(features, d, copies=copies)
        n_seq = len(self.embedding.sequence_specs)
        self.pooling = SequencePooling(features, d, cfg.seq_pooling) if n_seq else None
        self.out_dim = (self.embedding.n_sparse + n_seq) * d + self.embedding.n_dense

    def forward(self, batch: Batch) -> Tensor:
        fused = self.embedding.pooled(batch, self.pooling)  # mean/sum pooling: one bag lookup
        if fused is not None:
            dense = batch.dense.repeat(self.copies, 1) if self.copies > 1 else batch.dense
            x = torch.cat([fused, dense.to(fused.dtype)], dim=1)
            return x.view(self.copies, -1, self.out_dim) if self.copies > 1 else x
        emb = self.embedding(batch)
        parts = [emb.sparse.flatten(1)]
        if self.pooling is not None:
            parts.append(self.pooling(emb).flatten(1))
        parts.append(emb.dense.to(parts[0].dtype))
        x = torch.cat(parts, dim=1)
        return x.view(self.copies, -1, self.out_dim) if self.copies > 1 else x
