"""Preference-conditioned (loss-conditional) task weighting: one network for every weighting.

YOTO (Dosovitskiy & Djolonga, ICLR 2020), sec. 3 (loss-conditional training): instead of one
loss with fixed weights, minimise the expected loss over a distribution of weight vectors r, the
network being conditioned on r, min_theta E_{r ~ P} E_{x,y} L(y, f_theta(x, r), r). Here L is
the weighted task loss T * sum_k r_k L_k and P is a Dirichlet on the task simplex, the
preference distribution of Pareto HyperNetworks (Navon et al., ICLR 2021: a ray drawn from
Dir(alpha) at every step, linear-scalarisation variant PHN-LS) and of COSMOS (Ruchte & Grabocka,
ICDM 2021); Controllable Pareto MTL (Lin et al., 2020) draws preferences uniformly from the
simplex, i.e. Dir(1). The model side (FiLM) is `automtl.models.film`. Section numbers are left
out where we could not check them against the papers' text.

Options (`loss.weighting`):

- ``concentration`` alpha of the symmetric Dirichlet (1 = uniform on the simplex; < 1 puts more
  draws near single-task corners, > 1 near the uniform vector).
- ``draw: batch`` one r per training batch (the papers); ``draw: row`` one r per row, each row's
  loss weighted by its own r: more distinct vectors per step at the same cost.
- ``cosine`` lambda of COSMOS eq. (5): L = sum_k r_k L_k - lambda * cos(r, L / s) (s: the
  losses' running scale, below), which pulls the loss vector towards the ray r and spreads the
  front (per row in row mode).

Choices: the weighted loss is scaled by T so the uniform vector r = (1/T, ...) gives the loss
(and gradient scale) of the default fixed weighting (every w_k = 1); r is a plain mixture.
The cosine term compares r with the **scale-normalised** loss vector L / s, s_k an exponential
running mean (decay 0.98, started at the first batch's value, detached) of task k's batch loss:
the direction of the raw L is set by the tasks' loss scales (CTR ~0.33 vs CVR ~0.1 on the
synthetic data), not by the trade-off; cos is invariant to one common scale, so only the
per-task normalisation matters, and lambda means the same on any data. COSMOS states eq. (5) on
raw losses. The cosine term is not scaled by T, so relative to the linear term our lambda is T
times COSMOS's. Caution (measured, benchmarks/RESULTS.md, issue 16): maximising cos(r, L / s)
raises L_k where r_k is large, against the linear term, and at lambda = 1 it wins, raw or
normalised: the curve runs the wrong way (a larger CVR weight gives a worse CVR model), so the
search spaces offer lambda in {0, 0.1} only. The linear term keeps the raw losses: weighting
L_k / s_k there too (every task the same say at the uniform vector) was tried and lowered the
hypervolume in 4 of 4 runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import torch
from torch import nn

from automtl.config import WeightingConfig
from automtl.losses.weighting import Weighting


def simplex_grid(n_tasks: int, points: int = 0) -> list[list[float]]:
    """Fixed weight vectors on the task simplex for the evaluation sweep.

    Two tasks: `points` evenly spaced vectors (default 11: (0, 1), (0.1, 0.9), ... (1, 0)).
    Three or more: the simplex lattice {k / n : k_i >= 0 integers summing to n} with the largest
    n whose C(n + T - 1, T - 1) points fit in `points` (default 15 for 3 tasks: n = 4). One task:
    the single vector (1,).
    """
    if n_tasks <= 1:
        return [[1.0]]
    if n_tasks == 2:
        k = points or 11
        return [[round(1.0 - i / (k - 1), 10), round(i / (k - 1), 10)] for i in range(k)]
    budget = points or 15
    n = 1
    while math.comb(n + 1 + n_tasks - 1, n_tasks - 1) <= budget:
        n += 1
    grid = []
    # stars and bars: positions of T-1 bars among n + T - 1 slots
    for bars in combinations(range(n + n_tasks - 1), n_tasks - 1):
        counts, prev = [], -1
        for b in bars:
            counts.append(b - prev - 1)
            prev = b
        counts.append(n + n_tasks - 2 - prev)
        grid.append([c / n for c in counts])
    return sorted(grid, reverse=True)


class ConditionedWeighting(Weighting):
    """Draws r ~ Dir(alpha) per batch (or row), sets it on the model, weights the losses by it."""

    per_row: bool

    def __init__(self, cfg: WeightingConfig, n_tasks: int, model: nn.Module | None) -> None:
        super().__init__(torch.full((n_tasks,), 1.0 / n_tasks))
        self.register_buffer("alpha", torch.full((n_tasks,), float(cfg.concentration)))
        self.per_row = cfg.draw == "row"
        self.cosine = float(cfg.cosine)
        self.n_tasks = n_tasks
        # running mean of each task's loss (the cosine term's scale); 0 = not seen one yet
        self.register_buffer("scale", torch.zeros(n_tasks))
        from automtl.models.film import conditioner_of

        # a plain attribute, not a submodule: the conditioner's parameters belong to the model
        self._cond = [conditioner_of(model)] if model is not None else [None]
        self.pref: torch.Tensor | None = None

    def before_forward(self, n_rows: int) -> None:
        rows = n_rows if self.per_row else 1
        alpha = self.alpha.expand(rows, self.n_tasks)
        # torch's global RNG (seeded by fit): CPU runs repeat bit for bit
        pref = torch.distributions.Dirichlet(alpha, validate_args=False).sample()
        self.pref = pref
        cond = self._cond[0]
        if cond is not None:
            cond.set_preference(pref if self.per_row else pref[0])

    def after_step(self) -> None:
        cond = self._cond[0]
        if cond is not None:
            cond.set_preference(None)  # evaluation falls back to the serving vector

    def _weights(self, like: torch.Tensor) -> torch.Tensor:
        pref = self.pref if self.pref is not None else self.w.unsqueeze(0)
        return pref.to(like.device)

    def _observe(self, task_losses: torch.Tensor) -> torch.Tensor:
        """Update the running loss scale s with a batch's task losses [T]; s (detached)."""
        if self.cosine:
            value = task_losses.detach().float().clamp_min(1e-12)
            # no host read (a GPU step stays asynchronous): an unset scale takes the value
            self.scale.copy_(torch.where(self.scale > 0, 0.98 * self.scale + 0.02 * value, value))
        return self.scale

    def combine(self, task_losses: torch.Tensor, epoch: int) -> torch.Tensor:
        r = self._weights(task_losses)[0]
        scale = self._observe(task_losses)
        total = self.n_tasks * (r * task_losses).sum()
        if self.cosine:
            total = total - self.cosine * nn.functional.cosine_similarity(
                r, task_losses / scale, dim=0)
        return total

    def combine_rows(self, row_losses: torch.Tensor, epoch: int) -> torch.Tensor:
        """Row mode: mean_b T * sum_k r_bk l_bk (- lambda * mean_b cos(r_b, l_b / s))."""
        r = self._weights(row_losses)
        scale = self._observe(row_losses.mean(dim=0))
        total = self.n_tasks * (r * row_losses).sum(dim=1).mean()
        if self.cosine:
            cos = nn.functional.cosine_similarity(r.expand_as(row_losses), row_losses / scale,
                                                  dim=1)
            total = total - self.cosine * cos.mean()
        return total

    def current_weights(self, epoch: int) -> torch.Tensor:
        return self.w.detach().clone()


def sweep_vectors(cfg: WeightingConfig, task_names: Sequence[str]) -> list[dict[str, float]]:
    """The evaluation sweep of a conditioned config, as {task: weight} mappings."""
    return [dict(zip(task_names, v)) for v in simplex_grid(len(task_names), cfg.sweep_points)]


__all__ = ["ConditionedWeighting", "simplex_grid", "sweep_vectors"]
