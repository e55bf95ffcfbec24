"""Output heads: raw body logits ``[T, B]`` -> logits of the UNCONDITIONAL p(task = 1 | x).

- `plain`: identity (each body logit already models p(task)).
- `esmm`: ESMM (Ma et al., SIGIR 2018): pCTCVR = pCTR * pCVR, generalised to any cascade:
  for a task i with parent j (`depends_on`), p_i = p_j * sigmoid(raw_i), raw_i modelling the
  conditional p(i | j, x). Computed in log space, log p_i = log p_j + logsigmoid(raw_i), and
  returned as the stable logit log p - log(1 - p) (log1mexp), so BCE-with-logits stays exact
  for the tiny CTCVR probabilities (1e-4) where a product of sigmoids would lose precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.data.schema import TaskSpec
from automtl.errors import ConfigError
from automtl.models.registry import register_head

_LOG_HALF = -math.log(2.0)


def cascade_order(tasks: Sequence[TaskSpec]) -> list[int]:
    """Task indices, parents before children; ConfigError on an unknown parent or a cycle."""
    index = {t.name: i for i, t in enumerate(tasks)}
    for t in tasks:
        if t.depends_on is not None and t.depends_on not in index:
            raise ConfigError(
                f"task {t.name}: depends_on={t.depends_on!r} is not a task; "
                f"use one of {', '.join(index)}"
            )
    order: list[int] = []
    state: dict[int, int] = {}

    def visit(i: int) -> None:
        if state.get(i) == 2:
            return
        if state.get(i) == 1:
            raise ConfigError(
                f"task {tasks[i].name}: depends_on forms a cycle; make the cascade a chain"
            )
        state[i] = 1
        parent = tasks[i].depends_on
        if parent is not None:
            visit(index[parent])
        state[i] = 2
        order.append(i)

    for i in range(len(tasks)):
        visit(i)
    return order


def parent_indices(tasks: Sequence[TaskSpec]) -> list[int | None]:
    """Index of each task's parent (None for roots)."""
    index = {t.name: i for i, t in enumerate(tasks)}
    return [index[t.depends_on] if t.depends_on is not None else None for t in tasks]


def has_cascade(tasks: Sequence[TaskSpec]) -> bool:
    """True when at least one task has `depends_on`."""
    return any(t.depends_on is not None for t in tasks)


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, stable on both sides of -log 2 (Maechler, 2012)."""
    return torch.where(x > _LOG_HALF, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def logp_to_logit(lp: Tensor) -> Tensor:
    """The logit log p - log(1 - p) of a probability given as log p (stable for tiny p)."""
    # p == 1 in float would give an infinite logit; clamp just below log 1
    lp_c = lp.clamp(max=-1e-7)
    return lp_c - log1mexp(lp_c)


@register_head("plain")
class PlainHead(nn.Module):
    """Identity head: the body's raw logits are the task logits."""

    needs_cascade = False
    extra_tasks: tuple[str, ...] = ()  # pseudo-tasks the body predicts for this head (none)

    def __init__(self, tasks: Sequence[TaskSpec] = ()) -> None:
        super().__init__()

    def forward(self, raw: Tensor) -> Tensor:
        return raw

    def outputs(self, raw: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Task logits ``[T, B]`` and the tensors a head's loss terms read (none here)."""
        return self.forward(raw), {}


@register_head("esmm")
class ESMMHead(PlainHead):
    """ESMM cascade head (SIGIR 2018) for any body and any cascade depth; see module docstring.

    Airbnb's journey cascade (Tan et al., "Optimizing Airbnb Search Journey with Multi-task
    Learning", KDD 2023, sec. 3, the base module) is this head on an N-step milestone chain: each
    milestone's unconditional probability is the product of the step probabilities before it, each
    milestone keeps its own BCE and weight (`loss.weighting.weights`).
    """

    needs_cascade = True

    def __init__(self, tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        self.order = cascade_order(tasks)
        self.parents = parent_indices(tasks)

    def log_probs(self, raw: Tensor) -> list[Tensor]:
        """log p(task = 1 | x) per task (fp32), from raw conditional logits ``[>= T, B]``."""
        # fp32 even under bf16 autocast: log p of a deep cascade step needs the mantissa bits
        raw = raw.float()
        logp: list[Tensor | None] = [None] * len(self.parents)
        for i in self.order:  # T is 2-4: a loop over cascade steps, not over samples
            parent = self.parents[i]
            step = nn.functional.logsigmoid(raw[i])
            logp[i] = step if parent is None else logp[parent] + step  # type: ignore[operator]
        return logp  # type: ignore[return-value]

    def logits_from(self, raw: Tensor, logp: Sequence[Tensor]) -> Tensor:
        """Task logits ``[T, B]``: roots keep their raw logit, dependants the logit of log p."""
        raw = raw.float()
        return torch.stack([raw[i] if self.parents[i] is None else logp_to_logit(logp[i])
                            for i in range(len(self.parents))], dim=0)

    def forward(self, raw: Tensor) -> Tensor:
        return self.logits_from(raw, self.log_probs(raw))


__all__ = [
    "ESMMHead", "PlainHead", "cascade_order", "has_cascade", "log1mexp", "logp_to_logit",
    "parent_indices",
]
