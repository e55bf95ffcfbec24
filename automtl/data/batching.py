"""Device-resident batching: columns live as tensors on the target device; each epoch draws a
permutation and slices batches by index. No per-sample Python, no DataLoader collation.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from automtl.data.pages import PassPager
from automtl.data.readahead import Column
from automtl.data.schema import Split
from automtl.data.transfer import CopyStats, copy_column, root_memmap

_NUMPY = {torch.int32: np.dtype(np.int32), torch.float32: np.dtype(np.float32)}

if TYPE_CHECKING:
    from automtl.data.streaming import StreamedSplit


def _copy_on_write(arr: np.ndarray) -> np.ndarray | None:
    """A writable array over `arr`'s memory without copying it when it views a memory-mapped file
    (the same file region mapped copy-on-write: pages are shared with the page cache and the
    read-only map, so a CPU DeviceSplit of a 40M-row cache costs no anonymous memory); None for
    any other array (it has to be copied)."""
    base = root_memmap(arr)
    if base is not None and base.filename and arr.flags.c_contiguous:
        start = arr.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        return np.memmap(base.filename, dtype=arr.dtype, mode="c", offset=base.offset + start,
                         shape=arr.shape)
    return None


@dataclass
class Batch:
    """One mini-batch (all tensors on the same device)."""

    sparse: torch.Tensor  # int32 [B, n_sparse]
    dense: torch.Tensor  # float32 [B, n_dense]
    sequences: dict[str, torch.Tensor]  # name -> int32 [B, max_len], 0 = padding
    labels: torch.Tensor  # float32 [B, n_tasks]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class DeviceSplit:
    """A split's columns as tensors on one device."""

    sparse: torch.Tensor
    dense: torch.Tensor
    sequences: dict[str, torch.Tensor]
    labels: torch.Tensor
    # file mappings the CPU tensors live in (a memory-mapped cache), for `release_pages`
    maps: list[mmap.mmap] = field(default_factory=list, repr=False, compare=False)
    # where the rows of the columns over those mappings live, for reading ahead (`PassPager`)
    paged: list[Column] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def from_split(cls, split: Split, device: torch.device | str = "cpu",
                   chunk_rows: int | None = None,
                   stats: CopyStats | None = None) -> "DeviceSplit":
        """The split's columns on `device` (sparse ids and sequences int32, dense and labels
        float32). On CPU a column already of that dtype shares the NumPy array's memory (a
        memory-mapped cache through a copy-on-write mapping of the same file: no copy); any
        other column, and every column on a GPU, is copied `chunk_rows` rows at a time
        (`automtl.data.transfer`: pinned staging buffers on CUDA, default ~64 MiB a chunk), so
        host memory stays bounded by a chunk, not by the column. The values are the same
        either way."""
        dev = torch.device(device)
        maps: list[mmap.mmap] = []
        paged: list[Column] = []

        def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            if dev.type == "cpu" and a.dtype == _NUMPY[dtype] and a.flags.c_contiguous:
                if a.flags.writeable:
                    return torch.from_numpy(a)
                cow = _copy_on_write(a)  # memory-mapped caches are read-only; torch wants writable
                if cow is not None:
                    col = torch.from_numpy(cow)
                    if isinstance(cow.base, mmap.mmap):
                        maps.append(cow.base)
                        paged.append(Column(col.data_ptr(), col.stride(0) * col.element_size()))
                    return col
            return copy_column(a, dtype, dev, chunk_rows=chunk_rows, stats=stats)

        return cls(
            sparse=t(split.sparse, torch.int32),
            dense=t(split.dense, torch.float32),
            sequences={k: t(v, torch.int32) for k, v in split.sequences.items()},
            labels=t(split.labels, torch.float32),
            maps=maps,
            paged=paged,
        )

    def __getstate__(self) -> dict[str, object]:
        """Pickled (sent to another process) without this process's file mappings: the tensors
        travel by torch's own reducers, and the receiver's are not over these mappings."""
        return {**self.__dict__, "maps": [], "paged": []}

    @property
    def file_backed(self) -> bool:
        """Whether every column is a copy-on-write mapping of a cache file (a CPU split of a
        memory-mapped cache): another process mapping the same files shares its pages."""
        return bool(self.paged) and len(self.paged) == 3 + len(self.sequences)

    def release_pages(self) -> None:
        """Unmap this process's pages of file-backed columns (a CPU split of a memory-mapped
        cache): the RSS they add falls back to zero while the page cache keeps the data, and the
        next access maps it again. A shuffled epoch touches every page of the split, so calling
        this after each pass bounds the RSS to one split at a time. No-op for in-memory data;
        writes to file-backed columns are discarded."""
        for m in self.maps:
            m.madvise(mmap.MADV_DONTNEED)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def device(self) -> torch.device:
        """The device the columns (and so every batch) live on."""
        return self.labels.device

    def take(self, idx: torch.Tensor) -> Batch:
        """Gather rows `idx` (a tensor on this split's device) into a Batch."""
        return Batch(
            sparse=self.sparse.index_select(0, idx),
            dense=self.dense.index_select(0, idx),
            sequences={k: v.index_select(0, idx) for k, v in self.sequences.items()},
            labels=self.labels.index_select(0, idx),
        )

    def slice(self, start: int, stop: int) -> Batch:
        """Rows [start, stop) as a Batch of views (no copy)."""
        return Batch(
            sparse=self.sparse[start:stop],
            dense=self.dense[start:stop],
            sequences={k: v[start:stop] for k, v in self.sequences.items()},
            labels=self.labels[start:stop],
        )


def iter_batches(
    data: DeviceSplit | "StreamedSplit",
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[Batch]:
    """Batches on the split's device: a fresh permutation per call when `shuffle`, else
    contiguous slices. A `StreamedSplit` yields the same rows, copied from the host."""
    if not isinstance(data, DeviceSplit):
        return data.batches(batch_size, shuffle, generator, drop_last)
    return _resident_batches(data, batch_size, shuffle, generator, drop_last)


def _resident_batches(data: DeviceSplit, batch_size: int, shuffle: bool,
                      generator: torch.Generator | None, drop_last: bool) -> Iterator[Batch]:
    n = len(data)
    # memory-mapped columns: paging hints, bounded RSS, the next batch's pages read ahead
    pager = PassPager(data.maps, shuffle, data.paged)
    try:
        if not shuffle:
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                if drop_last and stop - start < batch_size:
                    return
                yield data.slice(start, stop)
                pager.batch_done()
            return
        device = data.labels.device
        perm = torch.randperm(n, generator=generator, device="cpu")
        rows = perm.numpy() if pager.reads_ahead else None  # mapped columns are on the CPU
        perm = perm.to(device)
        if rows is not None:
            pager.ahead(rows[:batch_size])
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            if drop_last and idx.numel() < batch_size:
                return
            if rows is not None and start + batch_size < n:
                pager.ahead(rows[start + batch_size : start + 2 * batch_size])  # while i trains
            yield data.take(idx)
            pager.batch_done()
    finally:
        pager.end()
