"""Base class of MTL bodies and the input convention they share.

Every body accepts either one shared input ``[B, D]`` or per-task inputs (a list of T ``[B, D]``
tensors or one stacked ``[T, B, D]`` tensor, e.g. from task-specific bottoms such as DTRN) and
returns raw per-task logits ``[T, B]``; the head (plain or ESMM) turns them into the model output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.schema import TaskSpec
from automtl.errors import ConfigError

BodyInput = Tensor | Sequence[Tensor]


def as_input(x: BodyInput, n_tasks: int) -> Tensor:
    """Normalise a body input to ``[B, D]`` (shared) or ``[T, B, D]`` (per task)."""
    if isinstance(x, Tensor):
        if x.dim() == 2 or (x.dim() == 3 and x.shape[0] == n_tasks):
            return x
        raise ValueError(f"body input must be [B, D] or [{n_tasks}, B, D], got {tuple(x.shape)}")
    if len(x) != n_tasks:
        raise ValueError(f"per-task body input needs {n_tasks} tensors, got {len(x)}")
    return torch.stack(list(x), dim=0)


def require_layers(cfg: ModelConfig, key: str) -> list[int]:
    """`cfg.<key>` (a layer-size list) if non-empty, else a one-line ConfigError naming the arch."""
    dims = list(getattr(cfg, key))
    if not dims:
        raise ConfigError(f"model.{key}: arch {cfg.arch} needs at least one layer, e.g. [128]")
    return dims


class Body(nn.Module):
    """An MTL architecture: input(s) -> raw logits ``[T, B]``; subclasses use `register_arch`.

    Class attributes: `needs_cascade` (the arch only makes sense with `depends_on` tasks),
    `independent_inputs` (asks `build_model` for an independent shared-bottom copy per task),
    `reads_batch` (the body also reads the raw batch, e.g. behaviour sequences step by step:
    it is built as ``cls(cfg, in_dim, tasks, features=...)`` and called as ``body(x, batch)``) and
    `aux_terms` (names of the body's own loss terms, e.g. SNR's L0 penalty: `aux_losses` returns
    one weighted scalar per name, computed from the last training forward; the trainer's loss adds
    them as terms ``model_<name>``).
    """

    needs_cascade: bool = False
    independent_inputs: bool = False
    reads_batch: bool = False
    aux_terms: tuple[str, ...] = ()

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec]) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_dim = in_dim
        self.tasks = list(tasks)
        self.n_tasks = len(self.tasks)

    def aux_losses(self, labels: Tensor) -> list[Tensor]:
        """One weighted scalar per `aux_terms` name for the last forward (labels ``[B, T]``)."""
        return []

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last layer shared by all tasks (GradNorm's W); [] when nothing is shared."""
        return []


__all__ = ["Body", "BodyInput", "as_input", "require_layers"]
