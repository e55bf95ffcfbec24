"""Streamed batching: a split stays in host memory, each batch is gathered on the host and copied
to the device while the previous batch trains.

The host columns are CPU tensors over the split's NumPy arrays (a memory-mapped cache is read
through the page cache, nothing is copied up front). For a batch, one background thread gathers
the rows with `index_select` (which releases the GIL) into fresh buffers, pinned when the device
is CUDA, and issues their copy with `non_blocking=True` on a side CUDA stream, recording an
event; the training thread makes its stream wait for that event before using the batch (and
tells the caching allocator the batch is used there, `record_stream`). One batch ahead is
prepared, so the copy of batch i+1 overlaps the step of batch i. On CPU the "copy" is the gather
itself, still done one batch ahead. The rows of every batch are exactly those of a resident
`DeviceSplit` drawn with the same generator: the permutation is the same CPU `randperm`.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from automtl.data.batching import Batch, DeviceSplit
from automtl.data.pages import PassPager
from automtl.data.schema import Split


@dataclass
class _Ready:
    batch: Batch
    event: object | None  # torch.cuda.Event on CUDA


class StreamedSplit:
    """A split kept on the host and streamed to `device` one batch at a time (see module)."""

    def __init__(self, host: DeviceSplit, device: torch.device | str) -> None:
        self.host = host  # CPU tensors
        self.device = torch.device(device)
        self.labels = host.labels  # host labels: metrics read them on the host anyway
        self._cuda = self.device.type == "cuda"
        self._stream = torch.cuda.Stream(self.device) if self._cuda else None
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_split(cls, split: Split, device: torch.device | str) -> "StreamedSplit":
        """Wrap the split's arrays (no copy of a memory-mapped cache) for streaming to `device`."""
        return cls(DeviceSplit.from_split(split, "cpu"), device)

    @property
    def maps(self) -> list[mmap.mmap]:
        return self.host.maps

    def __len__(self) -> int:
        return len(self.host)

    def release_pages(self) -> None:
        """As `DeviceSplit.release_pages` for the host columns."""
        self.host.release_pages()

    def _gather(self, idx: torch.Tensor | slice) -> _Ready:
        h = self.host
        pin = self._cuda

        def g(col: torch.Tensor) -> torch.Tensor:
            if isinstance(idx, slice):
                src = col[idx]
                if not pin:
                    return src
                out = torch.empty(src.shape, dtype=src.dtype, pin_memory=True)
                return out.copy_(src)
            out = torch.empty((idx.numel(), *col.shape[1:]), dtype=col.dtype, pin_memory=pin)
            return torch.index_select(col, 0, idx, out=out)

        cpu = Batch(sparse=g(h.sparse), dense=g(h.dense),
                    sequences={k: g(v) for k, v in h.sequences.items()}, labels=g(h.labels))
        if not self._cuda:
            return _Ready(cpu, None)
        assert self._stream is not None
        with torch.cuda.stream(self._stream):
            dev = Batch(sparse=cpu.sparse.to(self.device, non_blocking=True),
                        dense=cpu.dense.to(self.device, non_blocking=True),
                        sequences={k: v.to(self.device, non_blocking=True)
                                   for k, v in cpu.sequences.items()},
                        labels=cpu.labels.to(self.device, non_blocking=True))
            event = torch.cuda.Event()
            event.record(self._stream)
        return _Ready(dev, event)

    def _use(self, ready: _Ready) -> Batch:
        if ready.event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(ready.event)  # type: ignore[arg-type]
            b = ready.batch
            for t in (b.sparse, b.dense, b.labels, *b.sequences.values()):
                t.record_stream(current)  # freed only after the compute stream used it
        return ready.batch

    def _stream_batches(self, keys: list[torch.Tensor | slice], shuffle: bool) -> Iterator[Batch]:
        if not keys:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="automtl-stream")
        # mapped columns: paging hints, bounded RSS, the next batch's pages read ahead
        pager = PassPager(self.host.maps, shuffle, self.host.paged)

        def ahead(i: int) -> None:
            key = keys[i] if i < len(keys) else None
            if isinstance(key, torch.Tensor):
                pager.ahead(key.numpy())

        def gather(i: int) -> _Ready:
            ahead(i + 1)  # read while batch i is gathered and batch i - 1 trains
            ready = self._gather(keys[i])
            pager.batch_done()  # in the one gathering thread: never during a gather
            return ready

        if pager.reads_ahead:
            ahead(0)
        pending: Future[_Ready] = self._pool.submit(gather, 0)
        try:
            for i in range(len(keys)):
                ready = pending.result()
                if i + 1 < len(keys):
                    pending = self._pool.submit(gather, i + 1)  # overlaps this step
                yield self._use(ready)
        finally:
            if not pending.cancel():
                pending.exception()  # a running gather finishes before the pager ends
            pager.end()

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None, drop_last: bool = False) -> Iterator[Batch]:
        """As `iter_batches` on a resident split (same rows for the same generator)."""
        n = len(self)
        keys: list[torch.Tensor | slice] = []
        if shuffle:
            perm = torch.randperm(n, generator=generator, device="cpu")
            keys = [perm[s:s + batch_size] for s in range(0, n, batch_size)]
        else:
            keys = [slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
        if drop_last and keys and _rows(keys[-1]) < batch_size:
            keys.pop()
        return self._stream_batches(keys, shuffle)

    def slice(self, start: int, stop: int) -> Batch:
        """Rows [start, stop) copied to the device (synchronously usable)."""
        return self._use(self._gather(slice(start, stop)))

    def take(self, idx: torch.Tensor) -> Batch:
        """Rows `idx` (host or device index tensor) copied to the device."""
        return self._use(self._gather(idx.to("cpu")))

    def close(self) -> None:
        """Stop the background thread (also done at garbage collection)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


def _rows(key: torch.Tensor | slice) -> int:
    return key.stop - key.start if isinstance(key, slice) else int(key.numel())


__all__ = ["StreamedSplit"]
