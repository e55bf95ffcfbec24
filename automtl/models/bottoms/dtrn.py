"""DTRN: task-specific bottom representation (TIM + TRM).

Paper: Liu, Zhou, Jiang, Ge, Lian, "Deep Task-specific Bottom Representation Network for
Multi-Task Recommendation", CIKM 2023. Equations implemented here:

- Eq. (2) hypernetwork: a 2-layer ReLU MLP on [task embedding T_t, sequence-type embedding BS_b]
  generates the conditioning of one injection site (one MLP per site and layer).
- Eq. (3)-(5) multi-head (self-)attention and the point-wise FFN of the base transformer.
- Eq. (6) conditional layer norm, injection ``ln``:
  ``CLN(X) = gamma_tb * gamma * (X - mu) / sigma + beta_tb + beta``.
- Table 6 injections ``qkv`` / ``ffn1`` / ``ffn2``: ``W_tb = W * (1 + dW_tb)`` (and the same on the
  biases of the FFN layers), dW_tb reshaped from the hypernetwork output.
- Eq. (7) encoder (MHSA + FFN) over the behaviour sequence and decoder (target item as the query
  attending to the encoder output), residual + (C)LN around every sub-layer.
- Eq. (8) ``interest_t = concat_b out_dec[t, b]`` over the sequence fields.
- Eq. (9) TRM: ``r_t = raw_t * sigmoid(MLP_t(raw_t))`` with ``raw_t = [field embeddings, interest_t]``.

Choices where the paper is silent (documented and tested):
- The hypernetwork output is a *residual*: ``gamma_tb = 1 + h_gamma``, ``beta_tb = h_beta`` and
  ``W_tb = W * (1 + h_W)``. Its last layer starts at zero, so an untrained DTRN is exactly the
  plain transformer and a zero hypernetwork output gives plain LayerNorm.
- Only the chosen injection site is conditioned; the other sites use ordinary shared weights and
  LayerNorm. Encoder and decoder both have ``transformer_layers`` blocks.
- No positional encoding (the paper does not mention one); FFN hidden size is ``2 * dim``.
- Padding (id 0) never takes part: padded keys are masked, and a sequence with no valid item
  makes the decoder attention return zeros (the query then passes through the residual only).
- The decoder query is the embedding of the target item field the sequence shares its table
  with (``FeatureSpec.shares_with``); a sequence without one gets a learned query vector.
- raw_t also carries the dense inputs (the paper's data has none).
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.models.blocks import StackedMLP, mlp
from automtl.models.embedding import FeatureEmbedding
from automtl.models.registry import register_bottom
from automtl.models.bottoms._attention import multihead_attention

Injection = Literal["ln", "qkv", "ffn1", "ffn2"]
INJECTIONS: tuple[str, ...] = ("ln", "qkv", "ffn1", "ffn2")


class HyperNetwork(nn.Module):
    """Eq. (2): 2-layer ReLU MLP mapping a (task, sequence) pair embedding to conditioning."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.hidden = mlp(in_dim, [hidden], "relu")
        self.out = nn.Linear(hidden, out_dim)
        # Residual conditioning starts at "no change" (see module docstring).
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, pair: Tensor) -> Tensor:
        return self.out(self.hidden(pair))


class CondLinear(nn.Module):
    """Linear layer whose weight (and bias) may be modulated per pair: W * (1 + dW_p)."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True) -> None:
        super().__init__()
        self.lin = nn.Linear(d_in, d_out, bias=bias)
        self.d_in, self.d_out = d_in, d_out
        self.n_cond = d_in * d_out + (d_out if bias else 0)

    def forward(self, x: Tensor, delta: Tensor | None = None) -> Tensor:
        """x: [P, ..., d_in]; delta: [P, n_cond] or None (plain linear)."""
        if delta is None:
            return self.lin(x)
        p = x.shape[0]
        nw = self.d_in * self.d_out
        w = self.lin.weight * (1.0 + delta[:, :nw].view(p, self.d_out, self.d_in))
        xf = x.reshape(p, -1, self.d_in)
        if self.lin.bias is None:
            y = torch.bmm(xf, w.transpose(1, 2))
        else:
            b = self.lin.bias * (1.0 + delta[:, nw:])
            y = torch.baddbmm(b.unsqueeze(1), xf, w.transpose(1, 2))
        return y.reshape(*x.shape[:-1], self.d_out)


class CondLayerNorm(nn.Module):
    """Eq. (6): gamma_tb * gamma * norm(X) + beta_tb + beta, with gamma_tb = 1 + h_gamma."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.dim = dim
        self.n_cond = 2 * dim

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """x: [P, ..., dim]; cond: [P, 2 * dim] (h_gamma, h_beta) or None (plain LayerNorm)."""
        if cond is None:
            return self.ln(x)
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (self.dim,)
        h_gamma, h_beta = cond.chunk(2, dim=-1)
        xn = F.layer_norm(x, (self.dim,), eps=self.ln.eps)
        return (1.0 + h_gamma).view(shape) * self.ln.weight * xn + h_beta.view(shape) + self.ln.bias


class ConditionalBlock(nn.Module):
    """One encoder/decoder layer of Eq. (7): CLN(x + MHA(x, mem)); CLN(. + FFN(.)).

    The encoder calls it with ``query is memory`` (self-attention), the decoder with the target
    item as the query. Only the sites of the chosen injection receive hypernetwork conditioning.
    """

    def __init__(self, dim: int, heads: int, injection: Injection, pair_dim: int) -> None:
        super().__init__()
        if injection not in INJECTIONS:
            raise ValueError(f"unknown injection {injection!r}")
        self.heads = heads
        d_ff = 2 * dim
        self.q = CondLinear(dim, dim, bias=False)
        self.k = CondLinear(dim, dim, bias=False)
        self.v = CondLinear(dim, dim, bias=False)
        self.o = nn.Linear(dim, dim)
        self.ffn1 = CondLinear(dim, d_ff)
        self.ffn2 = CondLinear(d_ff, dim)
        self.ln1 = CondLayerNorm(dim)
        self.ln2 = CondLayerNorm(dim)
        sites = {"ln": ("ln1", "ln2"), "qkv": ("q", "k", "v"), "ffn1": ("ffn1",),
                 "ffn2": ("ffn2",)}[injection]
        self.hyper = nn.ModuleDict({
            s: HyperNetwork(pair_dim, pair_dim, getattr(self, s).n_cond) for s in sites
        })

    def forward(self, query: Tensor, memory: Tensor, key_valid: Tensor, pair: Tensor) -> Tensor:
        """query [*, B, Lq, d], memory [*, B, Lk, d], key_valid [*, B, Lk], pair [P, pair_dim].

        ``*`` is P (one row per task-sequence pair) or M (still identical for every task): work
        before the first conditioned site runs once per sequence, not once per task.
        """
        p = pair.shape[0]

        def lift(x: Tensor) -> Tensor:
            return x if x.shape[0] == p else _lift(x, p)

        def site(name: str, x: Tensor) -> tuple[Tensor, Tensor | None]:
            hyper = self.hyper[name] if name in self.hyper else None
            return (lift(x), hyper(pair)) if hyper is not None else (x, None)

        q = self.q(*site("q", query))
        k = self.k(*site("k", memory))
        v = self.v(*site("v", memory))
        if not q.shape[0] == k.shape[0] == v.shape[0] == key_valid.shape[0]:
            q, k, v, key_valid = lift(q), lift(k), lift(v), lift(key_valid)
        a = self.o(multihead_attention(q, k, v, self.heads, key_valid))
        x = lift(query) + a if a.shape[0] != query.shape[0] else query + a
        x = self.ln1(*site("ln1", x))
        f = self.ffn2(*site("ffn2", F.relu(self.ffn1(*site("ffn1", x)))))
        x = lift(x) + f if f.shape[0] != x.shape[0] else x + f
        return self.ln2(*site("ln2", x))


def _lift(x: Tensor, p: int) -> Tensor:
    """[M, ...] identical for every task -> [P = T * M, ...] task-major (pair = t * M + m)."""
    t = p // x.shape[0]
    return x.unsqueeze(0).expand(t, *x.shape).reshape(p, *x.shape[1:])


class ConditionalTransformer(nn.Module):
    """Shared encoder-decoder run once per (task, sequence) pair with that pair's conditioning.

    forward(x [M, B, L, d], valid [M, B, L], target [M, B, d]) -> [T, M, B, d]: the decoder
    output out_dec[t, b] of Eq. (7) for every task t and sequence field b.
    """

    def __init__(self, dim: int, heads: int, layers: int, injection: Injection,
                 n_tasks: int, n_seqs: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"transformer dim {dim} is not divisible by {heads} heads")
        self.n_tasks, self.n_seqs = n_tasks, n_seqs
        self.task_emb = nn.Embedding(n_tasks, dim)  # E_T
        self.seq_emb = nn.Embedding(n_seqs, dim)  # E_B
        self.encoder = nn.ModuleList(
            [ConditionalBlock(dim, heads, injection, 2 * dim) for _ in range(layers)])
        self.decoder = nn.ModuleList(
            [ConditionalBlock(dim, heads, injection, 2 * dim) for _ in range(layers)])

    def pair_embeddings(self) -> Tensor:
        """[T * M, 2d]: concat(T_t, BS_b), task-major (pair index = t * M + b)."""
        t, m = self.n_tasks, self.n_seqs
        te = self.task_emb.weight[:, None, :].expand(t, m, -1)
        se = self.seq_emb.weight[None, :, :].expand(t, m, -1)
        return torch.cat([te, se], dim=-1).reshape(t * m, -1)

    def forward(self, x: Tensor, valid: Tensor, target: Tensor) -> Tensor:
        m, b, _, d = x.shape
        t = self.n_tasks
        p = t * m
        pair = self.pair_embeddings()
        # inputs start shared by all tasks ([M, ...]); blocks lift to [P, ...] at the first
        # conditioned site
        h = x
        for blk in self.encoder:
            h = blk(h, h, valid, pair)
        q = target.unsqueeze(2)  # [M, B, 1, d]
        for blk in self.decoder:
            q = blk(q, h, valid, pair)
        if q.shape[0] != p:
            q = _lift(q, p)
        return q.reshape(t, m, b, d)


class TIM(nn.Module):
    """Task-specific Interest Module: interest_t of Eq. (8) from embedded behaviour sequences.

    forward(seq_emb [M, B, L, e], valid [M, B, L], target_emb [M, B, e]) -> [T, B, M * dim].
    Sequence b's decoder query is target_emb[b] when ``has_target[b]``, else a learned vector
    (its target_emb rows are ignored). Embeddings are projected e -> dim when they differ.
    """

    def __init__(self, emb_dim: int, dim: int, heads: int, layers: int, injection: Injection,
                 n_tasks: int, has_target: Sequence[bool]) -> None:
        super().__init__()
        n_seqs = len(has_target)
        self.proj = nn.Identity() if emb_dim == dim else nn.Linear(emb_dim, dim)
        self.register_buffer("has_target", torch.tensor(list(has_target), dtype=torch.bool),
                             persistent=False)
        self.query = nn.Parameter(torch.randn(n_seqs, emb_dim) / math.sqrt(emb_dim))
        self.transformer = ConditionalTransformer(dim, heads, layers, injection, n_tasks, n_seqs)
        self.out_dim = n_seqs * dim

    def forward(self, seq_emb: Tensor, valid: Tensor, target_emb: Tensor) -> Tensor:
        m, b = seq_emb.shape[:2]
        learned = self.query[:, None, :].expand(m, b, -1)
        target = torch.where(self.has_target[:, None, None], target_emb, learned)
        out = self.transformer(self.proj(seq_emb), valid, self.proj(target))  # [T, M, B, d]
        t, _, _, d = out.shape
        return out.permute(0, 2, 1, 3).reshape(t, b, m * d)


class TRM(nn.Module):
    """Eq. (9): per task, r_t = raw_t * sigmoid(W2 relu(W1 raw_t)) (SENet-like refinement).

    forward(raw [T, B, dim]) -> [T, B, dim]; the T refinement MLPs run as one batched op.
    """

    def __init__(self, dim: int, n_tasks: int, hidden: int | None = None) -> None:
        super().__init__()
        self.net = StackedMLP(n_tasks, dim, [hidden or max(16, dim // 4)], "relu", out_dim=dim)

    def forward(self, raw: Tensor) -> Tensor:
        return raw * torch.sigmoid(self.net(raw))


def _no_sequences_note() -> None:
    warnings.warn("DTRN: the dataset has no sequence fields; TIM is disabled (bottom = field "
                  "embeddings + TRM)", UserWarning, stacklevel=3)


@register_bottom("dtrn")
class DTRNBottom(nn.Module):
    """DTRN bottom: per-task ``r_t`` of Eq. (9) from the shared embedding, TIM and TRM -> [T, B, D].

    Config: ``transformer_dim/heads/layers``, ``injection`` (ln | qkv | ffn1 | ffn2), ``trm``;
    sequences go through TIM, so ``seq_pooling`` is not used. Output width: sparse fields *
    embedding_dim + n_dense + sequences * transformer_dim. A dataset without sequence fields
    disables TIM with a one-line warning (not an error).
    """

    def __init__(self, cfg: ModelConfig, features: Sequence[FeatureSpec],
                 tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        e = cfg.embedding_dim
        self.n_tasks = len(tasks)
        self.embedding = FeatureEmbedding(features, e)
        seqs = self.embedding.sequence_specs
        sparse_names = [f.name for f in features if f.kind == "sparse"]
        base_dim = self.embedding.n_sparse * e + self.embedding.n_dense
        self.tim: TIM | None = None
        if not seqs:
            _no_sequences_note()
        else:
            has_target = [s.shares_with is not None for s in seqs]
            self.tim = TIM(e, cfg.transformer_dim, cfg.transformer_heads, cfg.transformer_layers,
                           cfg.injection, self.n_tasks, has_target)
            target_index = [sparse_names.index(s.shares_with) if s.shares_with else 0 for s in seqs]
            self.register_buffer("target_index", torch.tensor(target_index, dtype=torch.long),
                                 persistent=False)
            # gather index [M, Lmax] into the concatenated positions; Ltot = an appended pad slot
            lengths = self.embedding.seq_lengths
            total, lmax = sum(lengths), max(lengths)
            gather = torch.full((len(seqs), lmax), total, dtype=torch.long)
            start = 0
            for i, n in enumerate(lengths):
                gather[i, :n] = torch.arange(start, start + n)
                start += n
            self.register_buffer("seq_gather", gather, persistent=False)
            self.equal_lengths = len(set(lengths)) == 1
            base_dim += self.tim.out_dim
        self.trm = TRM(base_dim, self.n_tasks) if cfg.trm else None
        self.out_dim = base_dim

    def _sequences(self, seq: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """[B, Ltot, e], [B, Ltot] -> per field [M, B, Lmax, e], [M, B, Lmax]."""
        b, _, e = seq.shape
        m, lmax = self.seq_gather.shape
        if self.equal_lengths:
            return (seq.view(b, m, lmax, e).transpose(0, 1), mask.view(b, m, lmax).transpose(0, 1))
        seq = torch.cat([seq, seq.new_zeros(b, 1, e)], dim=1)
        mask = torch.cat([mask, mask.new_zeros(b, 1)], dim=1)
        flat = self.seq_gather.flatten()
        return (seq[:, flat].view(b, m, lmax, e).transpose(0, 1),
                mask[:, flat].view(b, m, lmax).transpose(0, 1))

    def forward(self, batch: Batch) -> Tensor:
        emb = self.embedding(batch)
        base = torch.cat([emb.sparse.flatten(1), emb.dense.to(emb.sparse.dtype)], dim=1)
        parts = [base.unsqueeze(0).expand(self.n_tasks, -1, -1)]
        if self.tim is not None:
            seq, valid = self._sequences(emb.sequences, emb.mask)
            target = emb.sparse.index_select(1, self.target_index).transpose(0, 1)  # [M, B, e]
            interest = self.tim(seq, valid, target)  # [T, B, M * dim]
            parts.append(interest.to(base.dtype))
        raw = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        return self.trm(raw) if self.trm is not None else raw
