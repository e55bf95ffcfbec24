"""Hard-concrete gates: learnable {0, 1}-valued coding variables with an L0 penalty.

Louizos, Welling, Kingma, "Learning Sparse Neural Networks through L0 Regularization", ICLR 2018,
sec. 4 (the relaxation SNR, AAAI 2019, uses for its coding variables z):

    u ~ U(0, 1),  s = sigmoid((log u - log(1 - u) + log alpha) / beta)          (Eq. 10, training)
    s_bar = s (zeta - gamma) + gamma,  z = min(1, max(0, s_bar))                  (Eq. 10)
    L0 = sum_j P(z_j != 0) = sum_j sigmoid(log alpha_j - beta log(-gamma / zeta))  (Eq. 12)
    z_test = min(1, max(0, sigmoid(log alpha) (zeta - gamma) + gamma))            (Eq. 13)

with the paper's beta = 2/3, gamma = -0.1, zeta = 1.1. Because the stretched sigmoid is clamped,
a gate whose log alpha is pushed low enough is EXACTLY zero at test time (and with probability
-> 1 in training), which is what makes the routing sparse. One noise sample per forward (per
mini-batch, shared by its rows: SNR samples the network structure, not a per-example mask).
log alpha starts at `init` (3.0: z ~ 1, every connection open, the shared-bottom start).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


class HardConcreteGates(nn.Module):
    """A tensor of hard-concrete coding variables of `shape`; forward() -> z in [0, 1]."""

    def __init__(self, shape: Sequence[int], init: float = 3.0) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full(tuple(shape), float(init)))

    def forward(self) -> Tensor:
        la = self.log_alpha
        if self.training:
            u = torch.rand_like(la).clamp(1e-6, 1.0 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + la) / BETA)
        else:
            s = torch.sigmoid(la)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def l0(self) -> Tensor:
        """Expected number of non-zero gates (Eq. 12); differentiable in log alpha."""
        return torch.sigmoid(self.log_alpha - BETA * math.log(-GAMMA / ZETA)).sum()


__all__ = ["HardConcreteGates"]
