"""DBMTL (Wang, Ji, Liu, Zhao, "Deep Bayesian Multi-Target Learning for Recommender Systems",
arXiv 1902.09154, Alibaba 2019), sec. 3-4, Fig. 2.

The targets form a Bayesian network, p(t_1..t_T | x) = prod_i p(t_i | parents(t_i), x), and every
directed link is parameterised by hidden layers. The network mirrors the factorisation: a shared
MLP f(x) (`bottom_dims`), then one hidden tower per target q_i = g_i(f(x)) (`tower_dims`); a target
with parents reads their hidden states through its own link layer,

    h_i = q_i                                           (root target)
    h_i = act(W_i [q_i, h_p1, ..., h_pk] + b_i)         (Eq. 3-4: t_i | t_p, x)

and y_i = sigmoid(w_i^T h_i + c_i). Gradients of t_i's loss flow into its parents' towers, so a
parent learns what its children need, and a child's prediction moves with its parents' states.

The DAG (the paper selects it per application) is `model.dbmtl_parents` ({task: [parents]});
empty means the dataset's cascade (`depends_on`), or, on a dataset without one, a chain in task
order (t_1 -> t_2 -> ...). Choices: one link layer of the tower width per dependent target; the
link reads parents' *hidden states* h_p (not their probabilities), as the paper's Fig. 2 draws.
Per-task inputs ``[T, B, D]``: target i's tower reads f(x_i).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.config import ModelConfig
from automtl.data.schema import TaskSpec
from automtl.errors import ConfigError
from automtl.models.base import Body, BodyInput, as_input, require_layers
from automtl.models.blocks import StackedLinear, Towers, activation, mlp
from automtl.models.registry import register_arch


def target_dag(tasks: Sequence[TaskSpec], parents: dict[str, list[str]]) -> list[list[int]]:
    """Parent indices per task from `parents` (else the cascade, else a chain); ConfigError on an
    unknown task name or a cycle."""
    names = [t.name for t in tasks]
    if not parents:
        if any(t.depends_on for t in tasks):
            parents = {t.name: [t.depends_on] for t in tasks if t.depends_on}
        else:
            parents = {names[i]: [names[i - 1]] for i in range(1, len(names))}
    for child, ps in parents.items():
        for name in [child, *ps]:
            if name not in names:
                raise ConfigError(f"model.dbmtl_parents: {name!r} is not a task of the dataset; "
                                  f"use task names from {', '.join(names)}")
    out = [[names.index(p) for p in parents.get(n, [])] for n in names]
    state: dict[int, int] = {}

    def visit(i: int) -> None:
        if state.get(i) == 1:
            raise ConfigError(f"model.dbmtl_parents: the links through {names[i]!r} form a "
                              "cycle; the targets must form a DAG")
        if state.get(i) != 2:
            state[i] = 1
            for p in out[i]:
                visit(p)
            state[i] = 2

    for i in range(len(names)):
        visit(i)
    return out


@register_arch("dbmtl")
class DBMTL(Body):
    """Shared MLP, one hidden tower per target, link layers along the target DAG."""

    def __init__(self, cfg: ModelConfig, in_dim: int, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(cfg, in_dim, tasks)
        dims = require_layers(cfg, "tower_dims")
        self.shared = mlp(in_dim, cfg.bottom_dims, cfg.activation, cfg.dropout)
        width = cfg.bottom_dims[-1] if cfg.bottom_dims else in_dim
        self.towers = Towers(self.n_tasks, width, dims, cfg.activation, cfg.dropout, logit=False)
        h = self.towers.out_dim
        self.parents = target_dag(self.tasks, cfg.dbmtl_parents)
        self.order: list[int] = []
        for i in range(self.n_tasks):  # topological order (target_dag rejected cycles)
            self._visit(i)
        self.links = nn.ModuleDict({
            str(i): nn.Sequential(nn.Linear(h * (1 + len(ps)), h), activation(cfg.activation))
            for i, ps in enumerate(self.parents) if ps})
        self.out = StackedLinear(self.n_tasks, h, 1)

    def _visit(self, i: int) -> None:
        if i not in self.order:
            for p in self.parents[i]:
                self._visit(p)
            self.order.append(i)

    def hidden(self, x: BodyInput) -> Tensor:
        """Every target's hidden state h_i, ``[T, B, H]``."""
        q = self.towers(self.shared(as_input(x, self.n_tasks)))  # [T, B, H]
        h: list[Tensor | None] = [None] * self.n_tasks
        for i in self.order:  # T targets: a loop over the DAG, never over rows
            ps = self.parents[i]
            h[i] = self.links[str(i)](torch.cat([q[i]] + [h[p] for p in ps], -1)) if ps else q[i]
        return torch.stack(h, dim=0)  # type: ignore[arg-type]

    def forward(self, x: BodyInput) -> Tensor:
        return self.out(self.hidden(x)).squeeze(-1)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        linears = [m for m in self.shared if isinstance(m, nn.Linear)]
        return list(linears[-1].parameters()) if linears else []
