"""Serving cost of a model: trainable parameters and inference latency per 1,000 rows.

Latency is measured on the device the model lives on, with batches of 1,000 validation rows (all
of them when the split is smaller, scaled to 1,000), in eval mode under `torch.inference_mode`
and the trial's precision, after warm-up calls (allocator, kernel selection, lazy init), as the
median of several timed calls (robust to a noisy shared machine). The weights do not matter, so
it can be measured before training, which lets a search skip designs it could not serve.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from automtl.data.batching import DeviceSplit
from automtl.train.device import autocast, synchronize
from automtl.train.metrics import task_logits_fn

LATENCY_ROWS = 1000


def inference_latency_ms(model: nn.Module, data: DeviceSplit, task_names: Sequence[str], *,
                         precision: str = "fp32", rows: int = LATENCY_ROWS, warmup: int = 3,
                         repeats: int = 10) -> float:
    """Median milliseconds of one forward pass over `rows` rows of `data` (scaled to `rows` when
    the split is smaller)."""
    n = min(rows, len(data))
    if n <= 0:
        raise ValueError("inference_latency_ms: the split is empty")
    batch = data.slice(0, n)
    device = data.labels.device
    forward = task_logits_fn(model, task_names)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.inference_mode(), autocast(device, precision):
            for i in range(warmup + repeats):
                synchronize(device)
                t0 = time.perf_counter()
                forward(batch)
                synchronize(device)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return statistics.median(times) * 1000.0 * rows / n


__all__ = ["LATENCY_ROWS", "inference_latency_ms"]
