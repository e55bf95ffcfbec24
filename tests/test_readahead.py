"""Reads in flight for shuffled passes over a memory-mapped split that does not fit in memory
(`automtl.data.readahead`, used by `automtl.data.pages.PassPager`): the next batch's pages are
in the page cache before its gather, only those pages are read, and batches stay the same."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from automtl.config import DataConfig
from automtl.data import DeviceSplit, load_dataset
from automtl.data import pages
from automtl.data.batching import iter_batches
from automtl.data.columnar import load_columnar, save_dataset
from automtl.data.readahead import PAGE, Column, page_ranges
from automtl.data.streaming import StreamedSplit

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore(2), madvise")
LIBC = ctypes.CDLL(None, use_errno=True)


@pytest.fixture(scope="module")
def ds():
    return load_dataset(DataConfig(name="synthetic", options={"rows": 6000, "seed": 4}))


@pytest.fixture(scope="module")
def folder(ds, tmp_path_factory) -> Path:
    return save_dataset(ds, tmp_path_factory.mktemp("readahead") / "cols")


def _evict(files: list[Path]) -> None:
    """Write back and drop `files` from the page cache (their pages then need a read)."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _in_cache(path: Path) -> np.ndarray:
    """Per page of `path`: 1 when it is in the page cache (mincore on a fresh, untouched map)."""
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        view = np.frombuffer(m, dtype=np.uint8)
        n = (len(m) + PAGE - 1) // PAGE
        vec = (ctypes.c_ubyte * n)()
        assert LIBC.mincore(ctypes.c_void_p(view.ctypes.data), ctypes.c_size_t(len(m)), vec) == 0
        del view
        return np.frombuffer(vec, dtype=np.uint8) & 1
    finally:
        m.close()


def _pages(rows: torch.Tensor, row_bytes: int) -> set[int]:
    out: set[int] = set()
    for r in rows.tolist():
        out.update(range(r * row_bytes // PAGE, ((r + 1) * row_bytes - 1) // PAGE + 1))
    return out


def test_page_ranges_cover_exactly_the_rows_pages_coalesced() -> None:
    rows = np.random.default_rng(0).choice(50_000, 700, replace=False)
    cols = [Column(1 << 30, 76), Column(3 << 30, 2 * PAGE + 8), Column(5 << 30, 8)]
    iov = page_ranges(cols, rows)
    got: set[int] = set()
    for addr, length in iov.tolist():
        assert addr % PAGE == 0 and length % PAGE == 0 and length > 0
        got.update(range(addr // PAGE, (addr + length) // PAGE))
    want: set[int] = set()
    for c in cols:
        want |= {c.address // PAGE + p for p in _pages(torch.as_tensor(rows), c.row_bytes)}
    assert got == want
    assert len(iov) < len(want)  # neighbouring pages were merged into one range
    ends = iov[:, 0] + iov[:, 1]
    assert np.all(iov[1:, 0] > ends[:-1])  # ascending, and no two ranges touch


@pytest.mark.parametrize("streamed", [False, True])
def test_the_next_batch_pages_are_read_before_its_gather(ds, folder: Path, monkeypatch,
                                                        streamed: bool) -> None:
    monkeypatch.setenv("AUTOMTL_HOST_BUDGET", "1K")  # the split "does not fit": shuffled + unmapped
    split = load_columnar(folder).splits["train"]
    seq = folder / "train" / "seq0.bin"  # 4,800 rows x 30 ids: 34 rows a page, 141 pages
    row_bytes = split.sequences[next(iter(split.sequences))].strides[0]
    host = DeviceSplit.from_split(split, "cpu")
    data = StreamedSplit(host, "cpu") if streamed else host
    _evict(sorted((folder / "train").glob("*.bin")))
    assert _in_cache(seq).sum() == 0  # the check below can tell a read page from an unread one
    perm = torch.randperm(len(host), generator=torch.Generator().manual_seed(5))
    batch = 8
    rows = [perm[i * batch:(i + 1) * batch] for i in range(10)]
    it = iter(iter_batches(data, batch, shuffle=True, generator=torch.Generator().manual_seed(5)))
    touched: set[int] = set()
    try:
        for i in range(3):
            b = next(it)
            assert torch.equal(b.labels, torch.from_numpy(np.array(split.labels))[rows[i]])
            touched |= _pages(rows[i], row_bytes)
            ahead = _pages(rows[i + 1], row_bytes) - touched  # read only because it was hinted
            deadline = time.monotonic() + 10
            while not _in_cache(seq)[sorted(ahead)].all() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _in_cache(seq)[sorted(ahead)].all(), f"batch {i + 1}'s pages were not read ahead"
            # pages only later batches use were not read (the hint is the rows' pages, no more)
            later = (_pages(rows[i + 5], row_bytes) - touched - ahead
                     - _pages(rows[i + 2], row_bytes))
            assert later and _in_cache(seq)[sorted(later)].sum() == 0
    finally:
        it.close()  # the pass ends: its pages are unmapped (the next test can evict them)
        if streamed:
            data.close()


def test_reading_ahead_gives_the_same_batches(ds, folder: Path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOMTL_HOST_BUDGET", "1K")
    memory = DeviceSplit.from_split(ds.splits["train"], "cpu")

    def rows(data, on: bool):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(pages, "READ_AHEAD", on)
        out = [torch.cat([b.sparse, b.dense.view(torch.int32), *b.sequences.values(),
                          b.labels.view(torch.int32)], 1)
               for b in iter_batches(data, 300, shuffle=True,
                                     generator=torch.Generator().manual_seed(11))]
        return torch.cat(out)

    mapped = DeviceSplit.from_split(load_columnar(folder).splits["train"], "cpu")
    want = rows(memory, False)
    assert torch.equal(rows(mapped, True), want)
    assert torch.equal(rows(mapped, False), want)
    streamed = StreamedSplit(mapped, "cpu")
    assert torch.equal(rows(streamed, True), want)
    streamed.close()
