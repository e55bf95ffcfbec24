"""Bayes-optimal AUC: the AUC of the true probabilities kept by synthetic datasets."""

from __future__ import annotations

import numpy as np

from automtl.binary_metrics import roc_auc
from automtl.data.schema import Dataset
from automtl.errors import DataError


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    if y.size == 0 or y.min() == y.max():
        return float("nan")  # AUC is undefined with one class
    return roc_auc(y, p)


def bayes_auc(dataset: Dataset, split: str = "val") -> dict[str, float]:
    """Metric name -> AUC of the true probabilities on `split` (`{task}_auc`, `{cond}_auc`).

    `{cond}_auc` ranks rows whose parent label is 1 by p(task | parent, x) = truth_k / truth_parent.
    """
    if split not in dataset.splits:
        raise DataError(f"{dataset.name}: no split {split!r}; "
                        f"use one of {', '.join(dataset.splits)}")
    s = dataset.splits[split]
    if s.truth is None:
        raise DataError(f"{dataset.name}: no true probabilities (only synthetic data has them)")
    names = dataset.task_names
    out: dict[str, float] = {}
    for k, task in enumerate(dataset.tasks):
        out[f"{task.name}_auc"] = _auc(s.labels[:, k], s.truth[:, k])
    for k, task in enumerate(dataset.tasks):
        if task.depends_on and task.cond_name:
            j = names.index(task.depends_on)
            rows = s.labels[:, j] == 1
            cond = s.truth[rows, k] / np.maximum(s.truth[rows, j], 1e-12)
            out[f"{task.cond_name}_auc"] = _auc(s.labels[rows, k], cond)
    return out
