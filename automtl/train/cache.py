"""Per-process cache of the splits a run trains on, so trials of one search copy data to a
device once (keyed by dataset object, split name, device and placement: resident or streamed).
Thread-safe: trials running in threads of one process share the cached copies."""

from __future__ import annotations

import threading
import weakref
from typing import Literal

import torch

from automtl.data.batching import DeviceSplit
from automtl.data.schema import Dataset
from automtl.data.streaming import StreamedSplit
from automtl.errors import DataError

_MAX_ENTRIES = 6  # train/val/test of two datasets or devices
_CACHE: dict[tuple[int, str, str, str], tuple[weakref.ref, DeviceSplit | StreamedSplit]] = {}
_LOCK = threading.RLock()

Where = Literal["device", "host"]


def _key(device: torch.device | str) -> str:
    """Canonical device name: "cuda" and "cuda:0" (current device 0) are one cache entry."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(dev)


def device_split(dataset: Dataset, split: str, device: torch.device,
                 where: Where = "device") -> DeviceSplit | StreamedSplit:
    """`dataset.splits[split]` on `device`: resident (a `DeviceSplit`, "device") or kept on the
    host and streamed (a `StreamedSplit`, "host"); built once and then reused. Making a split
    resident drops its streamed entry and vice versa, so a split is on the device at most once."""
    if split not in dataset.splits:
        raise DataError(f"{dataset.name}: no {split!r} split; the dataset has "
                        f"{', '.join(dataset.splits) or 'none'}")
    if len(dataset.splits[split]) == 0:
        raise DataError(f"{dataset.name}: the {split!r} split is empty; use more rows")
    key = (id(dataset), split, _key(device), where)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0]() is dataset:
            _CACHE[key] = _CACHE.pop(key)  # most recently used goes last
            return hit[1]
        other = (id(dataset), split, _key(device), "host" if where == "device" else "device")
        _CACHE.pop(other, None)
        for stale in [k for k, (ref, _) in _CACHE.items() if ref() is None]:
            del _CACHE[stale]
        while len(_CACHE) >= _MAX_ENTRIES:
            del _CACHE[next(iter(_CACHE))]
        src = dataset.splits[split]
        data: DeviceSplit | StreamedSplit = (StreamedSplit.from_split(src, device)
                                             if where == "host" else
                                             DeviceSplit.from_split(src, device))
        _CACHE[key] = (weakref.ref(dataset), data)
        return data


def cached_split(dataset: Dataset, split: str,
                 device: torch.device) -> DeviceSplit | StreamedSplit | None:
    """The copy of a split a run on `device` already made (resident or streamed), or None: lets
    a callback evaluate on the split `fit` placed without placing it a second time."""
    with _LOCK:
        for where in ("device", "host"):
            hit = _CACHE.get((id(dataset), split, _key(device), where))
            if hit is not None and hit[0]() is dataset:
                return hit[1]
    return None


def install_split(dataset: Dataset, split: str, data: DeviceSplit) -> None:
    """Put an already resident split (e.g. one received from another process) in the cache, so
    that `device_split` returns it instead of copying the data again."""
    with _LOCK:
        _CACHE[(id(dataset), split, _key(data.device), "device")] = (weakref.ref(dataset), data)


def resident_bytes(dataset: Dataset, device: torch.device) -> int:
    """Bytes of `dataset`'s splits this process holds resident on `device` (a new plan may
    reuse or drop them, so they count as available)."""
    total = 0
    with _LOCK:
        for (ds, _s, dev, where), (ref, data) in _CACHE.items():
            if ds == id(dataset) and ref() is dataset and dev == _key(device) and where == "device":
                assert isinstance(data, DeviceSplit)
                cols = [data.sparse, data.dense, data.labels, *data.sequences.values()]
                total += sum(t.numel() * t.element_size() for t in cols)
    return total


def clear_device_cache() -> None:
    """Drop every cached device split (frees device memory)."""
    with _LOCK:
        _CACHE.clear()
