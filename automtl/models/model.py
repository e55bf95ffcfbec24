"""`MTLModel` (bottom -> body -> head) and `build_model`, the one way to construct a model."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.config import ModelConfig, WeightingConfig
from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import ConfigError
from automtl.models.base import BodyInput
from automtl.models.blocks import mlp
from automtl.models.deepmcp import DeepMCP
from automtl.models.embedding import FeatureEmbedding
from automtl.models.heads import cascade_order, has_cascade
from automtl.models.registry import ARCHS, BOTTOMS, HEADS, lookup
from automtl.models.shallow_tower import ShallowTower, bias_columns
from automtl.models.wide import WideTerm


class MTLModel(nn.Module):
    """A multi-task model: forward(batch) -> {task name: logit [B] of p(task = 1 | x)}."""

    def __init__(
        self, bottom: nn.Module, body: nn.Module, head: nn.Module, tasks: Sequence[TaskSpec]
    ) -> None:
        super().__init__()
        self.bottom, self.body, self.head = bottom, body, head
        self.task_names: list[str] = [t.name for t in tasks]
        self.reads_batch = bool(getattr(body, "reads_batch", False))  # see `Body.reads_batch`
        self.wide: nn.Module | None = None  # `model.wide`: first-order term (models/wide.py)
        self.imputation: nn.Module | None = None  # ESCM2-DR's imputation tower (training only)
        self.imputation_task = 0  # which per-task bottom output the imputation tower reads
        self.deepmcp: nn.Module | None = None  # DeepMCP's auxiliary subnets (loss terms only)
        self.shallow: nn.Module | None = None  # YouTube's shallow bias tower (training only)
        # sparse columns the main model reads (None = all; the shallow tower's bias fields are
        # the tower's alone)
        self.main_columns: Tensor | None
        self.register_buffer("main_columns", None, persistent=False)

    def for_serving(self) -> "MTLModel":
        """The model without its training-only parts (the shallow tower, DeepMCP's subnets),
        sharing every other module: what exports serve; itself when it has no such parts."""
        if self.shallow is None and self.deepmcp is None:
            return self
        twin = copy.copy(self)
        twin._modules = {**self._modules, "shallow": None, "deepmcp": None}
        return twin

    def _main_input(self, batch: Batch) -> tuple[BodyInput, Batch]:
        """The bottom's output for the main model's columns, and that batch."""
        if self.main_columns is not None:
            batch = Batch(batch.sparse.index_select(1, self.main_columns), batch.dense,
                          batch.sequences, batch.labels)
        x = self.bottom(batch)
        if self.deepmcp is not None and self.training:
            self.deepmcp.observe(batch, self.bottom.embedding)
        return x, batch

    def forward_raw(self, batch: Batch) -> Tensor:
        """The body's raw logits ``[T, B]`` before the head (ESMM: conditional logits), plus
        the wide term when there is one (and, in training, the shallow tower's bias)."""
        x, main = self._main_input(batch)
        return self._add_terms(self._body(x, main), batch, main)

    def encode(self, batch: Batch) -> tuple[BodyInput, Batch]:
        """The bottom's output and the main model's batch: the part of a forward pass that no
        task-weight vector changes (FiLM sits in the body), which a preference sweep computes
        once per batch for all its vectors (`decode` does the rest)."""
        return self._main_input(batch)

    def decode(self, encoded: tuple[BodyInput, Batch], batch: Batch) -> Tensor:
        """Task logits ``[T, B]`` from `encode(batch)`: `forward_tensor(batch)` in two parts."""
        x, main = encoded
        return self.head(self._add_terms(self._body(x, main), batch, main))

    def _body(self, x: Tensor | list[Tensor], batch: Batch) -> Tensor:
        return self.body(x, batch) if self.reads_batch else self.body(x)

    def _add_terms(self, raw: Tensor, batch: Batch, main: Batch) -> Tensor:
        if self.wide is not None:
            raw = raw + self.wide(main).to(raw.dtype)
        if self.shallow is not None and self.training:  # dropped at serving (and in eval)
            raw = raw + self.shallow(batch).to(raw.dtype)
        return raw

    def forward_tensor(self, batch: Batch) -> Tensor:
        """Task logits stacked as ``[T, B]`` in `task_names` order."""
        return self.head(self.forward_raw(batch))

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return dict(zip(self.task_names, self.forward_tensor(batch).unbind(0)))

    @property
    def aux_terms(self) -> tuple[str, ...]:
        """Names of the model's own loss terms: the body's (see `Body.aux_terms`), then
        DeepMCP's."""
        own = tuple(getattr(self.deepmcp, "terms", ()))
        return tuple(getattr(self.body, "aux_terms", ())) + own

    def aux_losses(self, labels: Tensor) -> list[Tensor]:
        """The model's own loss terms of the last forward, one scalar per `aux_terms` name."""
        out = self.body.aux_losses(labels) if getattr(self.body, "aux_terms", ()) else []
        if self.deepmcp is not None:
            out = out + self.deepmcp.aux_losses(labels)
        return out

    def forward_outputs(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Task logits ``[T, B]`` and the named tensors the head's loss terms read (training)."""
        x, main = self._main_input(batch)
        logits, extras = self.head.outputs(self._add_terms(self._body(x, main), batch, main))
        if self.imputation is not None:
            xi = x if isinstance(x, Tensor) else torch.stack(list(x), dim=0)
            if xi.dim() == 3:
                xi = xi[self.imputation_task]
            extras["imputation_logit"] = self.imputation(xi).squeeze(-1).float()
        return logits, extras


def _needs_cascade(what: str, tasks: Sequence[TaskSpec]) -> None:
    if not has_cascade(tasks):
        names = ", ".join(t.name for t in tasks)
        raise ConfigError(
            f"{what} needs a task cascade (a task with depends_on) but tasks {names} have none; "
            "choose another model.arch/model.head or a dataset with a cascade"
        )


def build_model(
    cfg: ModelConfig, features: Sequence[FeatureSpec], tasks: Sequence[TaskSpec],
    weighting: WeightingConfig | None = None,
) -> MTLModel:
    """The model `cfg` describes, for a dataset's features and tasks (ConfigError if invalid).

    With a `conditioned` `weighting` the model gets FiLM layers fed by a task-weight vector
    (`automtl.models.film`), as its `conditioning` child, built last so the other parameters
    are initialised exactly as without it.
    """
    body_cls = lookup(ARCHS, "arch", cfg.arch)
    bottom_cls = lookup(BOTTOMS, "bottom", cfg.bottom)
    head_cls = lookup(HEADS, "head", cfg.head)
    cfg.validate()
    if not tasks:
        raise ConfigError("dataset has no tasks; a multi-task model needs at least one task")
    cascade_order(tasks)  # validates depends_on
    if getattr(body_cls, "needs_cascade", False):
        _needs_cascade(f"model.arch: {cfg.arch}", tasks)
    if getattr(head_cls, "needs_cascade", False):
        _needs_cascade(f"model.head: {cfg.head}", tasks)
    head = head_cls(tasks)
    if cfg.head == "escm2_dr" and not cfg.imputation_dims:
        raise ConfigError("model.imputation_dims: head escm2_dr needs an imputation tower; set "
                          "its layer sizes, e.g. [64], or use head escm2_ips")
    # the shallow tower's bias fields are read by it alone (models/shallow_tower.py)
    all_features = list(features)
    bias = bias_columns(cfg.shallow_tower, features) if cfg.shallow_tower is not None else []
    bias_names = {[f for f in features if f.kind == "sparse"][c].name for c in bias}
    features = [f for f in features if f.name not in bias_names]
    # a head's extra towers (DCMT's counterfactual twin, ESM2's other-action path) are extra
    # body tasks hanging off the cascade root, so every body treats them like a real task
    root = getattr(head, "root", None)
    all_tasks = list(tasks) + [
        TaskSpec(f"aux_{name}", label="", depends_on=tasks[root].name if root is not None else None)
        for name in head.extra_tasks
    ]
    if getattr(body_cls, "independent_inputs", False) and cfg.bottom == "shared" and len(all_tasks) > 1:
        bottom = bottom_cls(cfg, features, all_tasks, copies=len(all_tasks))
    else:
        bottom = bottom_cls(cfg, features, all_tasks)
    extra = {"features": list(features)} if getattr(body_cls, "reads_batch", False) else {}
    body = body_cls(cfg, bottom.out_dim, all_tasks, **extra)
    model = MTLModel(bottom, body, head, tasks)
    if cfg.wide:
        model.wide = WideTerm(features, len(all_tasks))  # zero init: draws no random numbers
    if cfg.head == "escm2_dr":
        model.imputation = nn.Sequential(
            mlp(bottom.out_dim, cfg.imputation_dims, cfg.activation, cfg.dropout),
            nn.Linear(cfg.imputation_dims[-1], 1))
        model.imputation_task = head.leaf
    _add_ons(model, cfg, all_features, features, tasks, bias, len(all_tasks))
    if weighting is not None and weighting.scheme == "conditioned":
        from automtl.models.film import PreferenceConditioner

        model.conditioning = PreferenceConditioner(body, len(tasks), weighting,
                                                   model.task_names)
    return model


def _add_ons(model: MTLModel, cfg: ModelConfig, all_features: Sequence[FeatureSpec],
             main_features: Sequence[FeatureSpec], tasks: Sequence[TaskSpec], bias: list[int],
             n_body_tasks: int) -> None:
    """DeepMCP's subnets (on the main model's embedding table) and the shallow bias tower."""
    table = getattr(model.bottom, "embedding", None)
    if cfg.deepmcp is not None:
        if not isinstance(table, FeatureEmbedding):
            raise ConfigError(f"model.deepmcp: bottom {cfg.bottom} has no shared embedding table "
                              "for the subnets to shape; use bottom shared, dtrn, apem or stem")
        model.deepmcp = DeepMCP(cfg.deepmcp, main_features, tasks, table.dim)
    if cfg.shallow_tower is not None:
        model.shallow = ShallowTower(cfg.shallow_tower, all_features, n_body_tasks,
                                     cfg.embedding_dim)
        keep = [i for i in range(sum(f.kind == "sparse" for f in all_features)) if i not in bias]
        model.main_columns = torch.tensor(keep, dtype=torch.long)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MTLModel", "build_model", "count_parameters"]
