"""Task-cascade helpers shared by the cascade-only loss terms (PWiseR, L_D, calibrator)."""

from __future__ import annotations

from collections.abc import Sequence

from automtl.data.schema import TaskSpec
from automtl.errors import ConfigError


def cascade_chain(tasks: Sequence[TaskSpec]) -> list[int]:
    """Indices (into `tasks`) of the longest cascade root -> ... -> leaf; [] when there is none.

    A cascade is a chain of tasks linked by `depends_on` (e.g. ctr -> ctcart -> ctcvr).
    """
    index = {t.name: i for i, t in enumerate(tasks)}
    best: list[int] = []
    for i, task in enumerate(tasks):
        chain = [i]
        seen = {task.name}
        parent = task.depends_on
        while parent is not None and parent in index and parent not in seen:
            seen.add(parent)
            chain.append(index[parent])
            parent = tasks[index[parent]].depends_on
        chain.reverse()
        if len(chain) >= 2 and len(chain) > len(best):
            best = chain
    return best


def require_cascade(tasks: Sequence[TaskSpec], term: str, dataset: str = "") -> list[int]:
    """The cascade chain, or a one-line `ConfigError` saying `loss.<term>` needs one."""
    chain = cascade_chain(tasks)
    if not chain:
        names = ", ".join(t.name for t in tasks)
        where = f"dataset '{dataset}'" if dataset else "the dataset"
        raise ConfigError(
            f"loss.{term}: needs a task cascade (a task with depends_on), but {where} has "
            f"independent tasks ({names}); remove loss.{term} or use a dataset with a cascade"
        )
    return chain
