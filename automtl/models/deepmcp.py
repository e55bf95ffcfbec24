"""DeepMCP's auxiliary subnets (Ouyang, Zhang, Ren, Qi, Liu, Du, "Representation Learning-Assisted
Click-Through Rate Prediction", IJCAI 2019, arXiv 1906.04365), Sec. 3 (the model design: the
prediction, matching and correlation subnets, joint training, online use) and Fig. 3, as
optional loss terms (`model.deepmcp`) beside any automtl architecture, which plays the prediction
subnet. Subsections are cited by name; the formulas are written out below.

All three subnets read the SAME embedding table (Fig. 3: "the prediction, matching and
correlation subnets share the same embedding matrix"): the auxiliary terms shape the shared
representation and are not used at serving (online, only the prediction subnet runs).

- Matching subnet (user-ad relationship): v_u = f_u(e_user), v_a = f_a(e_ad), two MLPs
  with ReLU hidden layers and a tanh output layer, matching score s = sigmoid(v_u^T v_a), trained
  with the click label: L_match = -mean[y log s + (1 - y) log(1 - s)].
- Correlation subnet (ad-ad relationship): skip-gram over ads clicked by the same user,
  with negative sampling: for a target ad a_t and a context ad a_c with representations
  h = f_c(e_ad) (one MLP, tanh output),
  L_corr = mean over pairs of [-log sigmoid(h_t^T h_c) - sum_{q=1..Q} log sigmoid(-h_t^T h_q)].
- Joint loss: L = L_pred + alpha * L_match + beta * L_corr (the loss terms
  ``model_deepmcp_match`` and ``model_deepmcp_corr``).

Choices where the paper is specific to its ad logs:
- user / ad fields: `model.deepmcp.user_fields` / `ad_fields`, else the fields recognised by name
  (`automtl.data.roles`); the user side is the user's sparse profile fields, the ad side the
  item id and its attributes; context fields (device, hour, ...) feed only the prediction subnet;
- the click label is the dataset's first cascade root (e.g. ``ctr``);
- the paper's correlation subnet reads a second data set of (target, context, negatives) ad tuples
  from click sequences. Here the pairs come from the training batch itself: the target is the
  impression's ad in a clicked row, the contexts are the first `window` items of the user's
  behaviour sequence over an ad field (the items the user interacted with), and every ad is
  represented by that field's embedding (a history holds ids of one field only, so the other ad
  attributes of a context ad are unknown). Without such a sequence the correlation term is absent
  (one-line warning). The Q = `negatives` negatives of a row are the target ads of other rows of
  the batch (in-batch sampling follows the ads' frequency in the logs, like word2vec's unigram
  noise); a negative equal to the target is masked.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automtl.config import DeepMCPConfig
from automtl.data.batching import Batch
from automtl.data.roles import field_roles
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import ConfigError
from automtl.models.blocks import mlp
from automtl.models.embedding import FeatureEmbedding, embedding_lookup


def _tanh_tower(in_dim: int, dims: Sequence[int]) -> nn.Sequential:
    """ReLU hidden layers, then a tanh output layer (the representation vector)."""
    *hidden, out = dims
    body = mlp(in_dim, hidden, "relu")
    return nn.Sequential(*body, nn.Linear(hidden[-1] if hidden else in_dim, out), nn.Tanh())


def _columns(kind: str, names: Sequence[str], sparse: list[str]) -> list[int]:
    for n in names:
        if n not in sparse:
            raise ConfigError(f"model.deepmcp.{kind}_fields: {n!r} is not a sparse field; use "
                              f"some of {', '.join(sparse) or '(none)'}")
    if not names:
        raise ConfigError(f"model.deepmcp: no {kind} fields recognised among "
                          f"{', '.join(sparse) or '(none)'}; name them in "
                          f"model.deepmcp.{kind}_fields, or remove model.deepmcp")
    return [sparse.index(n) for n in names]


class DeepMCP(nn.Module):
    """Matching and correlation subnets over the bottom's embedding table (module docstring).

    `observe(batch, table)` (training forwards) gathers the embeddings; `aux_losses(labels)`
    returns ``[alpha * L_match]`` and, with a correlation subnet, ``beta * L_corr``.
    """

    def __init__(self, cfg: DeepMCPConfig, features: Sequence[FeatureSpec],
                 tasks: Sequence[TaskSpec], dim: int) -> None:
        super().__init__()
        roles = field_roles(features)
        sparse = [f.name for f in features if f.kind == "sparse"]
        user = _columns("user", cfg.user_fields or roles.user, sparse)
        ad = _columns("ad", cfg.ad_fields or roles.ad, sparse)
        both = sorted(set(user) & set(ad))
        if both:
            raise ConfigError(f"model.deepmcp: field {sparse[both[0]]!r} is both a user and an ad "
                              "field; list it in one of user_fields / ad_fields")
        self.register_buffer("cols", torch.tensor(user + ad, dtype=torch.long), persistent=False)
        self.n_user = len(user)
        self.alpha, self.beta = cfg.alpha, cfg.beta
        self.root = next(i for i, t in enumerate(tasks) if t.depends_on is None)
        self.user_net = _tanh_tower(len(user) * dim, cfg.dims)
        self.ad_net = _tanh_tower(len(ad) * dim, cfg.dims)
        self.corr_net: nn.Module | None = None
        self.terms: tuple[str, ...] = ("deepmcp_match",)
        ad_names = [sparse[i] for i in ad]
        seqs = [f for f in features if f.kind == "sequence" and f.shares_with in ad_names]
        if cfg.beta > 0 and not seqs:
            warnings.warn("DeepMCP: no behaviour sequence over an ad field; the correlation "
                          "subnet (ad-ad) is off, matching only", UserWarning, stacklevel=3)
        if cfg.beta > 0 and seqs:
            seq = min(seqs, key=lambda f: ad_names.index(f.shares_with))  # the first ad field's
            self.seq_name = seq.name
            self.anchor = sparse.index(seq.shares_with or "")
            self.window, self.negatives = min(cfg.window, seq.max_len), cfg.negatives
            self.corr_net = _tanh_tower(dim, cfg.dims)
            self.terms += ("deepmcp_corr",)
        self._last: dict[str, Tensor] = {}

    def observe(self, batch: Batch, table: FeatureEmbedding) -> None:
        """Gather this training batch's user / ad (and correlation) embeddings from `table`."""
        off = table.col_offsets
        ids = batch.sparse.index_select(1, self.cols).long() + off.index_select(0, self.cols)
        e = embedding_lookup(table.weight, ids, table.sparse_grad)
        last = {"user": e[:, : self.n_user].flatten(1), "ad": e[:, self.n_user:].flatten(1)}
        if self.corr_net is not None:
            target = batch.sparse[:, self.anchor].long()
            hist = batch.sequences[self.seq_name][:, : self.window].long()
            b = target.shape[0]
            shift = torch.randint(1, max(b, 2), (b, self.negatives), device=target.device)
            neg = target[(torch.arange(b, device=target.device).unsqueeze(1) + shift) % b]
            ads = torch.cat([target.unsqueeze(1), hist, neg], dim=1) + off[self.anchor]
            last["corr"] = embedding_lookup(table.weight, ads, table.sparse_grad)
            last["hist_valid"] = hist != 0
            last["neg_valid"] = neg != target.unsqueeze(1)
        self._last = last

    def aux_losses(self, labels: Tensor) -> list[Tensor]:
        """``alpha * L_match`` (and ``beta * L_corr``) of the last observed batch."""
        last = self._last
        assert last, "DeepMCP.aux_losses needs a training forward first"
        y = labels[:, self.root].float()
        score = (self.user_net(last["user"]) * self.ad_net(last["ad"])).sum(-1).float()
        out = [self.alpha * F.binary_cross_entropy_with_logits(score, y)]
        if self.corr_net is not None:
            h = self.corr_net(last["corr"]).float()  # [B, 1 + W + Q, k]
            w = last["hist_valid"].shape[1]
            target, context, negative = h[:, :1], h[:, 1: 1 + w], h[:, 1 + w:]
            pairs = (last["hist_valid"] & (y > 0.5).unsqueeze(1)).float()  # clicked rows only
            pos = F.softplus(-(target * context).sum(-1))  # -log sigmoid(h_t . h_c)
            neg = (F.softplus((target * negative).sum(-1)) * last["neg_valid"]).sum(1)
            total = (pairs * (pos + neg.unsqueeze(1))).sum()
            out.append(self.beta * total / pairs.sum().clamp_min(1.0))
        return out


__all__ = ["DeepMCP"]
