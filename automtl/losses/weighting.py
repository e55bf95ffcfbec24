"""Task weighting schemes that combine the per-task losses L_k into one scalar.

- fixed:        L = sum_k w_k L_k.
- ple_decay:    PLE (Tang et al., RecSys 2020), sec. 5.3: w_{k,t} = w_{k,0} * gamma^t with t the
                0-based epoch (the first epoch uses w_{k,0}).
- uncertainty:  Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses",
                CVPR 2018, eq. (10) in its classification form: with learnable s_k = log sigma_k^2,
                L = sum_k w_k exp(-s_k) L_k + s_k / 2 (1/sigma^2 L + log sigma), s_k starting at 0
                and trained with the model.
- gradnorm:     Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing",
                ICML 2018, eq. (1)-(2): learnable w_k(t); G_k = ||grad_W w_k L_k|| on the last
                shared layer W; r_k = (L_k(t)/L_k(0)) / mean_j(L_j(t)/L_j(0));
                L_grad = sum_k |G_k - mean_j(G_j) * r_k^alpha| (target held constant) updates only
                w, the model is trained on sum_k w_k L_k with w held constant, and after every step
                w is renormalised to sum_k w_k = T. W comes from `last_shared_parameters()` of the
                model or of its body (see `shared_parameters`); a model without a shared layer
                (single-task baseline) has nothing to balance gradients on, so GradNorm falls back
                to fixed weights there (`GradNorm.active` is False).
- conditioned:  preference-conditioned training (YOTO / COSMOS / PHN), `automtl.losses.conditioned`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from automtl.config import WeightingConfig
from automtl.errors import ConfigError


def shared_parameters(model: nn.Module | None) -> list[nn.Parameter]:
    """Parameters of the model's last shared layer (for GradNorm), [] when it has none."""
    for owner in (model, getattr(model, "body", None)):  # MTLModel or its body may provide it
        hook = getattr(owner, "last_shared_parameters", None)
        if callable(hook):
            return [p for p in hook() if p.requires_grad]
    return []


class Weighting(nn.Module):
    """Base: fixed weights w_k (a buffer). Subclasses change `combine` and the step hooks."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", weights.float().clone())

    def combine(self, task_losses: torch.Tensor, epoch: int) -> torch.Tensor:
        """One scalar from the per-task losses [T] at 0-based `epoch`."""
        return (self.w * task_losses).sum()

    per_row = False  # True: `combine_rows` weights per-row losses [B, T] (conditioned, row draws)

    def before_forward(self, n_rows: int) -> None:
        """Hook before the forward pass of a training batch of `n_rows` rows (conditioned
        weighting draws its task-weight vector and hands it to the model)."""

    def combine_rows(self, row_losses: torch.Tensor, epoch: int) -> torch.Tensor:
        """One scalar from per-row losses [B, T] (only called when `per_row`)."""
        return self.combine(row_losses.mean(dim=0), epoch)

    def before_backward(self, task_losses: torch.Tensor) -> None:
        """Hook after the forward pass, before `backward()` (GradNorm sets its weights' grads)."""

    def after_step(self) -> None:
        """Hook after `optimizer.step()` (GradNorm renormalises its weights)."""

    def current_weights(self, epoch: int) -> torch.Tensor:
        """The effective per-task weights [T] (for logs and tests)."""
        return self.w.detach().clone()


class FixedWeighting(Weighting):
    """L = sum_k w_k L_k."""


class PLEDecay(Weighting):
    """w_{k,t} = w_{k,0} * gamma^t, t = 0-based epoch."""

    def __init__(self, weights: torch.Tensor, gamma: float) -> None:
        super().__init__(weights)
        self.gamma = float(gamma)

    def combine(self, task_losses: torch.Tensor, epoch: int) -> torch.Tensor:
        return (self.w * task_losses).sum() * (self.gamma ** epoch)

    def current_weights(self, epoch: int) -> torch.Tensor:
        return self.w.detach() * (self.gamma ** epoch)


class UncertaintyWeighting(Weighting):
    """Kendall et al. (CVPR 2018): L = sum_k w_k exp(-s_k) L_k + s_k / 2, learnable s_k."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__(weights)
        self.log_var = nn.Parameter(torch.zeros_like(self.w))

    def combine(self, task_losses: torch.Tensor, epoch: int) -> torch.Tensor:
        s = self.log_var
        return (self.w * torch.exp(-s) * task_losses + 0.5 * s).sum()

    def current_weights(self, epoch: int) -> torch.Tensor:
        return (self.w * torch.exp(-self.log_var)).detach()


class GradNorm(Weighting):
    """Chen et al. (ICML 2018): learnable task weights balanced on the last shared layer."""

    def __init__(self, weights: torch.Tensor, alpha: float, shared: Sequence[nn.Parameter]) -> None:
        super().__init__(weights)
        self.alpha = float(alpha)
        self.task_weight = nn.Parameter(self.w.clone())
        self.register_buffer("initial", torch.zeros_like(self.w))
        self._shared = list(shared)
        self._started = False

    @property
    def active(self) -> bool:
        """False when the model has no shared layer (then this is plain fixed weighting)."""
        return bool(self._shared)

    def combine(self, task_losses: torch.Tensor, epoch: int) -> torch.Tensor:
        weights = self.task_weight if self.active else self.w
        return (weights.detach() * task_losses).sum()

    def before_backward(self, task_losses: torch.Tensor) -> None:
        if not self.active:
            return
        losses = task_losses.float()
        if not self._started:  # L_k(0): the losses of the first step
            self.initial.copy_(losses.detach())
            self._started = True
        norms = []
        for k in range(losses.shape[0]):
            grads = torch.autograd.grad(losses[k], self._shared, retain_graph=True,
                                        allow_unused=True)
            sq = [g.float().pow(2).sum() for g in grads if g is not None]
            norms.append(torch.sqrt(torch.stack(sq).sum()) if sq else losses.new_zeros(()))
        g = torch.stack(norms).detach()
        with torch.enable_grad():
            w = self.task_weight
            big_g = w * g  # ||grad_W (w_k L_k)|| = w_k ||grad_W L_k||
            ratio = losses.detach() / torch.clamp_min(self.initial, 1e-12)
            r = ratio / torch.clamp_min(ratio.mean(), 1e-12)
            target = (big_g.mean() * r.pow(self.alpha)).detach()
            l_grad = (big_g - target).abs().sum()
            (grad_w,) = torch.autograd.grad(l_grad, w)
        w.grad = grad_w if w.grad is None else w.grad + grad_w

    @torch.no_grad()
    def after_step(self) -> None:
        if not self.active:
            return
        w = self.task_weight
        w.clamp_(min=1e-6)
        w.mul_(w.numel() / w.sum())

    def current_weights(self, epoch: int) -> torch.Tensor:
        return (self.task_weight if self.active else self.w).detach().clone()


def build_weighting(
    cfg: WeightingConfig, task_names: Sequence[str], model: nn.Module | None = None
) -> Weighting:
    """The weighting scheme of `cfg` for tasks `task_names` (GradNorm reads `model`'s shared layer)."""
    unknown = [k for k in cfg.weights if k not in task_names]
    if unknown:
        raise ConfigError(
            f"loss.weighting.weights.{unknown[0]}: unknown task (tasks: {', '.join(task_names)})"
        )
    w = torch.tensor([float(cfg.weights.get(t, 1.0)) for t in task_names])
    if cfg.scheme == "fixed":
        return FixedWeighting(w)
    if cfg.scheme == "ple_decay":
        return PLEDecay(w, cfg.gamma)
    if cfg.scheme == "uncertainty":
        return UncertaintyWeighting(w)
    if cfg.scheme == "gradnorm":
        return GradNorm(w, cfg.gradnorm_alpha, shared_parameters(model))
    if cfg.scheme == "conditioned":
        from automtl.losses.conditioned import ConditionedWeighting

        return ConditionedWeighting(cfg, len(task_names), model)
    raise ConfigError(f"loss.weighting.scheme: unknown scheme {cfg.scheme!r}")  # pragma: no cover
