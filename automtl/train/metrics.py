"""Evaluation of a model on a split: per-task AUC and logloss, conditional AUC.

Metric names: `{task}_auc`, `{task}_logloss` over all rows; `{cond}_auc` for a dependent task over
rows whose parent label is 1, ranked by p(task | parent) = p_task / p_parent (log space); and
`mean_auc`, the mean of the `{task}_auc`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from automtl.binary_metrics import log_loss, roc_auc
from automtl.data.batching import Batch, DeviceSplit, iter_batches
from automtl.data.streaming import StreamedSplit
from automtl.data.schema import TaskSpec
from automtl.train.device import autocast


def task_logits_fn(model: torch.nn.Module, task_names: Sequence[str]) -> Callable[[Batch], torch.Tensor]:
    """A function batch -> logits [B, T] in `task_names` order (the model's stacked output when it
    offers `forward_tensor` in that order, else its dict output stacked)."""
    stacked = getattr(model, "forward_tensor", None)
    if callable(stacked) and list(getattr(model, "task_names", [])) == list(task_names):
        return lambda batch: stacked(batch).t()
    names = list(task_names)
    return lambda batch: _stack_dict(model(batch), names)


def train_outputs_fn(
    model: torch.nn.Module, task_names: Sequence[str]
) -> Callable[[Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """A function batch -> (logits [B, T], head outputs for the loss): the model's
    `forward_outputs` when it has one (heads escm2_*/dcmt/esm2 need it), else no head outputs."""
    outputs = getattr(model, "forward_outputs", None)
    if callable(outputs) and list(getattr(model, "task_names", [])) == list(task_names):
        def run(batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            logits, extras = outputs(batch)
            return logits.t(), extras
        return run
    plain = task_logits_fn(model, task_names)
    return lambda batch: (plain(batch), {})


def _stack_dict(out: dict[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    return torch.stack([out[t] for t in names], dim=1)


def predict_logits(
    model: torch.nn.Module,
    data: DeviceSplit | StreamedSplit,
    task_names: Sequence[str],
    batch_size: int,
    precision: str = "fp32",
) -> torch.Tensor:
    """Logits [N, T] (float32, on the split's device) in large batches under inference mode."""
    was_training = model.training
    model.eval()
    device = data.device
    chunks = []
    forward = task_logits_fn(model, task_names)
    try:
        with torch.inference_mode(), autocast(device, precision):
            for batch in iter_batches(data, batch_size):
                chunks.append(forward(batch).float())
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, len(task_names), device=device)


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    if y.size == 0 or y.min() == y.max():
        return float("nan")  # undefined with one class (tiny splits)
    return roc_auc(y, score)


def _logloss(y: np.ndarray, logit: np.ndarray) -> float:
    if y.size == 0:
        return float("nan")
    p = np.exp(_log_sigmoid(logit))  # 1 / (1 + exp(-x)) overflows (a warning) at x < -709
    return log_loss(y, p)


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def compute_metrics(
    logits: np.ndarray, labels: np.ndarray, tasks: Sequence[TaskSpec]
) -> dict[str, float]:
    """Metrics from logits and labels [N, T] (columns in the order of `tasks`)."""
    logits = logits.astype(np.float64, copy=False)
    names = [t.name for t in tasks]
    out: dict[str, float] = {}
    aucs = []
    for k, task in enumerate(tasks):
        y = labels[:, k]
        out[f"{task.name}_auc"] = _auc(y, logits[:, k])
        out[f"{task.name}_logloss"] = _logloss(y, logits[:, k])
        aucs.append(out[f"{task.name}_auc"])
    for k, task in enumerate(tasks):
        if task.depends_on and task.cond_name and task.depends_on in names:
            j = names.index(task.depends_on)
            rows = labels[:, j] > 0.5
            cond = _log_sigmoid(logits[rows, k]) - _log_sigmoid(logits[rows, j])
            out[f"{task.cond_name}_auc"] = _auc(labels[rows, k], cond)
    finite = [a for a in aucs if np.isfinite(a)]
    out["mean_auc"] = float(np.mean(finite)) if len(finite) == len(aucs) and aucs else float("nan")
    return out


def evaluate(
    model: torch.nn.Module,
    data: DeviceSplit | StreamedSplit,
    tasks: Sequence[TaskSpec],
    batch_size: int,
    precision: str = "fp32",
) -> dict[str, float]:
    """Metrics of `model` on `data` (one device->host copy of the logits)."""
    logits = predict_logits(model, data, [t.name for t in tasks], batch_size, precision)
    return compute_metrics(logits.cpu().numpy(), data.labels.cpu().numpy(), tasks)
