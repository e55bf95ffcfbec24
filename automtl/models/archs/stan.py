"""STAN (Li, Zheng, Xiao, Wang, "STAN: Stage-Adaptive Network for Multi-Task Recommendation by
Learning User Lifecycle-Based Representation", RecSys 2023, arXiv 2306.12232; Shopee).

A user's lifecycle stage is characterised by their preference for each task (a new user browses,
a mature one buys). STAN (i) detects the stage as a learned, continuous vector of per-task user
preferences, (ii) smooths it with a Beta prior so users with little activity get a stable
estimate, (iii) conditions the multi-task network on it and (iv) weights each task's loss by the
user's stage, so each user's prioritised tasks count more. Implemented here:

    stage id      k_u = the dataset's stage field, or derived from activity (below)
    detection     p_hat_u = sigmoid(MLP([E_stage[k_u], log(1 + a_u)]))        (one per task)
    Beta prior    p_u = (n_u p_hat_u + kappa m) / (n_u + kappa),  m = sigmoid(b), kappa > 0
    stage repr.   s_u = [E_stage[k_u], p_u]
    network       g^k = softmax(W_k [x, s_u]) over MMoE experts f_i(x);
                  y^k = sigmoid(tower_k([sum_i g^k_i f_i(x), s_u]))
    losses        L_stage = BCE(p_u, y) * stan_weight   (body term ``model_stage``)
                  task k of row u is weighted by w_uk = K r_uk / sum_j r_uj, r_uk = p_uk / m_k
                  (the user's lift over the average user; detached; mean 1 over the K tasks)

Stage from activity (automtl's datasets have no stage field): a_u = the number of real items
in each behaviour sequence of the row (`activity_counts`), n_u = their sum (the user's observed
activity, the Beta posterior's count), and k_u = min(floor(S * log(1 + n_u) / log(1 + N)),
S - 1) with S = `stan_stages` and N = the most items the sequences can hold: log-spaced
activity buckets from "new" (no history) to "heavy" users. With `stan_stage_field` (a sparse
field holding a stage id) that field is the stage and a_u still feeds the detector when the
data has sequences (without sequences there is no activity count: n_u -> infinity, p_u = p_hat_u).

Sources and choices: the abstract and a published summary of the method (stage detection from
learned task preferences, Beta-distribution smoothing against data sparsity, stage-adaptive
task weights in the loss, task-specific units on the stage representation); the full text was
not reachable from the build machine, so no equation numbers are quoted and the formulas above
are this implementation's reading:
- preference = p(task | user): the detector sees only user-level inputs (stage, activity), never
  the item, so trained with BCE on the labels it estimates the user's rate for each task; the
  Beta posterior mean with prior mean m (learned intercept) and strength kappa (learned, init 5)
  shrinks it towards the population rate when n_u is small;
- the stage-adaptive loss weights multiply the gradient of each task's raw logit per row (forward
  values unchanged: metrics, exports and the head see the plain model), which equals weighting
  the per-row loss for every parameter below the logit, whatever the head or task weighting;
  tasks a cascade head adds (no label) keep weight 1;
- "task-specific units" are the per-task gates and towers reading the stage representation
  (MMoE experts over the bottom output x, `n_experts` x `expert_dims`); per-task inputs
  ``[T, B, D]`` are averaged for the shared experts (as FDN/MFH).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import ConfigError
from automtl.models.base import Body, BodyInput, as_input, require_layers
from automtl.models.blocks import SoftmaxGates, StackedMLP, Towers, mix_experts, mlp
from automtl.models.registry import register_arch
from automtl.models.steps import activity_counts


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by `w` (per-row task weights)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(w)
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (w,) = ctx.saved_tensors
        return grad * w.to(grad.dtype), None


def activity_stage(total: Tensor, n_stages: int, capacity: int) -> Tensor:
    """Lifecycle stage ids from total activity counts (module docstring), int64 in [0, S)."""
    scale = n_stages / math.log1p(max(capacity, 1))
    return (torch.log1p(total) * scale).floor().long().clamp(0, n_stages - 1)


@register_arch("stan")
class STAN(Body):
    """Stage detection (Beta-smoothed task preferences) -> stage-conditioned gates and towers."""

    reads_batch = True
    aux_terms = ("stage",)

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec],
                 features: Sequence[FeatureSpec] = ()) -> None:
        super().__init__(cfg, in_dim, tasks)
        dims = require_layers(cfg, "expert_dims")
        seqs = [f for f in features if f.kind == "sequence"]
        sparse = [f for f in features if f.kind == "sparse"]
        self.seq_names = [f.name for f in seqs]
        self.capacity = sum(f.max_len for f in seqs)
        self.stage_col = -1
        n_stages = cfg.stan_stages
        if cfg.stan_stage_field:
            names = [f.name for f in sparse]
            if cfg.stan_stage_field not in names:
                raise ConfigError(f"model.stan_stage_field: {cfg.stan_stage_field!r} is not a "
                                  f"sparse field; use one of {', '.join(names) or '(none)'} or "
                                  "'' to derive the stage from activity")
            self.stage_col = names.index(cfg.stan_stage_field)
            n_stages = sparse[self.stage_col].vocab_size
        elif not seqs:
            raise ConfigError("model.arch: stan derives the lifecycle stage from behaviour "
                              "sequences and this dataset has none; set model.stan_stage_field "
                              "to a sparse field holding the stage, or choose another arch")
        self.n_stages = n_stages
        d = cfg.embedding_dim
        # labelled tasks come first; a cascade head's extra towers (label "") have no preference
        self.k = sum(1 for t in self.tasks if t.label) or self.n_tasks
        self.stage_embedding = nn.Embedding(n_stages, d)
        nn.init.normal_(self.stage_embedding.weight, 0.0, 0.05)
        hidden = cfg.tower_dims[0] if cfg.tower_dims else 16  # the detector's one hidden layer
        self.detector = nn.Sequential(mlp(d + len(seqs), [hidden], cfg.activation),
                                      nn.Linear(hidden, self.k))
        self.prior_logit = nn.Parameter(torch.zeros(self.k))  # Beta prior mean m = sigmoid(b)
        self.log_strength = nn.Parameter(torch.tensor(math.log(5.0)))  # kappa
        stage_dim = d + self.k
        self.experts = StackedMLP(cfg.n_experts, in_dim, dims, cfg.activation, cfg.dropout)
        self.gates = SoftmaxGates(self.n_tasks, in_dim + stage_dim, cfg.n_experts)
        self.towers = Towers(self.n_tasks, self.experts.out_dim + stage_dim, cfg.tower_dims,
                             cfg.activation, cfg.dropout)
        self.stage_weight, self.adaptive = cfg.stan_weight, cfg.stan_adaptive_loss
        self.last_preference: Tensor | None = None
        self.last_stage: Tensor | None = None

    def stage_and_preference(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Stage ids ``[B]`` and Beta-smoothed task preferences p_u ``[B, K]``."""
        counts = activity_counts(batch, self.seq_names)  # [B, S]
        total = counts.sum(1)
        if self.stage_col >= 0:
            stage = batch.sparse[:, self.stage_col].long()
        else:
            stage = activity_stage(total, self.n_stages, self.capacity)
        e = self.stage_embedding(stage)
        p_hat = torch.sigmoid(self.detector(torch.cat([e, torch.log1p(counts).to(e.dtype)], 1)))
        if not self.seq_names:
            return stage, p_hat
        prior, kappa = torch.sigmoid(self.prior_logit), self.log_strength.exp()
        n = total.unsqueeze(1).to(p_hat.dtype)
        return stage, (n * p_hat + kappa * prior) / (n + kappa)

    def forward(self, x: BodyInput, batch: Batch) -> Tensor:
        x = as_input(x, self.n_tasks)
        x = x.mean(0) if x.dim() == 3 else x
        stage, pref = self.stage_and_preference(batch)
        self.last_stage, self.last_preference = stage.detach(), pref
        s = torch.cat([self.stage_embedding(stage), pref], 1).to(x.dtype)  # [B, d + K]
        g = self.gates(torch.cat([x, s], 1))  # [T, B, E]
        mixed = mix_experts(g, self.experts(x))  # [T, B, H]
        s_t = s.unsqueeze(0).expand(self.n_tasks, -1, -1)
        logits = self.towers(torch.cat([mixed, s_t], -1))  # [T, B]
        if self.adaptive and self.training and torch.is_grad_enabled():
            logits = _ScaleGrad.apply(logits, self.task_weights(pref))
        return logits

    def task_weights(self, pref: Tensor) -> Tensor:
        """Stage-adaptive weights ``[T, B]`` (detached): K r_uk / sum_j r_uj, 1 for extra tasks."""
        with torch.no_grad():
            lift = pref.float() / torch.sigmoid(self.prior_logit.float())
            w = (self.k * lift / lift.sum(1, keepdim=True)).t()
            extra = w.new_ones(self.n_tasks - self.k, w.shape[1])
            return torch.cat([w, extra], 0)

    def aux_losses(self, labels: Tensor) -> list[Tensor]:
        pref = self.last_preference
        assert pref is not None, "aux_losses needs a forward first"
        p = pref.float().clamp(1e-6, 1 - 1e-6)
        return [self.stage_weight * F.binary_cross_entropy(p, labels[:, : self.k].float())]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return self.experts.last_linear_parameters()
