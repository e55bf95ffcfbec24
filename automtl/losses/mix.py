"""The loss mix of one trial: weighted per-task BCE plus the optional cascade terms.

    L = weighting(BCE_1..BCE_T) + lambda * PWiseR + L_D + alpha * L_lc + model terms + head terms

(see `bce`, `pwiser`, `dependency`, `calibrator`, `weighting` for the papers and equations; the
model terms are a body's own `aux_losses`, e.g. SNR's L0 penalty, named ``model_<name>``).
Heads escm2_ips / escm2_dr / dcmt add their counterfactual CVR terms (`counterfactual`), read
from the tensors the model's head hands over (`head_outputs`); ESCM2's lambda_g scales the BCE
of the cascade leaf (CTCVR) before weighting.
Every term is returned separately as one device tensor, so the trainer can check for NaN/inf
without a host sync per step and name the failing term afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from automtl.config import DCMTConfig, ESCM2Config, LossConfig
from automtl.data.schema import TaskSpec
from automtl.errors import ConfigError
from automtl.losses._cascade import require_cascade
from automtl.losses.bce import task_bce, task_bce_rows
from automtl.losses.calibrator import calibrator_loss
from automtl.losses.counterfactual import dcmt_losses, dr_risk, ips_risk, propensity
from automtl.losses.dependency import dependency_loss
from automtl.losses.pwiser import pwiser_loss
from automtl.losses.weighting import Weighting, build_weighting


@dataclass
class LossOutput:
    """`total` (scalar to backpropagate), `task_losses` [T] (unweighted BCE) and `terms`
    [len(term_names)]: every task's BCE followed by the extra terms (as added to the total)."""

    total: torch.Tensor
    task_losses: torch.Tensor
    terms: torch.Tensor


class MTLLoss(nn.Module):
    """Callable loss of one trial: `loss(logits [B, T], labels [B, T], epoch) -> LossOutput`.

    Its parameters (uncertainty log-variances, GradNorm weights) are trained with the model.
    """

    def __init__(
        self,
        cfg: LossConfig,
        tasks: Sequence[TaskSpec],
        model: nn.Module | None = None,
        dataset_name: str = "",
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.task_names = [t.name for t in tasks]
        self.weighting: Weighting = build_weighting(cfg.weighting, self.task_names, model)
        self.term_names = [f"bce_{t}" for t in self.task_names]
        self.chain: list[int] = []
        if cfg.pwiser or cfg.dependency or cfg.calibrator:
            first = "pwiser" if cfg.pwiser else "dependency" if cfg.dependency else "calibrator"
            self.chain = require_cascade(tasks, first, dataset_name)
        self.pwiser_task = -1
        if cfg.pwiser is not None:
            name = cfg.pwiser.task
            if name is None:
                self.pwiser_task = self.chain[-1]
            elif name in self.task_names:
                self.pwiser_task = self.task_names.index(name)
            else:
                raise ConfigError(f"loss.pwiser.task: unknown task {name!r} "
                                  f"(tasks: {', '.join(self.task_names)})")
            self.term_names.append("pwiser")
        if cfg.dependency is not None:
            n_pairs = len(self.chain) - 1
            tau = list(cfg.dependency.tau)
            if len(tau) == 1:
                tau = tau * n_pairs
            if len(tau) != n_pairs:
                raise ConfigError(f"loss.dependency.tau: give 1 or {n_pairs} values (one per "
                                  f"adjacent task pair of the cascade), got {len(cfg.dependency.tau)}")
            self.register_buffer("tau", torch.tensor(tau, dtype=torch.float32))
            self.term_names.append("dependency")
        if cfg.calibrator is not None:
            self.term_names.append("calibrator")
        self.register_buffer("chain_index", torch.tensor(self.chain, dtype=torch.long))
        # the model's own terms (SNR's L0 penalty, FDN's constraints): a bound method, so the
        # model's parameters are not registered (and optimised) twice through the loss
        aux_terms = tuple(getattr(model, "aux_terms", ()))
        self._model_aux = model.aux_losses if aux_terms else None  # type: ignore[union-attr]
        self.term_names += [f"model_{n}" for n in aux_terms]
        self._init_head_terms(cfg, getattr(model, "head", None))

    def _init_head_terms(self, cfg: LossConfig, head: nn.Module | None) -> None:
        kind = str(getattr(head, "kind", ""))
        for section, heads in (("escm2", ("escm2_ips", "escm2_dr")), ("dcmt", ("dcmt",))):
            if getattr(cfg, section) is not None and kind not in heads:
                raise ConfigError(f"loss.{section}: only applies to model.head {' / '.join(heads)}"
                                  f" (the head is {kind or 'plain/esmm'}); set the head or remove "
                                  f"loss.{section}")
        self.head_kind = kind
        self.escm2 = cfg.escm2 or ESCM2Config() if kind.startswith("escm2") else None
        self.dcmt = cfg.dcmt or DCMTConfig() if kind == "dcmt" else None
        self.root = int(getattr(head, "root", 0))
        self.leaf = int(getattr(head, "leaf", 0))
        scale = torch.ones(len(self.task_names))
        if self.escm2 is not None:
            scale[self.leaf] = self.escm2.lambda_g
            self.term_names.append("escm2_cvr")
            if kind == "escm2_dr":
                self.term_names.append("escm2_imputation")
        if self.dcmt is not None:
            self.term_names += ["dcmt_cvr", "dcmt_soft"]
        self.register_buffer("task_scale", scale)

    def _head_terms(self, labels: torch.Tensor, extras: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        if self.escm2 is None and self.dcmt is None:
            return []
        click, conv = labels[:, self.root], labels[:, self.leaf]
        if self.escm2 is not None:
            c = self.escm2
            prop = propensity(extras["ctr_logit"], c.clip)
            if self.head_kind == "escm2_dr":
                risk, imp = dr_risk(extras["cvr_logit"], extras["imputation_logit"], click, conv,
                                    prop, c.self_normalize)
                return [c.lambda_c * risk, imp]
            return [c.lambda_c * ips_risk(extras["cvr_logit"], click, conv, prop, c.self_normalize)]
        d = self.dcmt
        assert d is not None
        cvr, soft = dcmt_losses(extras["cvr_logit"], extras["cvr_cf_logit"], click, conv,
                                extras["ctr_logit"], d.clip, d.self_normalize)
        return [d.lambda_c * cvr, d.lambda_s * soft]

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, epoch: int = 0,
                head_outputs: dict[str, torch.Tensor] | None = None) -> LossOutput:
        """Loss terms of one batch; `logits`/`labels` [B, T] in the order of `task_names`;
        `head_outputs`: the model head's extra tensors (`MTLModel.forward_outputs`)."""
        if self.weighting.per_row:
            rows = task_bce_rows(logits, labels)
            task_losses = rows.mean(dim=0)
            total = self.weighting.combine_rows(rows * self.task_scale, epoch)
        else:
            task_losses = task_bce(logits, labels)
            total = self.weighting.combine(task_losses * self.task_scale, epoch)
        extras: list[torch.Tensor] = []
        if self.chain:
            probs = torch.sigmoid(logits.float())
            chain_probs = probs.index_select(1, self.chain_index)
            chain_labels = labels.float().index_select(1, self.chain_index)
            cfg = self.cfg
            if cfg.pwiser is not None:
                extras.append(cfg.pwiser.lam * pwiser_loss(
                    probs[:, self.pwiser_task], chain_labels[:, 0], chain_labels[:, -1],
                    cfg.pwiser.m1, cfg.pwiser.m2))
            if cfg.dependency is not None:
                extras.append(dependency_loss(chain_probs, chain_labels, self.tau))
            if cfg.calibrator is not None:
                extras.append(calibrator_loss(chain_probs, cfg.calibrator.alpha))
        if self._model_aux is not None:
            extras.extend(t.float() for t in self._model_aux(labels))
        if self.escm2 is not None or self.dcmt is not None:  # after the chain terms (term_names)
            if head_outputs is None:
                raise ValueError(f"head {self.head_kind}: the loss needs the model's head outputs")
            extras += self._head_terms(labels.float(), head_outputs)
        if extras:
            extra = torch.stack(extras)
            total = total + extra.sum()
            terms = torch.cat([task_losses, extra])
        else:
            terms = task_losses
        return LossOutput(total=total, task_losses=task_losses, terms=terms)


def build_loss(
    cfg: LossConfig, tasks: Sequence[TaskSpec], model: nn.Module | None = None, dataset_name: str = ""
) -> MTLLoss:
    """The `MTLLoss` of `cfg` for `tasks`; cascade-only terms on a dataset without a cascade and
    unknown task names are one-line `ConfigError`s."""
    return MTLLoss(cfg, tasks, model, dataset_name)
