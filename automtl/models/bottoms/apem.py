"""APEM: Adaptive Sample-wise Representation Generator (ASRG) and explicit Pattern Selector.

Paper: Tao, Ha, Ma, Cheng, Lin, Guo, "Adaptive Pattern Extraction Multi-Task Learning for
Multi-Step Conversion Estimations", arXiv 2301.02494 (2023). Equations implemented here:

- Eq. (11)-(13) dynamic selector ``z = f_D(MLP(H))`` in R^K with the smooth step
  ``f_D(z) = 0 (z <= -g/2); -(2/g^3) z^3 + (3/(2g)) z + 1/2 (|z| < g/2); 1 (z >= g/2)``
  and ``g = max(g0 - decay * step, g_min)`` (paper: g0 = 10, decay = 2e-4, g_min = 1e-3).
- Eq. (14)-(16) inducing points I in R^{K x d}; masked query ``Q = I * z`` (row k scaled by z_k);
  per head j ``O_j = Attention(Q_j, H W^K_j, H W^V_j)``; ``O = concat_j(O_j) W^O``: O(K*F) cost.
- Eq. (17) ``Y = LayerNorm(O + residual)``.
- Eq. (18)-(19) Pattern Selector: task indicator alpha_i^k in R^d per layer k;
  ``F_i^k = Attention(alpha_i^k, Y, Y)``; ``T_i^k = LayerNorm(T_i^{k-1} + F_i^k)``, T_i^0 ignored.

Choices where the paper is ambiguous (documented and tested):
- Residual of Eq. (17): the paper writes LayerNorm(O, H) but O is K x d and H is F x d. We add the
  masked inducing points, ``Y = LN(Q + O)`` (Set Transformer's MAB(I, H) = LN(I + MHA(I, H, H))),
  which keeps Y in R^{K x d} as Sec. 3.2 states. The query has no extra projection (the inducing
  points are learned, so W^Q would be redundant); a masked row (z_k = 0) attends uniformly.
- Gamma schedule: ``step`` counts training forward passes (``module.training`` and grad enabled),
  kept as a buffer on the module's device so the shared trainer needs no hook and no host sync.
  With the paper's decay, g stays soft (about 10 -> 9.8 after 1000 steps); ``apem_gamma_decay``
  sets how fast the mask hardens (g reaches 1 after (g0 - 1) / decay steps).
- Transformation layer of Eq. (11): one hidden ReLU layer of size max(16, 2K) on flatten(H).
- Fields H: sparse embeddings, pooled sequences (``seq_pooling``) and one field per dense value,
  ``x_j * v_j`` with a learned vector v_j (the paper log-rounds numbers into ids instead).
- Attention heads: ``transformer_heads`` (must divide ``embedding_dim``; paper: 2).
- As a bottom of other bodies, ASRG outputs flatten(Y) [B, K * d] (one shared input). The full
  APEM arch ("apem") puts the Pattern Selector and towers on that bottom, or runs its own ASRG
  over any other bottom's output (see `APEM`).
- Pattern Selector weights (W^K, W^V, W^O, LayerNorm) are separate per task and per layer (the
  "Task Specific Adapter" of Fig. 6); attention heads as in Eq. (15).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.models.base import Body, BodyInput, as_input
from automtl.models.blocks import Towers, mlp
from automtl.models.embedding import FeatureEmbedding, SequencePooling
from automtl.models.registry import register_arch, register_bottom
from automtl.models.bottoms._attention import multihead_attention


def smooth_step(z: Tensor, gamma: Tensor | float) -> Tensor:
    """Eq. (13) f_D: 0 below -gamma/2, 1 above gamma/2, a C1 cubic in between."""
    g = torch.as_tensor(gamma, dtype=z.dtype, device=z.device)
    # clamp first so no huge z^3 / g^3 (inf * 0 = NaN) meets a masked-out branch in backward;
    # the outer where makes the outside values exactly 0 / 1 (the cubic is off by rounding)
    zc = torch.clamp(z, -g / 2, g / 2)
    cubic = -2.0 / g**3 * zc**3 + 1.5 / g * zc + 0.5
    return torch.where(z <= -g / 2, torch.zeros_like(z),
                       torch.where(z >= g / 2, torch.ones_like(z), cubic))


@dataclass(frozen=True)
class GammaSchedule:
    """gamma(step) = max(start - decay * step, minimum) (APEM Sec. 3.1, below Eq. (13))."""

    start: float = 10.0
    decay: float = 2e-4
    minimum: float = 1e-3

    def __call__(self, step: Tensor | int) -> Tensor:
        s = torch.as_tensor(step, dtype=torch.float32)
        return torch.clamp(self.start - self.decay * s, min=self.minimum)


class ASRG(nn.Module):
    """Adaptive Sample-wise Representation Generator: H [B, F, d] -> Y [B, K, d].

    Each call in training mode (with grad enabled) advances the step of the gamma schedule.
    """

    def __init__(self, n_fields: int, dim: int, inducing_points: int, heads: int,
                 schedule: GammaSchedule = GammaSchedule()) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"ASRG dim {dim} is not divisible by {heads} heads")
        k = inducing_points
        self.heads = heads
        self.schedule = schedule
        hidden = max(16, 2 * k)
        self.selector = nn.Sequential(mlp(n_fields * dim, [hidden], "relu"), nn.Linear(hidden, k))
        self.inducing = nn.Parameter(torch.randn(k, dim) / dim**0.5)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim, bias=False)
        self.w_o = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.out_dim = k * dim

    def gamma(self) -> Tensor:
        """Current gamma of the schedule (a tensor on the module's device)."""
        return self.schedule(self.step)

    def selection(self, h: Tensor) -> Tensor:
        """The dynamic selector z_K = f_D(MLP(H)) in [0, 1]^K, Eq. (11)-(12): [B, K]."""
        return smooth_step(self.selector(h.flatten(1)), self.gamma().to(h.dtype))

    def forward(self, h: Tensor) -> Tensor:
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                self.step += 1
        z = self.selection(h)
        q = self.inducing.unsqueeze(0) * z.unsqueeze(-1)  # Eq. (14): [B, K, d]
        o = self.w_o(multihead_attention(q, self.w_k(h), self.w_v(h), self.heads))
        return self.norm(q + o)  # Eq. (17), residual = masked inducing points


class PatternSelector(nn.Module):
    """Explicit Pattern Selector, Eq. (18)-(19): Y [B, K, d] (or [T, B, K, d]) -> [B, T, d].

    Per layer k and task i: F = Attention(alpha_i^k, Y W^K, Y W^V) W^O, T^k = LN(T^{k-1} + F).
    """

    def __init__(self, n_tasks: int, dim: int, layers: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"Pattern Selector dim {dim} is not divisible by {heads} heads")
        self.heads, self.dim = heads, dim
        scale = dim**-0.5
        self.alpha = nn.Parameter(torch.randn(layers, n_tasks, dim) * scale)
        self.w_k = nn.Parameter(torch.randn(layers, n_tasks, dim, dim) * scale)
        self.w_v = nn.Parameter(torch.randn(layers, n_tasks, dim, dim) * scale)
        self.w_o = nn.Parameter(torch.randn(layers, n_tasks, dim, dim) * scale)
        self.b_o = nn.Parameter(torch.zeros(layers, n_tasks, dim))
        self.ln_w = nn.Parameter(torch.ones(layers, n_tasks, dim))
        self.ln_b = nn.Parameter(torch.zeros(layers, n_tasks, dim))

    def forward(self, y: Tensor) -> Tensor:
        """y: shared [B, K, d] or per task [T, B, K, d] (task i reads y[i]) -> [B, T, d]."""
        b = y.shape[-3]
        spec = "bfd,tde->btfe" if y.dim() == 3 else "tbfd,tde->btfe"
        t = None
        for k in range(self.alpha.shape[0]):
            keys = torch.einsum(spec, y, self.w_k[k])  # [B, T, K, d]
            vals = torch.einsum(spec, y, self.w_v[k])
            q = self.alpha[k][None, :, None, :].expand(b, -1, 1, -1)  # [B, T, 1, d]
            f = multihead_attention(q, keys, vals, self.heads).squeeze(2)  # [B, T, d]
            f = torch.einsum("btd,tde->bte", f, self.w_o[k]) + self.b_o[k]
            x = f if t is None else t + f  # T_i^0 is ignored at the first layer
            t = F.layer_norm(x, (self.dim,)) * self.ln_w[k] + self.ln_b[k]
        assert t is not None
        return t


def schedule_from(cfg: ModelConfig) -> GammaSchedule:
    """The gamma schedule of a model config (``apem_gamma_start/decay/min``)."""
    return GammaSchedule(cfg.apem_gamma_start, cfg.apem_gamma_decay, cfg.apem_gamma_min)


@register_bottom("apem")
class ASRGBottom(nn.Module):
    """ASRG as an input bottom: field embeddings H [B, F, d] -> flatten(Y) [B, K * d] (shared)."""

    def __init__(self, cfg: ModelConfig, features: Sequence[FeatureSpec],
                 tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        d = cfg.embedding_dim
        self.dim = d
        self.embedding = FeatureEmbedding(features, d)
        n_seq = len(self.embedding.sequence_specs)
        self.pooling = SequencePooling(features, d, cfg.seq_pooling) if n_seq else None
        n_dense = self.embedding.n_dense
        self.dense_vectors = nn.Parameter(torch.randn(n_dense, d) * 0.05) if n_dense else None
        n_fields = self.embedding.n_sparse + n_seq + n_dense
        self.asrg = ASRG(n_fields, d, cfg.inducing_points, cfg.transformer_heads, schedule_from(cfg))
        self.out_dim = self.asrg.out_dim

    def fields(self, batch: Batch) -> Tensor:
        """H [B, F, d]: sparse, pooled-sequence and dense fields."""
        emb = self.embedding(batch)
        parts = [emb.sparse]
        if self.pooling is not None:
            parts.append(self.pooling(emb))
        if self.dense_vectors is not None:
            parts.append(emb.dense.to(emb.sparse.dtype).unsqueeze(-1) * self.dense_vectors)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, batch: Batch) -> Tensor:
        return self.asrg(self.fields(batch)).flatten(1)


@register_arch("apem")
class APEM(Body):
    """Full APEM body: ASRG -> Pattern Selector -> one tower per task.

    On the ``apem`` bottom the input already is flatten(Y) ``[B, K * d]`` and goes straight to the
    Pattern Selector. On any other bottom the body runs its own ASRG over the bottom output cut
    into d-sized fields (the shared bottom's output is field-aligned: [e_1 .. e_F, pooled
    sequences, dense]; zero-padded to a multiple of d); per-task inputs ``[T, B, D]`` go through
    the same ASRG and task i's Pattern Selector reads task i's Y. The paper's sequential-dependence
    loss L_D-Task is the ``loss.dependency`` term.
    """

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(cfg, in_dim, tasks)
        d = cfg.embedding_dim
        self.dim = d
        self.asrg: ASRG | None = None
        if cfg.bottom == "apem":
            if in_dim % d:
                raise ValueError(f"APEM input dim {in_dim} is not K * embedding_dim ({d})")
        else:
            n_fields = -(-in_dim // d)
            self.pad = n_fields * d - in_dim
            self.asrg = ASRG(n_fields, d, cfg.inducing_points, cfg.transformer_heads,
                             schedule_from(cfg))
        self.selector = PatternSelector(self.n_tasks, d, cfg.ps_layers, cfg.transformer_heads)
        self.towers = Towers(self.n_tasks, d, cfg.tower_dims, cfg.activation, cfg.dropout)

    def forward(self, x: BodyInput) -> Tensor:
        x = as_input(x, self.n_tasks)  # [B, D] or [T, B, D]
        if self.asrg is None:
            y = x.view(*x.shape[:-1], -1, self.dim)  # the ASRG bottom's Y
        else:
            h = F.pad(x, (0, self.pad)) if self.pad else x
            h = h.reshape(-1, h.shape[-1] // self.dim, self.dim)  # [B or T*B, F, d]
            y = self.asrg(h)
            y = y.view(*x.shape[:-1], *y.shape[1:])
        return self.towers(self.selector(y).transpose(0, 1))  # [T, B, d] -> [T, B]
