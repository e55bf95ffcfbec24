"""One training step of `fit`, as an object benchmarks can drive alone (`build_train_step`).

`TrainStep.forward_backward(batch, epoch)`: forward under the run's autocast, the loss, zero
grads, backward, optional gradient clipping, the on-device non-finite tracking; `apply()`: the
optimizer step and the weighting's after-step hook. `fit`'s epoch loop calls the two with the
host check of non-finite losses between them; `benchmarks/step_scaling.py` times the same
objects at several batch sizes, eagerly and captured in a CUDA graph (for a capture the
optimizer is made `capturable`: its step counters and bias corrections stay on the device).
Nothing here reads a value back to the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from automtl.config import TrainConfig, TrialConfig
from automtl.data.batching import Batch
from automtl.data.schema import Dataset
from automtl.errors import TrialFailedError
from automtl.losses import MTLLoss, build_loss
from automtl.train.clippy import Clippy
from automtl.train.device import autocast, resolve_precision
from automtl.train.metrics import train_outputs_fn
from automtl.train.sparse_optim import ChainedOptimizer, RowAdam, clip_grad_norm, row_tables


def make_optimizer(cfg: TrainConfig, model: nn.Module, loss: nn.Module,
                   capturable: bool = False) -> torch.optim.Optimizer | ChainedOptimizer:
    """Adam, AdamW or Clippy over the model (with weight decay) and the loss's learnable weights
    (without); `lazy_adam` / `lazy_adamw`: the embedding tables get row-wise Adam
    (`sparse_optim.RowAdam`: only the rows a batch used), everything else the dense one.
    `capturable`: Adam/AdamW safe to capture in a CUDA graph (torch refuses a capture of a
    non-capturable `step()`; the fused kernel is the same, the flag only allows the capture)."""
    lazy = cfg.optimizer.startswith("lazy_")
    tables = row_tables(model) if lazy else []
    skip = {id(t) for t in tables}
    groups: list[dict[str, Any]] = [
        {"params": [p for p in model.parameters() if p.requires_grad and id(p) not in skip],
         "weight_decay": cfg.weight_decay}
    ]
    loss_params = [p for p in loss.parameters() if p.requires_grad]
    if loss_params:
        groups.append({"params": loss_params, "weight_decay": 0.0})
    if cfg.optimizer == "clippy":
        return Clippy(groups, lr=cfg.lr, lambda_rel=cfg.clippy_rel, lambda_abs=cfg.clippy_abs)
    decoupled = cfg.optimizer in ("adamw", "lazy_adamw")
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    extra = {"capturable": True} if capturable else {}
    try:  # fused kernels: one update for all tensors instead of a Python loop over them
        dense = cls(groups, lr=cfg.lr, fused=True, **extra)
    except (RuntimeError, TypeError, ValueError):
        dense = cls(groups, lr=cfg.lr, foreach=True, **extra)
    if not tables:
        return dense
    return ChainedOptimizer(dense, RowAdam(tables, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           decoupled=decoupled))


class NonFiniteGuard:
    """Tracks, on the device, the first step whose loss terms are not finite; updated in place
    (so a captured step keeps updating the same tensors), read by `check`."""

    def __init__(self, names: list[str], device: torch.device) -> None:
        self.names = names
        self.every = 1 if device.type == "cpu" else 32
        self.step = torch.zeros((), dtype=torch.long, device=device)
        self.first = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_terms = torch.zeros(len(names), dtype=torch.bool, device=device)

    def update(self, values: torch.Tensor) -> None:
        bad = ~torch.isfinite(values.detach())
        new = bad.any() & (self.first < 0)
        self.first.copy_(torch.where(new, self.step, self.first))
        self.bad_terms.copy_(torch.where(new, bad, self.bad_terms))
        self.step += 1

    def check(self, epoch: int, steps_before: int) -> None:
        first = int(self.first)  # the one host read of this check
        if first < 0:
            return
        terms = [n for n, b in zip(self.names, self.bad_terms.tolist()) if b]
        raise TrialFailedError(
            f"non-finite loss at epoch {epoch}, step {first + 1 - steps_before} of the epoch "
            f"(step {first + 1} overall) in term {', '.join(terms) or 'total'}; lower the lr, "
            "add grad_clip or check the data"
        )


@dataclass
class TrainStep:
    """The model, loss and optimizer of one run and the two halves of its training step."""

    cfg: TrainConfig
    dev: torch.device
    precision: str
    model: nn.Module
    loss_fn: MTLLoss
    optimizer: torch.optim.Optimizer | ChainedOptimizer
    forward: Any  # batch -> (logits [B, T], head outputs)
    guard: NonFiniteGuard
    clip_params: list[nn.Parameter]

    def forward_backward(self, batch: Batch, epoch: int) -> torch.Tensor:
        """Forward, loss, backward (and clipping) of `batch` at 1-based `epoch`; returns the
        detached total loss, on the device."""
        loss_fn = self.loss_fn
        loss_fn.weighting.before_forward(batch.labels.shape[0])
        with autocast(self.dev, self.precision):
            logits, head_outputs = self.forward(batch)
        lo = loss_fn(logits.float(), batch.labels, epoch - 1, head_outputs)
        self.optimizer.zero_grad(set_to_none=True)
        loss_fn.weighting.before_backward(lo.task_losses)
        lo.total.backward()
        if self.cfg.grad_clip is not None:
            if isinstance(self.optimizer, ChainedOptimizer):  # sparse row gradients
                clip_grad_norm(self.clip_params, self.cfg.grad_clip)
            else:
                torch.nn.utils.clip_grad_norm_(self.clip_params, self.cfg.grad_clip, foreach=True)
        self.guard.update(torch.cat([lo.terms, lo.total.reshape(1)]))
        return lo.total.detach()

    def apply(self) -> None:
        """The optimizer step and the weighting's after-step hook."""
        self.optimizer.step()
        self.loss_fn.weighting.after_step()

    def __call__(self, batch: Batch, epoch: int = 1) -> torch.Tensor:
        """A whole step (no host check of non-finite losses)."""
        total = self.forward_backward(batch, epoch)
        self.apply()
        return total


def build_train_step(cfg: TrialConfig, dataset: Dataset, dev: torch.device,
                     capturable: bool = False) -> TrainStep:
    """The model (on `dev`), loss, optimizer and step that `fit` builds for `cfg` (seed the RNGs
    first, as `fit` does, for the same initial weights)."""
    from automtl.models import build_model  # models import data/config only

    tc = cfg.train
    model = build_model(cfg.model, dataset.features, dataset.tasks, cfg.loss.weighting).to(dev)
    loss_fn: MTLLoss = build_loss(cfg.loss, dataset.tasks, model, dataset.name).to(dev)
    return TrainStep(
        cfg=tc, dev=dev, precision=resolve_precision(tc.precision, dev), model=model,
        loss_fn=loss_fn, optimizer=make_optimizer(tc, model, loss_fn, capturable=capturable),
        forward=train_outputs_fn(model, [t.name for t in dataset.tasks]),
        guard=NonFiniteGuard(loss_fn.term_names + ["total"], dev),
        clip_params=[p for p in model.parameters() if p.requires_grad],
    )


__all__ = ["NonFiniteGuard", "TrainStep", "build_train_step", "make_optimizer"]
