"""Counterfactual CVR losses of the heads `escm2_ips`, `escm2_dr` and `dcmt`.

Notation: over a batch D of N impressions, o = click label (cascade root), r = conversion label
(cascade leaf), o_hat = predicted CTR (the propensity), r_hat = predicted CVR p(r | o = 1, x) and
e = BCE(r, r_hat). The propensity is DETACHED in every term here: the CTR tower is trained by
its own BCE only, so a term cannot lower itself by inflating o_hat (the papers' intent, where
o_hat is "the propensity estimated by the CTR tower"); clipping keeps 1 / o_hat bounded.

ESCM2 (Wang et al., SIGIR 2022), sec. 4.2-4.3; L = L_ctr + lambda_c R + lambda_g L_ctcvr:
- IPS:  R_IPS = 1/N sum_D o e / o_hat.  Self-normalised (SNIPS, an option): divide by
  sum_D o / o_hat instead of N.
- DR:   R_DR = 1/N sum_D [ e_hat + o (e - e_hat) / o_hat ], imputation loss
  L_imp = 1/N sum_D o (e - e_hat)^2 / o_hat.  Our reading (the paper leaves the imputation form
  open): the imputation tower predicts a pseudo conversion label r_tilde, and e_hat =
  BCE(r_tilde, r_hat), the joint-learning DR of Wang et al. (ICML 2019) that ESCM2 builds on. In
  R_DR r_tilde is held fixed, so the CVR tower is trained on every impression (through e_hat) and
  on the clicks (through e); in L_imp e and r_hat are held fixed, so only the imputation tower
  learns from it. Self-normalised: the correction sum is divided by sum_D o / o_hat.

DCMT (Zhu et al., ICDE 2023), sec. IV: factual r_hat and counterfactual r_hat* twin towers;
the counterfactual label is r* = 1 - r (the paper's convention: in the counterfactual world a
conversion would not happen where it did and vice versa; on an unclicked row r = 0, so r* = 1):
  L_cvr = 1/N sum_D [ o BCE(r, r_hat) / o_hat + (1 - o) BCE(1 - r, r_hat*) / (1 - o_hat) ]
  L_soft = 1/N sum_D | 1 - (r_hat + r_hat*) |       (the counterfactual prior r + r* = 1)
  L = L_ctr + L_ctcvr + lambda_c L_cvr + lambda_s L_soft; o_hat clipped to [clip, 1 - clip];
  self-normalised: each IPW sum divided by its own sum of weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_TINY = 1e-12


def _bce(logit: Tensor, target: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logit.float(), target.float(), reduction="none")


def _ipw_mean(values: Tensor, weights: Tensor, self_normalize: bool) -> Tensor:
    """sum(w v) / N, or sum(w v) / sum(w) when self-normalised (0 when no weight)."""
    denom = weights.sum().clamp_min(_TINY) if self_normalize else values.new_tensor(values.numel())
    return (weights * values).sum() / denom


def propensity(ctr_logit: Tensor, clip: float, upper: float = 1.0) -> Tensor:
    """Detached predicted CTR clipped to [clip, upper]."""
    return torch.sigmoid(ctr_logit.detach().float()).clamp(clip, upper)


def ips_risk(cvr_logit: Tensor, click: Tensor, conv: Tensor, prop: Tensor,
             self_normalize: bool = False) -> Tensor:
    """ESCM2-IPS counterfactual risk R_IPS (module docstring)."""
    e = _bce(cvr_logit, conv)
    return _ipw_mean(e, click.float() / prop, self_normalize)


def dr_risk(cvr_logit: Tensor, imputation_logit: Tensor, click: Tensor, conv: Tensor,
            prop: Tensor, self_normalize: bool = False) -> tuple[Tensor, Tensor]:
    """ESCM2-DR: (R_DR for the CVR tower, L_imp for the imputation tower); module docstring."""
    w = click.float() / prop
    e = _bce(cvr_logit, conv)
    r_tilde = torch.sigmoid(imputation_logit.float())
    e_hat = _bce(cvr_logit, r_tilde.detach())  # imputed error; trains the CVR tower on all rows
    risk = e_hat.mean() + _ipw_mean(e - e_hat, w, self_normalize)
    e_hat_imp = _bce(cvr_logit.detach(), r_tilde)  # same error, gradient to the imputation only
    imp = _ipw_mean((e.detach() - e_hat_imp).pow(2), w, self_normalize)
    return risk, imp


def dcmt_losses(cvr_logit: Tensor, cvr_cf_logit: Tensor, click: Tensor, conv: Tensor,
                ctr_logit: Tensor, clip: float, self_normalize: bool = False
                ) -> tuple[Tensor, Tensor]:
    """DCMT: (IPW factual + counterfactual CVR loss, soft constraint); module docstring."""
    o = click.float()
    p = propensity(ctr_logit, clip, 1.0 - clip)
    factual = _ipw_mean(_bce(cvr_logit, conv), o / p, self_normalize)
    counter = _ipw_mean(_bce(cvr_cf_logit, 1.0 - conv.float()), (1.0 - o) / (1.0 - p),
                        self_normalize)
    soft = (1.0 - torch.sigmoid(cvr_logit.float()) - torch.sigmoid(cvr_cf_logit.float())).abs()
    return factual + counter, soft.mean()


__all__ = ["dcmt_losses", "dr_risk", "ips_risk", "propensity"]
