"""APEM sequential-dependence loss L_D-Task (Tao et al., "Adaptive Pattern Extraction Multi-Task
Learning for Multi-Step Conversion Estimations", arXiv 2301.02494, 2023), eq. (21) and (23).

    L_D = sum_{i=2..n} tau_{i-1} * 1/M sum_j ( (f_{i-1}(x_j) - f_i(x_j)) - (o_{i-1,j} - o_{i,j}) )^2

over adjacent tasks of the cascade, f = predicted probabilities, o = labels, every sample weighted
w = 1 (eq. 23), computed over all samples of the batch (the entire space D).
"""

from __future__ import annotations

import torch


def dependency_loss(probs: torch.Tensor, labels: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """L_D on cascade-ordered `probs`, `labels` [B, n] and `tau` [n - 1] -> scalar."""
    pred_gap = probs[:, :-1] - probs[:, 1:]
    label_gap = labels[:, :-1] - labels[:, 1:]
    mse = (pred_gap - label_gap).pow(2).mean(dim=0)
    return (tau * mse).sum()
