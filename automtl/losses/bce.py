"""Per-task binary cross-entropy on the model's logits (and ESMM's CTCVR loss).

L_k = -1/B sum_j [ y_jk log sigma(z_jk) + (1 - y_jk) log(1 - sigma(z_jk)) ]  for every task k.

ESMM (Ma et al., SIGIR 2018), eq. (2)-(3): L = sum_j l(y_ctr, p_ctr) + sum_j l(y_ctr & y_cvr,
p_ctr * p_cvr), both over all impressions, the CVR tower getting no direct loss. automtl models
with `head: esmm` already output the logit of the product p_ctcvr = p_ctr * p_cvr (computed in log
space), so ESMM's CTCVR loss is exactly this per-task BCE on the `ctcvr` output; no separate term
is needed, and cascades of any length work the same way (task i multiplies task i-1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_bce_rows(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE per row and task: logits and labels [B, T] -> losses [B, T] (computed in fp32)."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")


def task_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE per task: logits and labels [B, T] -> losses [T] (computed in fp32)."""
    return task_bce_rows(logits, labels).mean(dim=0)
