"""YouTube's shallow tower for selection bias (Zhao, Hong, Wei, Chen, Nath, Andrews, Kumthekar,
Sathiamoorthy, Yi, Chi, "Recommending What Video to Watch Next: A Multitask Ranking System",
RecSys 2019): the model-architecture section's part on modeling and reducing position / selection
bias and its figure "adding a shallow side tower to learn selection bias" (experiments: the
position-bias results, where the shallow tower beats position as an input feature), as
`model.shallow_tower` beside any architecture (the paper's is MMoE). Sections are cited by name.

The training logs hold features that explain part of a click but are unknown when ranking, above
all the position the item was shown at (and the device, whose position bias differs). A shallow
tower reads only those features and outputs a bias logit b(position) that is ADDED to the main
model's logit in training, p(click) = sigmoid(main(x) + b(position)), so the main model need not
explain the bias with the relevance features. At serving the position is unknown ("treated as
missing") and the tower is dropped: eval-mode forwards, validation / test metrics and every export
(ONNX, TorchScript, the serving wrapper) see the main model only.

Choices where the paper is brief:
- the bias fields (`model.shallow_tower.fields`, else the fields recognised by name, e.g. the
  synthetic `position`; `automtl.data.roles`) are read ONLY by the tower: the main model's
  bottom (and the wide term) never sees them, which is what "unknown at serving" implies;
- one bias logit per task (each objective's logit gets its own bias; a task that does not depend
  on position learns ~0), from an MLP over the bias fields' embeddings (`dims`, default one
  hidden layer of 8, so position x device can interact);
- the paper's 10% feature drop-out: in training each row's bias ids are replaced by the missing
  id 0 with probability `feature_dropout`, so the tower also learns the "missing" value;
- dropping the tower at serving shifts each task's logit by a per-position constant it no longer
  adds: rankings are unchanged; calibration is that of an average position.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.config import ShallowTowerConfig
from automtl.data.batching import Batch
from automtl.data.roles import field_roles
from automtl.data.schema import FeatureSpec
from automtl.errors import ConfigError
from automtl.models.blocks import mlp


def bias_columns(cfg: ShallowTowerConfig, features: Sequence[FeatureSpec]) -> list[int]:
    """Sparse column indices of the bias fields (ConfigError when none or not sparse)."""
    sparse = [f.name for f in features if f.kind == "sparse"]
    names = list(cfg.fields) or list(field_roles(features).bias)
    for n in names:
        if n not in sparse:
            raise ConfigError(f"model.shallow_tower.fields: {n!r} is not a sparse field; use "
                              f"some of {', '.join(sparse) or '(none)'}")
    if not names:
        raise ConfigError("model.shallow_tower: the dataset has no bias field (e.g. position; "
                          "synthetic option position_bias adds one); name it in "
                          "model.shallow_tower.fields, or remove model.shallow_tower")
    if len(names) == len(sparse):
        raise ConfigError("model.shallow_tower.fields: every sparse field is a bias field, so the "
                          "main model would have no sparse input; leave some out")
    return [sparse.index(n) for n in names]


class ShallowTower(nn.Module):
    """``Batch -> [T, B]``: per-task bias logits from the bias fields (training only)."""

    def __init__(self, cfg: ShallowTowerConfig, features: Sequence[FeatureSpec], n_tasks: int,
                 dim: int) -> None:
        super().__init__()
        cols = bias_columns(cfg, features)
        vocab = [f.vocab_size for f in features if f.kind == "sparse"]
        offsets, total = [], 0
        for c in cols:
            offsets.append(total)
            total += vocab[c]
        self.register_buffer("cols", torch.tensor(cols, dtype=torch.long), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long),
                             persistent=False)
        self.embedding = nn.Embedding(total, dim)
        nn.init.normal_(self.embedding.weight, 0.0, 0.05)
        self.net = mlp(len(cols) * dim, cfg.dims, "relu")
        self.out = nn.Linear(cfg.dims[-1] if cfg.dims else len(cols) * dim, n_tasks)
        self.feature_dropout = cfg.feature_dropout

    def forward(self, batch: Batch) -> Tensor:
        ids = batch.sparse.index_select(1, self.cols).long()
        if self.training and self.feature_dropout > 0:  # the paper's feature drop-out
            ids = ids.masked_fill(torch.rand(ids.shape, device=ids.device)
                                  < self.feature_dropout, 0)
        e = self.embedding(ids + self.offsets).flatten(1)
        return self.out(self.net(e)).t()


__all__ = ["ShallowTower", "bias_columns"]
