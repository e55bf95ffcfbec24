"""Paging of memory-mapped split columns during a pass: kernel hints and a bounded mapped size.

A split loaded from a cache (`load_columnar`) is read through file mappings, so every batch
gather page-faults its rows in. Measured on a 38M-row train split (85M-row Ali-CCP-like cache,
benchmarks/step_profile.py, RESULTS.md issue 14): with the kernel's default read-around each
fault on a page not in the page cache reads a whole read-ahead window around it (8 MiB on the
benchmark machine) although a shuffled batch needs one row of it, 4.5 CPU-s and 17 s per
2,048-row batch; with `MADV_RANDOM` it reads just the page, 24x less CPU. So at the start of
each pass over a file-backed split:

- a shuffled pass over columns larger than half of the host's available memory
  (`available_bytes`: `$AUTOMTL_HOST_BUDGET` or MemAvailable; beyond it they cannot
  stay in the page cache, so nearly every row is a read from disk) advises `MADV_RANDOM` and
  drops the process's mapped pages every `RELEASE_EVERY` batches and at the end of the pass
  (`MADV_DONTNEED`; the page cache keeps what it can and the next access maps it again), so the
  resident set stays bounded by what a few batches touch instead of growing towards the size of
  the split;
- a smaller split keeps the default read-around, which fills the page cache in large reads,
  and stays mapped: every later batch is then served from memory, and unmapping it would cost
  a re-fault per page (measured: 67 CPU-ms per batch on a 3.6 GiB split that fits);
- an in-order pass (evaluation) advises `MADV_SEQUENTIAL` (large read-ahead) and, for columns
  beyond `RELEASE_BYTES`, drops the pages behind it every `RELEASE_EVERY` batches (a sequential
  pass never returns to them).

A shuffled pass that releases its pages (a split that does not fit) also reads ahead when it is
given its columns (`automtl.data.readahead`, `READ_AHEAD`): while batch i trains, a background
thread hints every page of batch i+1's rows to the kernel, so those reads are in flight together
instead of one synchronous 4 KiB read per row and column during the gather.

Only the kernel's paging changes: batches hold the same rows in the same order. A no-op for
in-memory splits and where `madvise` is not available.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

import numpy as np

from automtl.data.readahead import Column, Readahead

RELEASE_BYTES = 1 << 30  # an in-order pass over more than this unmaps the pages behind it
RELEASE_EVERY = 2  # batches between two unmaps (a page touched again after one re-faults)
READ_AHEAD = True  # hint the next batch's pages on a shuffled pass that releases (benchmarks: off)


def advise(m: mmap.mmap, name: str) -> None:
    """`m.madvise(mmap.<name>)`, a no-op where the hint or `madvise` is missing or `m` is closed."""
    flag = getattr(mmap, name, None)
    if flag is None or not hasattr(m, "madvise"):
        return
    try:
        m.madvise(flag)
    except (OSError, ValueError):  # a closed map or a kernel without the hint: paging as before
        pass


def available_bytes() -> int | None:
    """Host memory a run may fill: `$AUTOMTL_HOST_BUDGET` when set, else MemAvailable (Linux),
    else None (unknown: keep the default paging)."""
    from automtl.train.memory import host_budget  # the plan's reading of the same budget

    return host_budget()


class PassPager:
    """The paging of one pass over the columns mapped in `maps` (see module): construct it at
    the start of the pass, call `batch_done` after each batch's gather and `end` after the last.
    `columns`: where the mapped columns' rows live, for `ahead` (reads in flight)."""

    def __init__(self, maps: Sequence[mmap.mmap], shuffle: bool,
                 columns: Sequence[Column] = ()) -> None:
        self.maps = list(maps)
        self.count = 0
        self.readahead: Readahead | None = None
        size = sum(len(m) for m in self.maps if not m.closed)
        if not self.maps:
            self.release = False
            return
        if shuffle:
            avail = available_bytes()
            self.release = avail is not None and size > avail // 2
            hint = "MADV_RANDOM" if self.release else "MADV_NORMAL"
        else:
            self.release = size > RELEASE_BYTES
            hint = "MADV_SEQUENTIAL"
        for m in self.maps:
            advise(m, hint)
        if shuffle and self.release and READ_AHEAD and columns:
            ra = Readahead(list(columns))
            if ra.usable:
                self.readahead = ra
            else:
                ra.close()

    @property
    def reads_ahead(self) -> bool:
        """Whether `ahead` hints anything in this pass (a shuffled pass that releases)."""
        return self.readahead is not None

    def ahead(self, rows: np.ndarray) -> None:
        """Start reading the pages of `rows` (a coming batch) in the background; a no-op unless
        `reads_ahead`. Call it for each batch, in order, before that batch's gather."""
        if self.readahead is not None:
            self.readahead.ahead(rows)

    def batch_done(self) -> None:
        self.count += 1
        if self.release and self.count % RELEASE_EVERY == 0:
            self._drop()

    def end(self) -> None:
        if self.readahead is not None:
            self.readahead.close()
        if self.release:
            self._drop()

    def _drop(self) -> None:
        for m in self.maps:
            advise(m, "MADV_DONTNEED")


__all__ = ["PassPager", "advise", "RELEASE_BYTES", "RELEASE_EVERY", "READ_AHEAD",
           "available_bytes"]
