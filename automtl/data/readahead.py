"""Reads in flight for shuffled gathers over memory-mapped columns that do not fit in memory.

A shuffled batch of a split larger than the page cache touches ~14k pages not in memory (2,048
rows x 7 column files of the 38M-row Ali-CCP train split); gathering it faults them in one at a
time, each a synchronous 4 KiB read (~190 CPU-ms and ~1 s of wall per step measured at 85M rows,
RESULTS.md issue 14). `Readahead.ahead(rows)` instead tells the kernel, from a background
thread, every page the rows of the NEXT batch occupy (`MADV_WILLNEED` on the page ranges, sorted
and coalesced): the kernel starts all those reads at once without waiting for them, so they are
in flight together while the current batch trains, and the gather then finds its pages in the
page cache (a minor fault instead of a read).

The hint is one `process_madvise(2)` call per 1,024 ranges on this process (Linux >= 5.10 on
x86-64/arm64; a handful of system calls per batch, the GIL released during each); where it is
refused, one `madvise(2)` per range. Where neither exists, nothing is hinted. Only the kernel's
paging changes: the gather reads the same bytes, so batches are identical with or without it.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

PAGE = mmap.PAGESIZE
MAX_IOV = 1024  # UIO_MAXIOV: ranges per process_madvise call
GAP_PAGES = 0  # two needed pages this close (pages between them) are read as one range
_SYS_PROCESS_MADVISE = {"x86_64": 440, "aarch64": 440, "arm64": 440}  # asm-generic number


@dataclass(frozen=True)
class Column:
    """A column's place in this process's memory: the address of row 0 and bytes per row."""

    address: int
    row_bytes: int


@dataclass
class HintStats:
    """What was hinted (tests and benchmarks read it): batches, pages, ranges, system calls."""

    batches: int = 0
    pages: int = 0
    ranges: int = 0
    calls: int = 0
    last: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.uint64), repr=False)


def page_ranges(columns: list[Column], rows: np.ndarray, gap: int = GAP_PAGES) -> np.ndarray:
    """The pages `rows` of `columns` occupy as coalesced ranges: uint64 [n, 2] of (address,
    length in bytes), page-aligned, ascending within each column."""
    r = np.sort(np.asarray(rows, dtype=np.int64))
    out = []
    for c in columns:
        if c.row_bytes <= 0 or r.size == 0:
            continue
        start = c.address + r * c.row_bytes
        first, last = start // PAGE, (start + c.row_bytes - 1) // PAGE  # both non-decreasing
        new = np.empty(r.size, dtype=bool)
        new[0] = True
        new[1:] = first[1:] > last[:-1] + 1 + gap
        heads = np.flatnonzero(new)
        tails = np.append(heads[1:] - 1, r.size - 1)
        lo, hi = first[heads], last[tails]
        out.append(np.stack([lo * PAGE, (hi - lo + 1) * PAGE], axis=1))
    if not out:
        return np.empty((0, 2), dtype=np.uint64)
    return np.ascontiguousarray(np.concatenate(out), dtype=np.uint64)


class _Kernel:
    """`MADV_WILLNEED` over many ranges: process_madvise in batches of MAX_IOV, else madvise."""

    def __init__(self) -> None:
        self.libc = None
        self.pidfd = -1
        self.sysno = _SYS_PROCESS_MADVISE.get(platform.machine())
        flag = getattr(mmap, "MADV_WILLNEED", None)
        if not sys.platform.startswith("linux") or flag is None:
            return
        try:
            self.libc = ctypes.CDLL(None, use_errno=True)
            self.libc.syscall.restype = ctypes.c_long
        except OSError:
            self.libc = None
            return
        self.flag = flag
        if self.sysno is not None and hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(os.getpid())
            except OSError:
                self.pidfd = -1

    @property
    def usable(self) -> bool:
        return self.libc is not None

    def hint(self, iov: np.ndarray, stats: HintStats) -> None:
        if self.libc is None or len(iov) == 0:
            return
        for s in range(0, len(iov), MAX_IOV):
            part = iov[s:s + MAX_IOV]
            if self.pidfd >= 0:
                done = self.libc.syscall(ctypes.c_long(self.sysno), ctypes.c_int(self.pidfd),
                                         ctypes.c_void_p(part.ctypes.data),
                                         ctypes.c_size_t(len(part)), ctypes.c_int(self.flag),
                                         ctypes.c_uint(0))
                stats.calls += 1
                if done >= 0:
                    continue
                os.close(self.pidfd)  # refused here (old kernel, seccomp): madvise per range
                self.pidfd = -1
            for addr, length in part.tolist():
                self.libc.madvise(ctypes.c_void_p(addr), ctypes.c_size_t(length),
                                  ctypes.c_int(self.flag))
                stats.calls += 1

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class Readahead:
    """Hints the pages of a batch's rows from one background thread, one batch at a time."""

    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns
        self.stats = HintStats()
        self._kernel = _Kernel()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    @property
    def usable(self) -> bool:
        return bool(self.columns) and self._kernel.usable

    def ahead(self, rows: np.ndarray) -> None:
        """Start hinting `rows`' pages in the background, after the previous hint was issued
        (so at most one batch's hints are queued and none is skipped)."""
        if not self.usable:
            return
        self.wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="automtl-readahead")
        self._pending = self._pool.submit(self._hint, np.array(rows, dtype=np.int64))

    def _hint(self, rows: np.ndarray) -> None:
        iov = page_ranges(self.columns, rows)
        self._kernel.hint(iov, self.stats)
        self.stats.batches += 1
        self.stats.ranges += len(iov)
        self.stats.pages += int(iov[:, 1].sum()) // PAGE if len(iov) else 0
        self.stats.last = iov

    def wait(self) -> None:
        """Block until the last hint was issued (its reads may still be in flight)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            self._kernel.close()


__all__ = ["Column", "HintStats", "Readahead", "page_ranges", "GAP_PAGES", "MAX_IOV"]
