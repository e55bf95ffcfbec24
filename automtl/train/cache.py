"""Per-process cache of device-resident splits, so trials of one search copy data to a device
once (keyed by dataset object, split name and device)."""

from __future__ import annotations

import weakref

import torch

from automtl.data.batching import DeviceSplit
from automtl.data.schema import Dataset
from automtl.errors import DataError

_MAX_ENTRIES = 6  # train/val/test of two datasets or devices
_CACHE: dict[tuple[int, str, str], tuple[weakref.ref, DeviceSplit]] = {}


def device_split(dataset: Dataset, split: str, device: torch.device) -> DeviceSplit:
    """`dataset.splits[split]` as a `DeviceSplit` on `device`, built once and then reused."""
    if split not in dataset.splits:
        raise DataError(f"{dataset.name}: no {split!r} split; the dataset has "
                        f"{', '.join(dataset.splits) or 'none'}")
    if len(dataset.splits[split]) == 0:
        raise DataError(f"{dataset.name}: the {split!r} split is empty; use more rows")
    key = (id(dataset), split, str(device))
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is dataset:
        _CACHE[key] = _CACHE.pop(key)  # most recently used goes last
        return hit[1]
    for stale in [k for k, (ref, _) in _CACHE.items() if ref() is None]:
        del _CACHE[stale]
    while len(_CACHE) >= _MAX_ENTRIES:
        del _CACHE[next(iter(_CACHE))]
    data = DeviceSplit.from_split(dataset.splits[split], device)
    _CACHE[key] = (weakref.ref(dataset), data)
    return data


def clear_device_cache() -> None:
    """Drop every cached device split (frees device memory)."""
    _CACHE.clear()
