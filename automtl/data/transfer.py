"""Chunked copy of a split's columns to a device, with host memory bounded by a chunk.

Copying a column whole (`torch.from_numpy(column).to("cuda")`) reads it through one host
mapping: for a memory-mapped cache every page of the column is faulted into the process
(a 38M-row Ali-CCP train split is 15.5 GiB, its largest column ~3 GiB) before the copy
returns, and a column whose dtype must change (int64 ids -> int32) is first converted whole in
anonymous memory. `copy_column` instead walks the column `chunk_rows` rows at a time:

- on CUDA (`stage=True`) each chunk is converted into one of two pinned staging buffers and
  copied with `non_blocking=True`; the next chunk fills the other buffer while that copy runs,
  and a buffer is refilled only after its copy's event completed. Host memory: two buffers
  (`CHUNK_BYTES` each by default), whatever the column's size;
- on CPU the destination tensor is itself host memory, so each chunk is converted straight into
  it (a plain copy, no staging);
- after each chunk the source's pages are unmapped again when it is a read-only file mapping
  (`MADV_DONTNEED`: the page cache keeps what it can), so the mapped part of the source stays
  about one chunk instead of growing to the column.

Values are copied element for element (the same `astype` conversion as a whole-column copy),
so the device tensor, and every batch drawn from it, is identical to a whole-column copy's.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from automtl.data.pages import advise

CHUNK_BYTES = 64 << 20  # host bytes per staging buffer (two on CUDA) and per CPU chunk


@dataclass
class CopyStats:
    """What chunked copies held on the host (tests and benchmarks read it).

    `max_rows_staged`: most rows held in host staging buffers at once whose copy had not yet
    finished (the bound on host memory beyond the source; 0 for CPU plain copies);
    `max_rows_chunk`: the largest chunk read from a source at once; `probe` is called after
    every chunk (e.g. to read the process's mapped pages)."""

    chunks: int = 0
    max_rows_staged: int = 0
    max_rows_chunk: int = 0
    staging_bytes: int = 0
    probe: Callable[[], None] | None = None


def root_memmap(arr: np.ndarray) -> np.memmap | None:
    """The memory map `arr` views (the memmap whose base is the `mmap` itself), or None."""
    base: object = arr
    while isinstance(base, np.ndarray) and not (isinstance(base, np.memmap)
                                                and isinstance(base.base, mmap.mmap)):
        base = base.base
    return base if isinstance(base, np.memmap) else None


def _releaser(src: np.ndarray) -> Callable[[], None]:
    """Unmaps the process's pages of `src`'s file mapping when it is read-only (dropping pages
    of a writable or copy-on-write map would lose writes; in-memory arrays are left alone)."""
    root = root_memmap(src)
    if root is None or root.mode != "r" or not hasattr(mmap, "MADV_DONTNEED"):
        return lambda: None
    m = root.base
    assert isinstance(m, mmap.mmap)
    return lambda: advise(m, "MADV_DONTNEED")


def default_chunk_rows(src: np.ndarray, dtype: torch.dtype, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Rows of `src` that fill `chunk_bytes` once converted to `dtype` (at least 1)."""
    row = int(np.prod(src.shape[1:], dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
    return max(1, chunk_bytes // max(row, 1))


def copy_column(src: np.ndarray, dtype: torch.dtype, device: torch.device | str, *,
                chunk_rows: int | None = None, stage: bool | None = None,
                stats: CopyStats | None = None) -> torch.Tensor:
    """`src` (rows on axis 0) as a new `dtype` tensor on `device`, copied `chunk_rows` rows at
    a time (see module). `stage` defaults to True on CUDA (pinned buffers) and False elsewhere;
    True on CPU runs the same staged loop through unpinned buffers (tests)."""
    dev = torch.device(device)
    stage = dev.type == "cuda" if stage is None else stage
    n = int(src.shape[0])
    out = torch.empty(tuple(src.shape), dtype=dtype, device=dev)
    if n == 0 or out.numel() == 0:
        return out
    rows = max(1, int(chunk_rows or default_chunk_rows(src, dtype)))
    rows = min(rows, n)
    release = _releaser(src)
    stats = stats if stats is not None else CopyStats()
    if not stage:
        dst = out.numpy()
        for s in range(0, n, rows):
            e = min(s + rows, n)
            np.copyto(dst[s:e], src[s:e], casting="unsafe")  # astype's conversion, in place
            release()
            _count(stats, e - s, 0)
        return out
    return _staged(src, out, rows, release, stats)


def _staged(src: np.ndarray, out: torch.Tensor, rows: int, release: Callable[[], None],
            stats: CopyStats) -> torch.Tensor:
    cuda = out.device.type == "cuda"
    bufs = [torch.empty((rows, *src.shape[1:]), dtype=out.dtype, pin_memory=cuda)
            for _ in range(2)]
    stats.staging_bytes = max(stats.staging_bytes, sum(b.numel() * b.element_size() for b in bufs))
    held = [0, 0]  # rows in each buffer whose copy may still be running
    events: list[torch.cuda.Event | None] = [None, None]
    stream = torch.cuda.current_stream(out.device) if cuda else None
    n = int(src.shape[0])
    for i, s in enumerate(range(0, n, rows)):
        b, e = i % 2, min(s + rows, n)
        ev = events[b]
        if ev is not None:
            ev.synchronize()  # the buffer's previous copy is done: it may be overwritten
        held[b] = 0
        view = bufs[b][: e - s]
        np.copyto(view.numpy(), src[s:e], casting="unsafe")
        release()
        held[b] = e - s
        _count(stats, e - s, sum(held))
        out[s:e].copy_(view, non_blocking=cuda)
        if cuda:
            assert stream is not None
            event = torch.cuda.Event()
            event.record(stream)
            events[b] = event
        else:
            held[b] = 0  # a CPU copy_ has finished when it returns
    if stream is not None:
        stream.synchronize()  # the buffers may be reused or freed; the tensor is complete
    return out


def _count(stats: CopyStats, chunk: int, staged: int) -> None:
    stats.chunks += 1
    stats.max_rows_chunk = max(stats.max_rows_chunk, chunk)
    stats.max_rows_staged = max(stats.max_rows_staged, staged)
    if stats.probe is not None:
        stats.probe()


__all__ = ["CHUNK_BYTES", "CopyStats", "copy_column", "default_chunk_rows", "root_memmap"]
