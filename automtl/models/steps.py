"""Behaviour sequences read as activity, step by step (bodies with `Body.reads_batch`).

- `activity_counts`: how many real (non-padding) items each sequence field holds per row, the
  user-activity signal of STAN's lifecycle stage.
- `StepEmbedding`: the sequence fields as one stream of steps for recurrent bodies (MoSE): step t
  is the concatenation over the fields of their t-th item's embedding (a zero vector where a
  field holds no item at t), and a row's stream ends after its last real item in any field.

The dataset contract pads sequences with id 0 and does not fix where the padding sits; a row's
length is therefore the position of its last real item + 1 (any padding inside counts as an
empty step), which is the number of items when the padding is at the end, as in every loader.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec
from automtl.models.embedding import embedding_lookup


def activity_counts(batch: Batch, names: Sequence[str]) -> Tensor:
    """Real items per row and sequence field, ``[B, len(names)]`` float (0 columns: ``[B, 0]``)."""
    rows = batch.sparse.shape[0]
    if not names:
        return batch.dense.new_zeros((rows, 0))
    return torch.stack([(batch.sequences[n] != 0).sum(1) for n in names], dim=1).float()


class StepEmbedding(nn.Module):
    """Own embedding table over the sequence fields (field f owns its vocabulary's rows) and the
    step stream ``[B, L, S * d]`` with per-row lengths (module docstring); L = longest field."""

    def __init__(self, features: Sequence[FeatureSpec], dim: int) -> None:
        super().__init__()
        sparse_vocab = {f.name: f.vocab_size for f in features if f.kind == "sparse"}
        seqs = [f for f in features if f.kind == "sequence"]
        self.names = [f.name for f in seqs]
        self.max_len = max((f.max_len for f in seqs), default=0)
        self.out_dim = len(seqs) * dim
        offsets, total = [], 0
        for f in seqs:
            vocab = f.vocab_size or sparse_vocab.get(f.shares_with or "", 0)
            offsets.append(total)
            total += max(vocab, 1)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long).view(1, -1, 1),
                             persistent=False)
        self.weight = nn.Parameter(torch.empty(max(total, 1), dim).normal_(0.0, 0.05))

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Steps ``[B, L, S * d]`` and lengths ``[B]`` (int64, 0 for a row without items)."""
        ids = torch.stack([self._padded(batch.sequences[n]) for n in self.names], dim=1)  # [B,S,L]
        valid = ids != 0
        emb = embedding_lookup(self.weight, ids + self.offsets)  # [B, S, L, d]
        emb = emb * valid.unsqueeze(-1).to(emb.dtype)
        b, s, length, d = emb.shape
        steps = emb.permute(0, 2, 1, 3).reshape(b, length, s * d)
        position = torch.arange(1, length + 1, device=ids.device)
        lengths = (valid.any(1).long() * position).amax(1)  # last real step + 1
        return steps, lengths

    def _padded(self, seq: Tensor) -> Tensor:
        seq = seq.long()
        pad = self.max_len - seq.shape[1]
        return torch.nn.functional.pad(seq, (0, pad)) if pad else seq


__all__ = ["StepEmbedding", "activity_counts"]
