"""Device-memory plan of a training run: which splits live on the device, which are streamed.

Before training, `plan_memory` compares the bytes each split needs on the device (its columns
as int32/float32 tensors) plus an estimate of the model's own needs (weights, gradients, two
Adam moments, activations of a training and an evaluation batch) with the device's free memory
(`torch.cuda.mem_get_info` on CUDA; on CPU the budget of `AUTOMTL_DEVICE_BUDGET`, unlimited when
unset, so CPU runs keep every split resident as before). Splits are placed greedily in the
order train, val, test (train is read every step, val and test once per epoch): each that still
fits stays resident, the others stay in host memory and are streamed batch by batch
(`automtl.data.StreamedSplit`). A streamed split that is memory-mapped from a cache is gathered
from the page cache and needs no host copy; an in-memory one is pinned, so it must fit the host
budget (`MemAvailable`, or `AUTOMTL_HOST_BUDGET`). When even the model does not fit the device,
or a streamed in-memory split does not fit the host, the plan fails with one line of numbers.

`data_on` ("auto" | "device" | "host"; `--data-on`, env `AUTOMTL_DATA_ON`) overrides the greedy
choice: "device" keeps every split resident (the plan line warns when the estimate exceeds the
budget), "host" streams every split.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from automtl.errors import ConfigError, DataError

DataOn = Literal["auto", "device", "host"]
DATA_ON_VALUES: tuple[str, ...] = ("auto", "device", "host")
DATA_ON_ENV = "AUTOMTL_DATA_ON"
DEVICE_BUDGET_ENV = "AUTOMTL_DEVICE_BUDGET"
HOST_BUDGET_ENV = "AUTOMTL_HOST_BUDGET"
SPLIT_ORDER = ("train", "val", "test")
# Kept free on the device beyond the estimate: allocator fragmentation, cuBLAS/cuDNN workspaces,
# the CUDA context's own growth. The estimate is rough; the margin absorbs its error.
RESERVE_FRACTION = 0.08
RESERVE_MIN = 256 << 20
STAGING_BATCHES = 3  # a streamed split holds at most this many batches on the device at once

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str, where: str) -> int:
    """"512M", "24G", "1.5g", "1000000" -> bytes; a one-line `ConfigError` otherwise."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text or "")
    if not m:
        raise ConfigError(f"{where}: {text!r} is not a size; use bytes or a number with K, M, G "
                          "or T (e.g. 24G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def resolve_data_on(value: str | None = None) -> DataOn:
    """The placement override: `value`, else `$AUTOMTL_DATA_ON`, else "auto"."""
    text = (value if value is not None else os.environ.get(DATA_ON_ENV, "auto")).strip().lower()
    if text not in DATA_ON_VALUES:
        src = "--data-on" if value is not None else f"${DATA_ON_ENV}"
        raise ConfigError(f"{src} {text!r}: use auto, device or host")
    return text  # type: ignore[return-value]


def gib(n: float) -> str:
    """Bytes as GiB (or MiB below 1 GiB), for plan lines."""
    return f"{n / (1 << 30):.2f} GiB" if abs(n) >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


@dataclass(frozen=True)
class MemoryPlan:
    """Where each split lives during one run, and the numbers that decided it."""

    device: str
    data_on: DataOn
    placement: dict[str, Literal["device", "host"]]
    split_bytes: dict[str, int]
    model_bytes: int
    device_budget: int | None  # None = unlimited (CPU without AUTOMTL_DEVICE_BUDGET)
    host_budget: int | None
    warning: str = ""
    streamed: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One log line: which split goes where, and why."""
        where = ", ".join(f"{s} {self.placement[s]} ({gib(self.split_bytes[s])})"
                          for s in self.placement)
        budget = "unlimited" if self.device_budget is None else gib(self.device_budget)
        why = (f"--data-on {self.data_on}" if self.data_on != "auto" else
               "all fit" if not self.streamed else "the rest does not fit")
        # Before any trial (the study-level check) no model exists yet: say nothing about it.
        model = f"model estimate {gib(self.model_bytes)}, " if self.model_bytes else ""
        text = f"data plan on {self.device}: {where}; {model}device budget {budget} ({why})"
        return text + (f"; {self.warning}" if self.warning else "")


def plan_memory(
    split_bytes: Mapping[str, int],
    model_bytes: int,
    device_budget: int | None,
    *,
    device: str = "cuda",
    host_budget: int | None = None,
    file_backed: Mapping[str, bool] | None = None,
    staging_bytes: int = 0,
    data_on: DataOn = "auto",
) -> MemoryPlan:
    """Place each split (in train, val, test order) on the device or the host; raises a
    one-line `DataError` with the numbers when the run fits nowhere. Pure: sizes in bytes."""
    names = [s for s in SPLIT_ORDER if s in split_bytes] + \
        [s for s in split_bytes if s not in SPLIT_ORDER]
    file_backed = file_backed or {}
    reserve = 0 if device_budget is None else max(RESERVE_MIN, int(device_budget * RESERVE_FRACTION))
    placement: dict[str, Literal["device", "host"]] = {}
    warning = ""
    if device_budget is not None and model_bytes + reserve > device_budget and data_on != "device":
        raise DataError(
            f"the model alone needs about {gib(model_bytes)} (weights, gradients, Adam moments, "
            f"activations) plus a {gib(reserve)} reserve but {device} has {gib(device_budget)} "
            "free; use a smaller model/batch_size or a larger device")
    left = None if device_budget is None else device_budget - reserve - model_bytes - staging_bytes
    for s in names:
        need = int(split_bytes[s])
        if data_on == "host":
            placement[s] = "host"
        elif data_on == "device" or left is None or need <= left:
            placement[s] = "device"
            if left is not None:
                left -= need
        else:
            placement[s] = "host"
    if data_on == "device" and left is not None and left < 0:
        warning = (f"forced resident although the estimate exceeds the device budget by "
                   f"{gib(-left)}: it may run out of memory (--data-on auto streams what does "
                   "not fit)")
    streamed = [s for s in names if placement[s] == "host"]
    pinned = sum(int(split_bytes[s]) for s in streamed if not file_backed.get(s, False))
    if host_budget is not None and pinned > host_budget:
        resident = sum(int(split_bytes[s]) for s in names if placement[s] == "device")
        raise DataError(
            f"the data fits nowhere: {', '.join(f'{s} {gib(split_bytes[s])}' for s in names)}; "
            f"{device} has {gib(device_budget or 0)} free (model ~{gib(model_bytes)} + reserve "
            f"{gib(reserve)} + resident data {gib(resident)}), and the {gib(pinned)} streamed "
            f"in memory exceed the host's {gib(host_budget)} available; use fewer rows "
            "(--data-option rows=N) or a prepared on-disk cache (memory-mapped, streamed from "
            "disk)")
    return MemoryPlan(device=device, data_on=data_on, placement=placement,
                      split_bytes={s: int(split_bytes[s]) for s in names},
                      model_bytes=int(model_bytes), device_budget=device_budget,
                      host_budget=host_budget, warning=warning, streamed=streamed)


# -- the inputs of a plan, measured -------------------------------------------------------------


def host_budget() -> int | None:
    """Host memory available for pinned splits: `$AUTOMTL_HOST_BUDGET`, else MemAvailable."""
    env = os.environ.get(HOST_BUDGET_ENV)
    if env:
        return parse_bytes(env, f"${HOST_BUDGET_ENV}")
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def device_budget(device: object, already_resident: int = 0) -> int | None:
    """Bytes this run may use on `device`: `$AUTOMTL_DEVICE_BUDGET` when set (any device, for
    tests and for sharing a GPU), else CUDA's free memory plus what this process's caching
    allocator holds unused plus `already_resident` (cached splits a new plan may reuse);
    None (unlimited) on CPU."""
    env = os.environ.get(DEVICE_BUDGET_ENV)
    if env:
        return parse_bytes(env, f"${DEVICE_BUDGET_ENV}")
    import torch

    dev = torch.device(device)  # type: ignore[arg-type]
    if dev.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(dev)
    idle = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
    return int(free + max(idle, 0) + already_resident)


def estimate_model_bytes(model: object, batch_size: int, eval_batch_size: int,
                         row_elements: int) -> int:
    """Device bytes of training `model`: 16 per parameter (fp32 weight, gradient, two Adam
    moments) plus activations. Activations per row: the embedding outputs (`row_elements` id
    columns times the widest embedding table, parameters named "*embedding*") and every other
    weight's (stacked) layer input and output, kept for the backward pass and matched by their
    gradients (x2), as fp32; evaluation batches keep none but are larger (the widest layer at a
    time), so the larger of the two counts. Read from parameter shapes, so any architecture."""
    from torch import nn

    assert isinstance(model, nn.Module)
    params, dim, linear, widest = 0, 0, 0, 0
    for name, p in model.named_parameters():
        params += p.numel()
        if p.dim() < 2:
            continue
        if "embedding" in name.lower():  # a table [rows, dim]: one dim-wide output per id
            dim = max(dim, int(p.shape[-1]))
            continue
        # a (stacked) layer weight [..., in, out]: each of its prod(...) layers keeps in + out
        stack = int(p[..., 0, 0].numel())
        width = stack * (int(p.shape[-2]) + int(p.shape[-1]))
        linear += width
        widest = max(widest, width)
    per_row = row_elements * dim + linear
    train_act = batch_size * per_row * 4 * 2
    eval_act = eval_batch_size * (row_elements * dim + widest) * 4
    return int(params * 16 + max(train_act, eval_act))


def row_bytes(split: object) -> int:
    """Device bytes of one row of a split (int32 ids, float32 dense and labels)."""
    from automtl.data.schema import Split

    assert isinstance(split, Split)
    n = max(len(split), 1)
    return split_nbytes(split) // n


def split_nbytes(split: object) -> int:
    """Device bytes of a split's columns as tensors (ids int32, dense and labels float32)."""
    from automtl.data.schema import Split

    assert isinstance(split, Split)
    cols = [split.sparse, split.dense, split.labels, *split.sequences.values()]
    return int(sum(a.size * 4 for a in cols))


def file_backed(split: object) -> bool:
    """True when every column of the split is memory-mapped from a file (a prepared cache)."""
    import numpy as np

    from automtl.data.schema import Split

    assert isinstance(split, Split)

    def mapped(a: np.ndarray) -> bool:
        base: object = a
        while isinstance(base, np.ndarray):
            if isinstance(base, np.memmap):
                return True
            base = base.base
        return False

    cols = [split.sparse, split.dense, split.labels, *split.sequences.values()]
    return all(mapped(a) for a in cols if a.size)


_last_line: dict[str, str] = {}


def plan_run(dataset: object, device: object, model: object | None = None, batch_size: int = 2048,
             eval_batch_size: int = 16384, data_on: str | None = None) -> MemoryPlan:
    """The plan of training `model` (None: data only) on `dataset` on `device` (see module).
    Logs its line (logger "automtl.train", INFO) when its placement differs from this
    process's last plan on that device."""
    import logging

    import torch

    from automtl.data.schema import Dataset
    from automtl.train.cache import resident_bytes

    assert isinstance(dataset, Dataset)
    dev = torch.device(device)  # type: ignore[arg-type]
    where = resolve_data_on(data_on)
    sizes = {s: split_nbytes(sp) for s, sp in dataset.splits.items()}
    backed = {s: file_backed(sp) for s, sp in dataset.splits.items()}
    rows = max((row_bytes(sp) for sp in dataset.splits.values()), default=0)
    first = next(iter(dataset.splits.values()), None)
    elements = 0 if first is None else int(
        first.sparse.shape[1] + sum(v.shape[1] for v in first.sequences.values()))
    model_bytes = 0 if model is None else estimate_model_bytes(model, batch_size, eval_batch_size,
                                                               elements)
    env_host = os.environ.get(HOST_BUDGET_ENV)
    # Without $AUTOMTL_HOST_BUDGET nothing is checked on the host: a loaded dataset's in-memory
    # arrays already are in host memory, and streaming gathers from them (or from the page cache)
    # into small pinned buffers.
    plan = plan_memory(sizes, model_bytes, device_budget(dev, resident_bytes(dataset, dev)),
                       device=str(dev),
                       host_budget=parse_bytes(env_host, f"${HOST_BUDGET_ENV}") if env_host else None,
                       file_backed=backed,
                       staging_bytes=STAGING_BATCHES * rows * max(batch_size, eval_batch_size),
                       data_on=where)
    key = repr(sorted(plan.placement.items())) + plan.warning
    if _last_line.get(str(dev)) != key:  # a search logs again only when the placement changes
        _last_line[str(dev)] = key
        logging.getLogger("automtl.train").info(plan.line())
    return plan


def place_splits(dataset: object, plan: MemoryPlan) -> dict[str, object]:
    """The dataset's splits as the plan places them: `DeviceSplit` (resident) or
    `StreamedSplit` (host), from the per-process cache."""
    import torch

    from automtl.data.schema import Dataset
    from automtl.train.cache import device_split

    assert isinstance(dataset, Dataset)
    dev = torch.device(plan.device)
    return {s: device_split(dataset, s, dev, plan.placement[s]) for s in plan.placement}


__all__ = [
    "DATA_ON_ENV", "DATA_ON_VALUES", "DEVICE_BUDGET_ENV", "HOST_BUDGET_ENV", "DataOn",
    "MemoryPlan", "device_budget", "estimate_model_bytes", "file_backed", "gib", "host_budget",
    "parse_bytes", "place_splits", "plan_memory", "plan_run", "resolve_data_on", "row_bytes",
    "split_nbytes",
]
