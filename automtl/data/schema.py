"""The Dataset contract every loader returns and every model/trainer consumes.

Conventions (all loaders follow them, models rely on them):
- sparse ids are int32 in ``[0, vocab_size)``; index 0 is reserved for OOV/unknown/missing;
- sequence fields are int32 ``[N, max_len]`` padded with 0 (0 = padding, never a real id);
  a sequence may share the embedding table of a sparse field (`shares_with`), which is also the
  query of target attention;
- dense values are float32 ``[N, n_dense]`` without NaNs;
- labels are float32 ``[N, n_tasks]`` in {0, 1}, columns in the order of `Dataset.tasks`.

Task semantics: every task's label covers all rows ("reached this step": click; click and
purchase). A task with `depends_on` is a later cascade step (its positives are a subset of the
parent's). Models output the logit of the unconditional probability of each task; metrics report
`{name}_auc` over all rows and, for dependent tasks, `{cond_name}_auc` over rows where the parent
label is 1 (e.g. Ali-CCP: ctr, ctcvr over all rows; cvr over clicked rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

FeatureKind = Literal["sparse", "dense", "sequence"]


@dataclass(frozen=True)
class FeatureSpec:
    """One input field."""

    name: str
    kind: FeatureKind
    vocab_size: int = 0  # sparse/sequence: ids in [0, vocab_size), 0 = OOV/padding
    max_len: int = 0  # sequence only
    shares_with: str | None = None  # sequence: sparse field whose embedding table it uses


@dataclass(frozen=True)
class TaskSpec:
    """One prediction task (a label column)."""

    name: str  # e.g. "ctr", "ctcvr", "income"
    label: str  # source column, e.g. "click"
    depends_on: str | None = None  # parent task in a cascade (no positive without parent positive)
    cond_name: str | None = None  # metric name of p(task | parent), e.g. "cvr"


def metric_names(tasks: Sequence[TaskSpec]) -> list[str]:
    """`{task}_auc` for every task and `{cond}_auc` for every dependent one."""
    names = [f"{t.name}_auc" for t in tasks]
    return names + [f"{t.cond_name}_auc" for t in tasks if t.depends_on and t.cond_name]


@dataclass
class Split:
    """One split's arrays (NumPy, possibly memory-mapped)."""

    sparse: np.ndarray  # int32 [N, n_sparse]
    dense: np.ndarray  # float32 [N, n_dense]
    sequences: dict[str, np.ndarray]  # name -> int32 [N, max_len]
    labels: np.ndarray  # float32 [N, n_tasks]
    truth: np.ndarray | None = None  # synthetic only: true p(task) [N, n_tasks]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    """A loaded dataset: schema plus train/val/test splits."""

    name: str
    features: list[FeatureSpec]
    tasks: list[TaskSpec]
    splits: dict[str, Split]  # keys "train", "val", "test"
    meta: dict[str, object] = field(default_factory=dict)  # source, options, cache key, notes

    @property
    def sparse_features(self) -> list[FeatureSpec]:
        return [f for f in self.features if f.kind == "sparse"]

    @property
    def dense_features(self) -> list[FeatureSpec]:
        return [f for f in self.features if f.kind == "dense"]

    @property
    def sequence_features(self) -> list[FeatureSpec]:
        return [f for f in self.features if f.kind == "sequence"]

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def metric_names(self) -> list[str]:
        """Objective-able metric names: `{task}_auc` and, for dependent tasks, `{cond}_auc`."""
        return metric_names(self.tasks)
