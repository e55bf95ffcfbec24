"""AITM behavioural-expectation calibrator (Xi et al., "Modeling the Sequential Dependence among
Audience Multi-step Conversions with Multi-task Learning in Targeted Display Advertising",
KDD 2021), eq. (9)-(10).

    L = L_ce + alpha * L_lc,   L_lc = 1/N sum_x sum_{t=2..T} max(y_t(x) - y_{t-1}(x), 0)

over cascade-ordered predicted probabilities y_t, so a later step never outscores an earlier one.
This module gives alpha * L_lc.
"""

from __future__ import annotations

import torch


def calibrator_loss(probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * mean over samples of sum_t max(p_t - p_{t-1}, 0); `probs` [B, n] cascade-ordered."""
    excess = torch.clamp_min(probs[:, 1:] - probs[:, :-1], 0.0)
    return alpha * excess.sum(dim=1).mean()
