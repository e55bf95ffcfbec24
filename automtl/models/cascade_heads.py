"""Heads of the conversion-cascade family after ESMM: ESM2, ESCM2 (IPS / DR) and DCMT.

All three keep ESMM's entire-space products (`ESMMHead`) and add what their papers add on top:

- `esm2` -- ESM2 (Wen et al., "Entire Space Multi-Task Modeling via Post-Click Behavior
  Decomposition for Conversion Rate Prediction", SIGIR 2020), sec. 3.2-3.3 (the decomposed
  prediction and sequential composition modules). On a 3-step chain click -> D-action -> purchase
  (e.g. ctr -> ctcart -> ctcvr) the body predicts y1 = p(click), y2 = p(D | click),
  y3 = p(buy | D) and, as an extra tower (`extra_tasks`), y4 = p(buy | click, other action O).
  Outputs: pCTR = y1, pCTAVR = y1 y2 and pCTCVR = y1 (y2 y3 + (1 - y2) y4), every product
  supervised by its own BCE over all impressions (sec. 3.4: L = sum of the weighted losses). Our
  datasets label purchase only after the D-action (ctcvr depends_on ctcart); ESM2 still models
  the O path, which then learns y4 -> 0 (pCTCVR <= pCTR always, but not <= pCTAVR: a purchase
  may come through O). Steps after the purchase (synthetic n_tasks=4) multiply pCTCVR as in ESMM.
  `extras["esm2_paths"]` holds log(y1 y2 y3) and
  log(y1 (1 - y2) y4), whose sum of exps is the modelled purchase probability.
- `escm2_ips` / `escm2_dr` -- ESCM2 (Wang et al., "ESCM2: Entire Space Counterfactual Multi-Task
  Model for Post-Click Conversion Rate Estimation", SIGIR 2022), sec. 4: the ESMM network plus a
  counterfactual CVR risk on the CVR tower (`automtl.losses.counterfactual`). The head hands the
  loss the propensity (CTR logit of the cascade root) and the conditional CVR logit
  p(leaf | root) (for a deeper chain the product of the steps after the root); the DR variant's
  imputation tower is built by `build_model` (`model.imputation_dims`, over the bottom output,
  as in the paper's Fig. 2 where it reads the shared embedding).
- `dcmt` -- DCMT (Zhu et al., "DCMT: A Direct Entire-Space Causal Multi-Task Framework for
  Post-Click Conversion Estimation", ICDE 2023), sec. IV: twin CVR towers, the factual one in the
  ESMM product (it is the served CVR) and a counterfactual one (`extra_tasks`: `cvr_cf`) for the
  counterfactual space; the IPW losses and the soft constraint are loss terms.

Section numbers refer to the arXiv versions (ESM2 1910.07099, ESCM2 2204.05125, DCMT 2302.06141);
the formulas are written out here and in `automtl.losses.counterfactual`, since equation numbers
differ between the arXiv and proceedings versions.

Extra towers are extra body tasks, so every body (SharedBottom, MMoE, PLE, AITM, ...) gives them
the same kind of tower/gate as a real task; they are never model outputs (export sees T tasks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.data.schema import TaskSpec
from automtl.errors import ConfigError
from automtl.losses import cascade_chain
from automtl.models.heads import ESMMHead, logp_to_logit
from automtl.models.registry import register_head


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    # written out (not torch.logaddexp) so ONNX export sees only Max/Abs/Exp/Log1p
    m = torch.maximum(a, b)
    return m + torch.log1p(torch.exp(-(a - b).abs()))


class _ChainHead(ESMMHead):
    """ESMM head that also knows the cascade root (click) and leaf (conversion)."""

    kind = ""
    min_steps = 2
    needs_cascade = False  # checked here, with a message naming the depth the head needs

    def __init__(self, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(tasks)
        self.n_tasks = len(tasks)
        chain = cascade_chain(tasks)
        if len(chain) < self.min_steps:
            names = ", ".join(t.name for t in tasks)
            have = f"a {len(chain)}-step cascade" if chain else "no cascade"
            need = ("a 3-step cascade click -> action -> purchase (e.g. synthetic "
                    "--data-option n_tasks=3)") if self.min_steps == 3 else "a task cascade"
            raise ConfigError(f"model.head: {self.kind} needs {need}, but the dataset's tasks "
                              f"({names}) have {have}; choose another head or dataset")
        self.chain = chain
        self.root, self.leaf = chain[0], chain[-1]

    def outputs(self, raw: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        logp = self.log_probs(raw)
        raw32 = raw.float()
        extras = {
            "ctr_logit": raw32[self.root],  # the root has no parent: its raw logit is p(click)
            # p(leaf | root) = p(leaf) / p(root): the sum of the step log-probs after the root
            "cvr_logit": logp_to_logit(logp[self.leaf] - logp[self.root]),
        }
        return self.logits_from(raw, logp), extras


class ESCM2Head(_ChainHead):
    """ESCM2: ESMM products + the inputs of the counterfactual CVR risk (see module docstring)."""


@register_head("escm2_ips")
class ESCM2IPSHead(ESCM2Head):
    """ESCM2 with the inverse-propensity CVR risk."""

    kind = "escm2_ips"


@register_head("escm2_dr")
class ESCM2DRHead(ESCM2Head):
    """ESCM2 with the doubly robust CVR risk (and `build_model`'s imputation tower)."""

    kind = "escm2_dr"


@register_head("dcmt")
class DCMTHead(_ChainHead):
    """DCMT: ESMM products with the factual CVR tower + a counterfactual twin tower."""

    kind = "dcmt"
    extra_tasks = ("cvr_cf",)

    def outputs(self, raw: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        logits, extras = super().outputs(raw)
        extras["cvr_cf_logit"] = raw.float()[self.n_tasks]
        return logits, extras


@register_head("esm2")
class ESM2Head(_ChainHead):
    """ESM2 post-click behaviour decomposition on click -> D-action -> purchase."""

    kind = "esm2"
    min_steps = 3
    extra_tasks = ("buy_other",)

    def __init__(self, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(tasks)
        # ESM2 has exactly one action between click and purchase: use the first three steps of
        # a longer chain and leave later steps to the ESMM product (documented choice).
        self.action, self.buy = self.chain[1], self.chain[2]

    def _paths(self, raw: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        logp = self.log_probs(raw)
        raw32 = raw.float()
        ls = nn.functional.logsigmoid
        via_action = logp[self.action] + ls(raw32[self.buy])  # log y1 y2 y3
        via_other = logp[self.root] + ls(-raw32[self.action]) + ls(raw32[self.n_tasks])  # y1(1-y2)y4
        logp[self.buy] = _logaddexp(via_action, via_other)
        for i in self.order:  # steps after the purchase multiply the decomposed probability
            parent = self.parents[i]
            if parent is not None and i != self.buy and self._below_buy(i):
                logp[i] = logp[parent] + ls(raw32[i])
        return logp, via_action, via_other

    def _below_buy(self, i: int) -> bool:
        parent = self.parents[i]
        while parent is not None:
            if parent == self.buy:
                return True
            parent = self.parents[parent]
        return False

    def forward(self, raw: Tensor) -> Tensor:
        logp, _, _ = self._paths(raw)
        return self.logits_from(raw, logp)

    def outputs(self, raw: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        logp, via_action, via_other = self._paths(raw)
        return self.logits_from(raw, logp), {"esm2_paths": torch.stack([via_action, via_other])}


__all__ = ["DCMTHead", "ESCM2DRHead", "ESCM2Head", "ESCM2IPSHead", "ESM2Head"]
