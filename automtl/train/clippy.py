"""Clippy (Tang, Drori, Chang, Sathiamoorthy, Gilmer, Wei, Yi, Hong, Chi, "Improving Training
Stability for Multitask Ranking Models in Recommender Systems", KDD 2023, arXiv 2302.09178),
sec. 4.2, Algorithm 1: Adagrad whose *update* is clipped per layer against the weights.

For each parameter tensor (a "layer") w with gradient g at step t:

    v_t = v_{t-1} + g_t^2                                   (Adagrad accumulator)
    u_t = g_t / (sqrt(v_t) + eps)                           (Adagrad direction)
    sigma_t = min(1, min_j (lambda_rel |w_j| + lambda_abs) / (eta |u_j|))
    w_{t+1} = w_t - eta * sigma_t * u_t

so no coordinate moves by more than lambda_rel |w_j| + lambda_abs in one step (the L-infinity
view: one spiking coordinate is enough to clip the layer, where an L2 gradient norm would be
dominated by the many quiet ones), the update direction is kept (one scale per tensor), and the
learning rate is inside the test: the larger eta, the sooner Clippy clips, which is what lets a
model train at learning rates where plain Adagrad diverges (paper sec. 5.3). Early in training
(w ~ 0) lambda_abs acts like gradient clipping; later lambda_rel like adaptive gradient clipping.

Defaults lambda_rel = 0.5, lambda_abs = 1e-2 (paper sec. 5). Choices: eps = 1e-10 and an initial
accumulator of 0 (torch Adagrad's defaults); the accumulator takes the raw gradient (the paper's
Algorithm 1); weight decay is Adagrad's coupled L2 (added to g).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


class Clippy(torch.optim.Optimizer):
    """Clippy-Adagrad (KDD 2023, Algorithm 1); see the module docstring."""

    def __init__(self, params: Iterable[Any], lr: float = 0.01, lambda_rel: float = 0.5,
                 lambda_abs: float = 1e-2, weight_decay: float = 0.0, eps: float = 1e-10) -> None:
        if lr <= 0 or lambda_rel < 0 or lambda_abs <= 0 or weight_decay < 0:
            raise ValueError("Clippy needs lr > 0, lambda_rel >= 0, lambda_abs > 0, "
                             "weight_decay >= 0")
        defaults = dict(lr=lr, lambda_rel=lambda_rel, lambda_abs=lambda_abs,
                        weight_decay=weight_decay, eps=eps)
        super().__init__(params, defaults)
        self.last_sigma: dict[int, Tensor] = {}  # id(param) -> sigma of the last step

    @torch.no_grad()
    def step(self, closure: Any = None) -> Tensor | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, rel, ab = group["lr"], group["lambda_rel"], group["lambda_abs"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                acc = state["sum"]
                acc.addcmul_(g, g)
                u = g / (acc.sqrt() + group["eps"])
                # sigma = min(1, min_j (rel |w_j| + abs) / (lr |u_j|)); |u_j| = 0 never limits
                bound = p.abs().mul_(rel).add_(ab)
                ratio = bound / (lr * u.abs()).clamp_min(torch.finfo(u.dtype).tiny)
                sigma = ratio.min().clamp(max=1.0)
                self.last_sigma[id(p)] = sigma  # a 0-d tensor: no host sync per step
                p.add_(u * sigma, alpha=-lr)
        return loss


__all__ = ["Clippy"]
