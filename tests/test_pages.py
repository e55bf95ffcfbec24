"""Paging of memory-mapped splits during a pass (`automtl.data.pages`): the kernel hint each
pass gets, the bounded mapped size of a split that does not fit in memory, and batches that
stay the same rows in the same order (resident, streamed, in memory)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from automtl.config import DataConfig
from automtl.data import DeviceSplit, load_dataset
from automtl.data import pages
from automtl.data.batching import iter_batches
from automtl.data.columnar import load_columnar, save_dataset
from automtl.data.streaming import StreamedSplit

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/self/smaps")


@pytest.fixture(scope="module")
def ds():
    return load_dataset(DataConfig(name="synthetic", options={"rows": 6000, "seed": 3}))


@pytest.fixture(scope="module")
def folder(ds, tmp_path_factory) -> Path:
    return save_dataset(ds, tmp_path_factory.mktemp("pages") / "cols")


def _maps_of(path: Path) -> tuple[int, set[str]]:
    """(resident kB, VmFlags) over this process's mappings of `path` (/proc/self/smaps)."""
    rss, flags, inside = 0, set(), False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and ":" not in head[0] and len(head) >= 5:
            inside = len(head) > 5 and head[5] == str(path)
        elif inside and line.startswith("Rss:"):
            rss += int(head[1])
        elif inside and line.startswith("VmFlags:"):
            flags |= set(head[1:])
    return rss, flags


def _rows(batches) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    return [torch.cat([b.sparse, *b.sequences.values(), b.labels.to(torch.int32)], 1)
            for b in batches]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_a_split_larger_than_the_host_budget_is_read_randomly_and_unmapped(
        ds, folder: Path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOMTL_HOST_BUDGET", "1K")  # the split "does not fit" in memory
    seq = folder / "train" / "seq0.bin"
    mapped = DeviceSplit.from_split(load_columnar(folder).splits["train"], "cpu")
    memory = DeviceSplit.from_split(ds.splits["train"], "cpu")
    seen: list[tuple[int, set[str]]] = []
    got = []
    for batch in iter_batches(mapped, 500, shuffle=True, generator=torch.Generator().manual_seed(5)):
        seen.append(_maps_of(seq))
        got.append(batch)
    assert all("rr" in flags for _, flags in seen)  # MADV_RANDOM: no read-around per fault
    assert _maps_of(seq)[0] == 0  # dropped at the end of the pass (and every RELEASE_EVERY)
    want = iter_batches(memory, 500, shuffle=True, generator=torch.Generator().manual_seed(5))
    assert _same(_rows(got), _rows(want))  # same rows, same order, same values


def test_a_split_that_fits_keeps_the_default_paging_and_stays_mapped(folder: Path,
                                                                     monkeypatch) -> None:
    monkeypatch.setenv("AUTOMTL_HOST_BUDGET", "64G")
    seq = folder / "train" / "seq0.bin"
    mapped = DeviceSplit.from_split(load_columnar(folder).splits["train"], "cpu")
    for _ in iter_batches(mapped, 500, shuffle=True, generator=torch.Generator().manual_seed(5)):
        assert "rr" not in _maps_of(seq)[1]
    assert _maps_of(seq)[0] > 0  # served from memory next epoch: nothing re-faulted
    mapped.release_pages()


def test_an_in_order_pass_reads_ahead_and_drops_the_pages_behind(folder: Path,
                                                                  monkeypatch) -> None:
    seq = folder / "train" / "seq0.bin"  # 4,800 rows x 30 ids: 141 pages
    mapped = DeviceSplit.from_split(load_columnar(folder).splits["train"], "cpu")
    monkeypatch.setattr(pages, "RELEASE_BYTES", 1 << 40)  # small pass: pages stay mapped
    for b in iter_batches(mapped, 100):  # slices are views: read them to touch the pages
        assert int(b.sequences[next(iter(b.sequences))].sum()) >= 0
        assert "sr" in _maps_of(seq)[1]  # MADV_SEQUENTIAL
    assert _maps_of(seq)[0] > 0
    mapped.release_pages()
    monkeypatch.setattr(pages, "RELEASE_BYTES", 0)  # "large" pass: pages behind are dropped
    monkeypatch.setattr(pages, "RELEASE_EVERY", 1)
    before_touch = []
    for b in iter_batches(mapped, 100):
        before_touch.append(_maps_of(seq)[0])  # a slice is a view: not faulted in yet
        assert int(b.sequences[next(iter(b.sequences))].sum()) >= 0
        assert _maps_of(seq)[0] > 0
    # (the kernel may map a whole large folio per fault, so only "dropped" is portable)
    assert len(before_touch) > 2 and before_touch[1:] == [0] * (len(before_touch) - 1)
    assert _maps_of(seq)[0] == 0


def test_streamed_split_pages_the_same_way_and_yields_the_same_rows(ds, folder: Path,
                                                                    monkeypatch) -> None:
    monkeypatch.setenv("AUTOMTL_HOST_BUDGET", "1K")
    seq = folder / "train" / "seq0.bin"
    streamed = StreamedSplit.from_split(load_columnar(folder).splits["train"], "cpu")
    memory = DeviceSplit.from_split(ds.splits["train"], "cpu")
    flags: set[str] = set()
    got = []
    for batch in streamed.batches(500, shuffle=True, generator=torch.Generator().manual_seed(9)):
        flags |= _maps_of(seq)[1]
        got.append(batch)
    streamed.close()
    assert "rr" in flags and _maps_of(seq)[0] == 0
    want = iter_batches(memory, 500, shuffle=True, generator=torch.Generator().manual_seed(9))
    assert _same(_rows(got), _rows(want))
