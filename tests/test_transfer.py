"""Chunked host->device copy of split columns (`automtl.data.transfer`, `DeviceSplit.from_split`):
the same values and batches as a whole-column copy, host memory bounded by a chunk (rows staged
at once, the source's mapped pages dropped after every chunk)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from automtl.config import DataConfig
from automtl.data import DeviceSplit, load_dataset
from automtl.data.batching import iter_batches
from automtl.data.columnar import load_columnar, save_dataset
from automtl.data.transfer import CopyStats, copy_column, default_chunk_rows
from smaps import resident_kb


@pytest.fixture(scope="module")
def ds():
    return load_dataset(DataConfig(name="synthetic", options={"rows": 5000, "seed": 4}))


def _whole(a: np.ndarray, dtype: np.dtype) -> torch.Tensor:
    """Today's whole-column copy (the reference)."""
    return torch.from_numpy(np.array(a.astype(dtype)))


def test_staged_copy_in_chunks_smaller_than_the_column_gives_the_same_tensor(ds) -> None:
    src = ds.splits["train"].sequences[next(iter(ds.splits["train"].sequences))]
    wide = src.astype(np.int64)  # a conversion on the way, as for an int64 id column
    stats = CopyStats()
    out = copy_column(wide, torch.int32, "cpu", chunk_rows=7, stage=True, stats=stats)
    assert out.dtype == torch.int32 and torch.equal(out, _whole(wide, np.int32))
    assert stats.chunks == -(-len(src) // 7) and stats.chunks > 100
    assert stats.max_rows_chunk == 7 and stats.max_rows_staged == 7  # never the whole column
    assert stats.staging_bytes == 2 * 7 * src.shape[1] * 4  # two buffers of one chunk each
    plain = CopyStats()
    again = copy_column(wide, torch.int32, "cpu", chunk_rows=7, stats=plain)  # CPU: no staging
    assert torch.equal(again, out) and plain.max_rows_staged == 0 and plain.staging_bytes == 0
    # a chunk larger than the column is one chunk; an empty column is an empty tensor
    one = CopyStats()
    assert torch.equal(copy_column(wide, torch.int32, "cpu", chunk_rows=10**9, stage=True,
                                   stats=one), out) and one.chunks == 1
    assert copy_column(wide[:0], torch.int32, "cpu", stage=True).shape == (0, src.shape[1])


def test_the_default_chunk_is_bounded_in_bytes_not_rows() -> None:
    col = np.zeros((10, 20), dtype=np.int64)
    assert default_chunk_rows(col, torch.int32, chunk_bytes=800) == 10  # 80 bytes a row
    assert default_chunk_rows(col, torch.int32, chunk_bytes=10) == 1
    assert default_chunk_rows(np.zeros((3, 0)), torch.float32) >= 1  # zero-width rows


def test_device_split_of_converted_columns_is_row_for_row_the_whole_copy(ds) -> None:
    split = ds.splits["train"]
    wide = replace(split, sparse=split.sparse.astype(np.int64), dense=split.dense.astype(np.float64),
                   sequences={k: v.astype(np.int64) for k, v in split.sequences.items()})
    stats = CopyStats()
    chunked = DeviceSplit.from_split(wide, "cpu", chunk_rows=333, stats=stats)
    assert stats.max_rows_chunk == 333 and stats.chunks == (2 + len(split.sequences)) * -(-len(split) // 333)
    assert torch.equal(chunked.sparse, _whole(wide.sparse, np.int32))
    assert torch.equal(chunked.dense, _whole(wide.dense, np.float32))
    for k, v in wide.sequences.items():
        assert torch.equal(chunked.sequences[k], _whole(v, np.int32))
    assert chunked.labels.data_ptr() == split.labels.__array_interface__["data"][0]  # shared
    memory = DeviceSplit.from_split(split, "cpu")
    for shuffle in (True, False):
        got = iter_batches(chunked, 512, shuffle, torch.Generator().manual_seed(3))
        want = iter_batches(memory, 512, shuffle, torch.Generator().manual_seed(3))
        pairs = list(zip(got, want, strict=True))
        assert len(pairs) == -(-len(split) // 512)
        for a, b in pairs:
            assert torch.equal(a.sparse, b.sparse) and torch.equal(a.dense, b.dense)
            assert torch.equal(a.labels, b.labels)
            assert all(torch.equal(a.sequences[k], b.sequences[k]) for k in a.sequences)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_a_memory_mapped_column_is_unmapped_after_every_chunk(ds, tmp_path: Path) -> None:
    folder = save_dataset(ds, tmp_path / "cols")
    split = load_columnar(folder).splits["train"]
    name = next(iter(split.sequences))
    seq_file = folder / "train" / "seq0.bin"
    src = split.sequences[name]
    seen: list[int] = []
    stats = CopyStats(probe=lambda: seen.append(resident_kb(seq_file)))
    out = copy_column(src, torch.int32, "cpu", chunk_rows=250, stage=True, stats=stats)
    assert torch.equal(out, torch.from_numpy(np.asarray(ds.splits["train"].sequences[name])))
    assert len(seen) == stats.chunks > 10 and max(seen) == 0  # nothing stays mapped
    # the contrast: a whole-column read leaves the whole column mapped in the process
    whole = torch.from_numpy(np.array(src))
    assert torch.equal(whole, out) and resident_kb(seq_file) >= src.nbytes // 1024 - 4
