"""Row-wise ("lazy") Adam for embedding tables: each step updates only the rows the batch used.

Dense Adam reads and writes the whole table, its gradient and both moments every step, although
a batch touches a tiny fraction of a multi-million-row table; industrial trainers update only
the touched rows (TensorFlow's LazyAdam, `torch.optim.SparseAdam`, FBGEMM's row-wise
optimizers). With `train.optimizer: lazy_adam` (or `lazy_adamw`) the model's embedding tables
(`FeatureEmbedding`) return sparse gradients of the used rows (`embedding.embedding_lookup`) and
`RowAdam` applies Adam (Kingma & Ba, ICLR 2015, Algorithm 1) to those rows only: their moments
decay and update, their weights move; untouched rows and their moments stay as they are (the
"lazy" semantics: a row's moments do not decay while it is absent). Bias correction uses the
table's global step count, so a row present in every step follows dense Adam exactly.
Weight decay: L2 added to the used rows' gradients (`lazy_adam`, as torch's Adam) or decoupled
decay of the used rows (`lazy_adamw`, as AdamW), never of absent rows.

Kernel: torch ops (unique + index_add in the backward, index_select / index_copy_ here).
FBGEMM's fused row-wise kernels (`fbgemm-gpu-cpu` 1.9.0 on PyPI) do not load with this torch
(undefined C++ symbols: the wheel is built for an older torch ABI), so they are not used.
Every other parameter keeps the fused dense Adam/AdamW (`ChainedOptimizer`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


class RowAdam(torch.optim.Optimizer):
    """Adam over the rows of sparse (or dense) gradients; see module docstring."""

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "decoupled": decoupled})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            wd, decoupled = group["weight_decay"], group["decoupled"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                g = p.grad
                if g.is_sparse:
                    g = g.coalesce()
                    rows, grad = g.indices()[0], g.values()
                else:
                    rows, grad = torch.arange(p.shape[0], device=p.device), g
                if rows.numel() == 0:
                    continue
                w = p.index_select(0, rows)
                if wd and not decoupled:
                    grad = grad.add(w, alpha=wd)
                m = state["exp_avg"].index_select(0, rows).mul_(b1).add_(grad, alpha=1 - b1)
                v = state["exp_avg_sq"].index_select(0, rows).mul_(b2).addcmul_(grad, grad,
                                                                                value=1 - b2)
                if wd and decoupled:
                    w.mul_(1 - lr * wd)
                # the order of torch.optim.Adam's single-tensor step (same rounding)
                denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(eps)
                w.addcdiv_(m, denom, value=-lr / (1 - b1 ** t))
                p.index_copy_(0, rows, w)
                state["exp_avg"].index_copy_(0, rows, m)
                state["exp_avg_sq"].index_copy_(0, rows, v)


class ChainedOptimizer:
    """Several optimizers stepped as one (the loop calls `zero_grad` and `step`)."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def state_dict(self) -> list[dict[str, Any]]:
        return [o.state_dict() for o in self.optimizers]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for o, s in zip(self.optimizers, states):
            o.load_state_dict(s)


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> None:
    """`torch.nn.utils.clip_grad_norm_` for gradients that may be sparse (the norm of a sparse
    gradient is the norm of its values)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = [torch.linalg.vector_norm(g._values() if g.is_sparse else g) for g in grads]
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        (g._values() if g.is_sparse else g).mul_(scale)


def row_tables(model: nn.Module) -> list[nn.Parameter]:
    """The model's embedding tables, switched to sparse row gradients."""
    from automtl.models.embedding import FeatureEmbedding

    tables = []
    for m in model.modules():
        if isinstance(m, FeatureEmbedding) and m.weight.requires_grad:
            m.sparse_grad = True
            tables.append(m.weight)
    return tables


__all__ = ["ChainedOptimizer", "RowAdam", "clip_grad_norm", "row_tables"]
