"""First-order ("wide") term added to every task's logit, for any body and head.

Wide & Deep (Cheng et al., DLRS 2016, Sec. 3.1: the wide component y = w^T x + b over the raw
one-hot features) and DeepFM's first-order part (Guo et al., IJCAI 2017, Eq. (2): <w, x> + b):
one learned weight per id of every sparse field and one per dense value, plus a bias. Choices
where the papers are vague or single-task: each task has its own weights (a table of
``[ids, T]`` entries), so the term alone is one logistic regression per task; no cross-product
features (the deep body models interactions); sequence fields are not part of it (their ids are
multi-hot history, which the body pools). Weights start at zero, so a model with the term starts
exactly where the same model without it does; it is added to the body's raw logits, i.e. to the
conditional logits under the ESMM head. Data whose signal is additive per id (common in CTR logs)
is then cheap to fit for every architecture.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec
from automtl.models.embedding import embedding_lookup


class WideTerm(nn.Module):
    """``Batch -> [T, B]``: per task, sum of the weights of the batch's ids + w_dense . x + b."""

    def __init__(self, features: Sequence[FeatureSpec], n_tasks: int) -> None:
        super().__init__()
        sparse = [f for f in features if f.kind == "sparse"]
        offsets, total = [], 0
        for f in sparse:
            offsets.append(total)
            total += f.vocab_size
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long),
                             persistent=False)
        self.weight = nn.Parameter(torch.zeros(max(total, 1), n_tasks))
        n_dense = sum(1 for f in features if f.kind == "dense")
        self.dense = nn.Parameter(torch.zeros(n_dense, n_tasks))
        self.bias = nn.Parameter(torch.zeros(n_tasks))

    def forward(self, batch: Batch) -> Tensor:
        ids = batch.sparse.long() + self.offsets
        out = embedding_lookup(self.weight, ids).sum(1) + self.bias  # [B, T]
        if self.dense.shape[0]:
            out = out + batch.dense.to(self.dense.dtype) @ self.dense
        return out.t()


__all__ = ["WideTerm"]
