"""The raw Ali-CCP field layout and its block parser (used by `ali_ccp_raw.prepare_ali_ccp`).

A block of raw CSV rows becomes NumPy arrays in two steps, so that the slow one can run in worker
threads: `tokenize` (pyarrow compute and NumPy, releases the GIL, no vocabularies) and
`Parser.assemble` (through the train vocabularies, in file order). `in_order` runs the first step
on a small thread pool ahead of the second; `csv_batches` streams a raw file in blocks and
`md5_keys` turns the md5 column into 64-bit join keys.
"""

from __future__ import annotations

import functools
import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from automtl.errors import DataError

SPARSE_FIELDS = ("101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206",
                 "207", "210", "216", "508", "509", "702", "853", "301")
SEQ_FIELDS = ("109_14", "110_14", "127_14", "150_14")
DENSE_FIELDS = ("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853")

N_SPARSE, N_SEQ, N_DENSE = len(SPARSE_FIELDS), len(SEQ_FIELDS), len(DENSE_FIELDS)

_T = TypeVar("_T")
_R = TypeVar("_R")


class _Vocab:
    """A growing map raw feature id (int64) -> compact id 1..V (sorted keys, vectorised)."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.vals = np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.keys)

    def map(self, x: np.ndarray, grow: bool) -> np.ndarray:
        """Compact ids of `x`; unseen ids get new ids when `grow`, else 0 (OOV)."""
        if len(x) == 0:
            return np.zeros(0, dtype=np.int32)
        pos = np.searchsorted(self.keys, x)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == x[found]
        if grow and not found.all():
            new = np.unique(x[~found])
            ins = np.searchsorted(self.keys, new)
            ids = np.arange(len(self.keys) + 1, len(self.keys) + 1 + len(new), dtype=np.int32)
            self.keys = np.insert(self.keys, ins, new)
            self.vals = np.insert(self.vals, ins, ids)
            pos = np.searchsorted(self.keys, x)
            found[:] = True
        out = np.zeros(len(x), dtype=np.int32)
        out[found] = self.vals[pos[found]]
        return out


_ENTRY = "^(?P<f>[^\\x02]*)\\x02(?P<i>[^\\x03]*)\\x03(?P<v>.*)$"
_DENSE_COL = np.full(N_SPARSE + N_SEQ, -1, dtype=np.int64)  # field index -> dense column (or -1)
for _j, _d in enumerate(DENSE_FIELDS):
    _DENSE_COL[[*SPARSE_FIELDS, *SEQ_FIELDS].index(_d[1:])] = _j


@functools.cache
def _field_set() -> pa.Array:
    # built at first use: pyarrow imports pandas (~30 MB per process) when it makes an array, and
    # every trial process imports this module through the data registry
    return pa.array([*SPARSE_FIELDS, *SEQ_FIELDS])


def _first_bad(arr: pa.Array, to: pa.DataType) -> int:
    """Index of the first element of `arr` that does not cast to `to`."""
    for i, v in enumerate(arr.to_pylist()):
        try:
            pc.cast(pa.array([v]), to)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return i
    return 0


def _hash_ids(ids: pa.Array) -> np.ndarray:
    """Stable 64-bit ids of text feature ids (blake2b of each distinct string)."""
    uniq, inverse = np.unique(ids.to_numpy(zero_copy_only=False).astype(str), return_inverse=True)
    codes = np.array([int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8).digest(),
                                     "little", signed=True) for u in uniq], dtype=np.int64)
    return codes[inverse]


@dataclass
class Tokens:
    """A block's feature entries, parsed without the vocabularies (so blocks can be parsed in
    parallel): per field, the rows, the distinct raw ids (with each entry's index into them)
    and the values of its entries, in row order."""

    n: int
    fields: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None]


def tokenize(flist: pa.Array, nums: pa.Array, lines: np.ndarray, path: Path) -> Tokens:
    """Parse a feature-list column (pyarrow compute and NumPy: releases the GIL)."""
    n = len(flist)
    try:
        expected = pc.cast(nums, pa.int64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        i = _first_bad(nums, pa.int64())
        raise DataError(f"{path}: line {lines[i]}: feature_num {nums[i].as_py()!r} is not a "
                        "number; the row is broken, fix or remove it") from None
    lists = pc.split_pattern(flist, "\x01")
    empty_row = (pc.binary_length(flist).to_numpy(zero_copy_only=False) == 0)
    counts = pc.list_value_length(lists).to_numpy(zero_copy_only=False) - empty_row
    bad = np.flatnonzero(counts != expected)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: line {lines[i]}: feature_num is {expected[i]} but "
                        f"feature_list has {counts[i]} entries separated by \\x01; the "
                        "separators are broken or the line is truncated, re-extract the "
                        "raw file")
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    entries = pc.list_flatten(lists)
    if empty_row.any():
        keep = ~empty_row[parent]
        parent, entries = parent[keep], entries.filter(pa.array(keep))
    parts = pc.extract_regex(entries, _ENTRY)
    if parts.null_count:
        k = int(np.flatnonzero(pc.is_null(parts).to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: line {lines[parent[k]]}: feature entry "
                        f"{entries[k].as_py()[:30]!r} is not field\\x02feature_id\\x03value; "
                        "the separators are broken, re-extract the raw file")
    fld = pc.index_in(parts.field(0), value_set=_field_set())
    known = pc.is_valid(fld).to_numpy(zero_copy_only=False)
    if not known.all():  # fields outside the 23 used by the common preprocessing
        sel = pa.array(known)
        parts, fld, parent = parts.filter(sel), fld.filter(sel), parent[known]
    fidx = fld.to_numpy(zero_copy_only=False).astype(np.int64)
    try:
        raw_ids = pc.cast(parts.field(1), pa.int64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:  # non-numeric feature ids (not in the release, but allowed)
        raw_ids = _hash_ids(parts.field(1))
    try:
        values = pc.cast(parts.field(2), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        k = _first_bad(parts.field(2), pa.float64())
        raise DataError(f"{path}: line {lines[parent[k]]}: feature value "
                        f"{parts.field(2)[k].as_py()[:20]!r} is not a number; fix the row"
                        ) from None
    bad = np.flatnonzero(~(np.abs(values) <= _FLOAT32_MAX))  # NaN, inf, beyond float32
    if bad.size:  # a dense value would be silently zeroed (NaN) or clipped to 3.4e38 (inf)
        k = int(bad[0])
        raise DataError(f"{path}: line {lines[parent[k]]}: feature value "
                        f"{parts.field(2)[k].as_py()[:20]!r} is not a finite float32 "
                        "(NaN, inf or beyond ±3.4e38); fix the row")
    # entries are ordered by row, then by position in the row
    order = np.argsort(fidx, kind="stable")
    bounds = np.searchsorted(fidx[order], np.arange(N_SPARSE + N_SEQ + 1))
    fields: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None] = []
    for j in range(N_SPARSE + N_SEQ):
        sel = order[bounds[j]: bounds[j + 1]]
        if sel.size == 0:
            fields.append(None)
            continue
        uniq, inverse = np.unique(raw_ids[sel], return_inverse=True)
        fields.append((parent[sel], uniq, inverse.reshape(-1), values[sel]))
    return Tokens(n, fields)


class Parser:
    """Parses feature-list columns with the train vocabularies (grown on train, frozen on test)."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.vocab = [_Vocab() for _ in range(N_SPARSE + N_SEQ)]
        self.grow = True

    def parse(self, flist: pa.Array, nums: pa.Array, lines: np.ndarray, path: Path
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sparse ids or -1 when absent [n, NS], dense or NaN [n, ND], sequences [n, NQ, L])."""
        return self.assemble(tokenize(flist, nums, lines, path))

    def assemble(self, tok: Tokens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A tokenized block through the vocabularies (in file order: ids are assigned in order
        of first appearance, so blocks must come in order)."""
        n = tok.n
        sparse = np.full((n, N_SPARSE), -1, dtype=np.int32)
        dense = np.full((n, N_DENSE), np.nan, dtype=np.float32)
        seq = np.zeros((n, N_SEQ, self.max_len), dtype=np.int32)
        for j, entry in enumerate(tok.fields):
            if entry is None:
                continue
            rows, uniq, inverse, values = entry
            # map each distinct id once; np.unique sorted them, and _Vocab.map hands new ids out
            # in sorted order of the new keys, as it did for the full entry list
            ids = self.vocab[j].map(uniq, self.grow)[inverse]
            if j < N_SPARSE:  # single-valued: the first entry of the row wins
                rows_u, first = np.unique(rows, return_index=True)
                sparse[rows_u, j] = ids[first]
                if _DENSE_COL[j] >= 0:
                    dense[rows_u, _DENSE_COL[j]] = values[first]
                continue
            q = j - N_SPARSE
            known_id = ids > 0  # unseen test ids are skipped (0 is padding in sequences)
            rows, ids, vals = rows[known_id], ids[known_id], values[known_id]
            if rows.size == 0:
                continue
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            lengths = np.diff(np.r_[starts, rows.size])
            pos = np.arange(rows.size) - np.repeat(starts, lengths)
            keep = pos < self.max_len
            rows, ids, vals, pos = rows[keep], ids[keep], vals[keep], pos[keep]
            seq[rows, q, pos] = ids
            total = np.bincount(rows, weights=vals, minlength=n)
            cnt = np.bincount(rows, minlength=n)
            has = cnt > 0
            dense[has, _DENSE_COL[j]] = total[has] / cnt[has]
        return sparse, dense, seq


def in_order(items: Iterator[_T], fn: Callable[[_T], _R], workers: int = 2,
              ahead: int = 3) -> Iterator[_R]:
    """`fn(item)` for each item, computed by `workers` threads at most `ahead` items ahead,
    yielded in order (memory: `ahead` blocks in flight; an error surfaces at its item)."""
    pending: deque[Future[_R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="automtl-prepare") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


def md5_keys(md5: pa.Array, lines: np.ndarray, path: Path) -> np.ndarray:
    """64-bit keys from the first 16 hex digits of each md5 (collisions ~1e-8 at 1M users)."""
    raw = md5.to_numpy(zero_copy_only=False).astype("S16")
    nib = np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(len(raw), 16)
    lut = np.full(256, 255, dtype=np.uint8)
    for k, c in enumerate(b"0123456789abcdef"):
        lut[c] = k
    for k, c in enumerate(b"ABCDEF"):
        lut[c] = 10 + k
    vals = lut[nib]
    bad = np.flatnonzero((vals == 255).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: line {lines[i]}: md5 {md5[i].as_py()[:40]!r} is not a hex "
                        "digest; the row is broken, fix or remove it")
    keys = np.zeros(len(raw), dtype=np.uint64)
    for k in range(16):
        keys |= vals[:, k].astype(np.uint64) << np.uint64(4 * (15 - k))
    return keys


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
          (b"PK\x03\x04", "zip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"7z\xbc\xaf", "7z"))


def archive_kind(start: bytes) -> str | None:
    """The compression or archive format of a file starting with `start` (None: neither)."""
    for magic, kind in _MAGIC:
        if start.startswith(magic):
            return kind
    return "tar" if start[257:262] == b"ustar" else None


def archived(path: Path, kind: str) -> str:
    """The one-line message for a raw file that is still a `kind` archive."""
    return (f"{path}: is a {kind} archive, not the extracted CSV; extract it (e.g. tar -xzf "
            "sample_train.tar.gz) and point --raw at the files")


def csv_batches(path: Path, names: list[str], block_bytes: int
             ) -> Iterator[tuple[pa.RecordBatch, np.ndarray, int]]:
    """(batch, line number of each row, bytes consumed) of a raw comma-separated file."""
    try:
        with path.open("rb") as fh:
            start = fh.read(512)
            fh.seek(0)
            head = fh.readline()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    packed = archive_kind(start)
    if packed:  # else pyarrow's invalid-row hook fails to decode it and prints a traceback
        raise DataError(archived(path, packed))
    skip = 1 if head.startswith((b"sample_id", b"md5")) else 0
    invalid: list[tuple[int | None, str, int]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number, row.text[:60], row.actual_columns))
        return "error"

    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip,
                                           block_size=block_bytes, use_threads=False),
            parse_options=pacsv.ParseOptions(quote_char=False, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in names},
                                                 strings_can_be_null=False),
        )
        line = 1 + skip
        for batch in reader:
            lines = np.arange(line, line + batch.num_rows)
            line += batch.num_rows
            nbytes = sum(pc.sum(pc.binary_length(col)).as_py() or 0 for col in batch.columns)
            yield batch, lines, nbytes + batch.num_rows * len(names)
    except pa.ArrowInvalid as exc:
        if invalid:
            num, text, got = invalid[0]
            where = f"line {num}" if num is not None else f"row {text!r}"
            raise DataError(f"{path}: {where}: expected {','.join(names)} ({len(names)} "
                            f"comma-separated fields), got {got}; the file is truncated or not "
                            "a raw Ali-CCP file, fix or remove that line") from None
        msg = str(exc).splitlines()[0][:100]
        raise DataError(f"{path}: cannot parse ({msg}); re-extract the raw file") from None
