"""Convert the raw Tianchi Ali-CCP release into the columnar layout, streaming.

Input folder: ``sample_skeleton_{train,test}.csv`` (``sample_id,click,buy,md5,feature_num,
feature_list``) and ``common_features_{train,test}.csv`` (``md5,feature_num,feature_list``);
``feature_list`` entries are joined by ``\\x01``, each ``field\\x02feature_id\\x03value``.

One pass per file, bounded memory: each common-features file is parsed once into on-disk
columns indexed by a 64-bit md5 prefix (held in memory: 8 bytes per user); the skeleton is then
streamed in blocks (pyarrow's streaming CSV reader; entries parsed with vectorised pyarrow
compute and NumPy, no per-line Python), joined by md5 against the memory-mapped common columns
and appended to the output columns. What grows in memory is only the vocabularies and the md5
index, never the number of samples.

Choices (documented because the release leaves them open):
- click=0, buy=1 rows are noise and are dropped (counted in ``meta.noise_rows_dropped``);
- multi-valued fields 109_14, 110_14, 127_14, 150_14 become sequences (the first ``max_len``
  entries), their mean value becomes the dense ``D<field>``; 508/509/702/853 values become
  ``D508`` ... as in the processed CSV;
- vocabularies are built on the train files; test ids unseen in train become 0 (OOV) for single
  fields and are skipped inside sequences (0 is padding there);
- val is a seeded ``val_fraction`` of the train skeleton rows (vocab covers the whole train file).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from automtl.data.columnar import ColumnWriter
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import DataError

SPARSE_FIELDS = ("101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206",
                 "207", "210", "216", "508", "509", "702", "853", "301")
SEQ_FIELDS = ("109_14", "110_14", "127_14", "150_14")
DENSE_FIELDS = ("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853")
TASKS = [TaskSpec("ctr", "click"), TaskSpec("ctcvr", "purchase", "ctr", "cvr")]

_NS, _NQ, _ND = len(SPARSE_FIELDS), len(SEQ_FIELDS), len(DENSE_FIELDS)

_T = TypeVar("_T")
_R = TypeVar("_R")

Progress = Callable[[str, int, int], None]  # (phase description, bytes advanced, lines advanced)


@dataclass
class PrepareReport:
    """What `prepare_ali_ccp` did: rows written per split, lines read, noise dropped, speed."""

    out: Path
    rows: dict[str, int] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)  # per raw file name
    noise_rows_dropped: dict[str, int] = field(default_factory=dict)
    rows_without_common: dict[str, int] = field(default_factory=dict)
    vocab_sizes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def lines_per_s(self) -> float:
        return sum(self.lines.values()) / self.seconds if self.seconds else 0.0


def raw_files(raw: Path) -> dict[str, tuple[Path, Path]]:
    """split -> (skeleton, common features) paths; DataError naming what is missing."""
    out = {}
    for split in ("train", "test"):
        sk, cf = raw / f"sample_skeleton_{split}.csv", raw / f"common_features_{split}.csv"
        for p in (sk, cf):
            if not p.is_file():
                raise DataError(f"{p}: raw Ali-CCP file not found; extract sample_train.tar.gz and "
                                "sample_test.tar.gz of Tianchi dataset 408 into that folder")
        out[split] = (sk, cf)
    return out


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
_FIELD_SET = pa.array([*SPARSE_FIELDS, *SEQ_FIELDS])
_DENSE_COL = np.full(_NS + _NQ, -1, dtype=np.int64)  # field index -> dense column (or -1)
for _j, _d in enumerate(DENSE_FIELDS):
    _DENSE_COL[[*SPARSE_FIELDS, *SEQ_FIELDS].index(_d[1:])] = _j


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
class _Tokens:
    """A block's feature entries, parsed without the vocabularies (so blocks can be parsed in
    parallel): per field, the rows, the distinct raw ids (with each entry's index into them)
    and the values of its entries, in row order."""

    n: int
    fields: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None]


def _tokenize(flist: pa.Array, nums: pa.Array, lines: np.ndarray, path: Path) -> _Tokens:
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
    fld = pc.index_in(parts.field(0), value_set=_FIELD_SET)
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
    # entries are ordered by row, then by position in the row
    order = np.argsort(fidx, kind="stable")
    bounds = np.searchsorted(fidx[order], np.arange(_NS + _NQ + 1))
    fields: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None] = []
    for j in range(_NS + _NQ):
        sel = order[bounds[j]: bounds[j + 1]]
        if sel.size == 0:
            fields.append(None)
            continue
        uniq, inverse = np.unique(raw_ids[sel], return_inverse=True)
        fields.append((parent[sel], uniq, inverse.reshape(-1), values[sel]))
    return _Tokens(n, fields)


class _Parser:
    """Parses feature-list columns with the train vocabularies (grown on train, frozen on test)."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.vocab = [_Vocab() for _ in range(_NS + _NQ)]
        self.grow = True

    def parse(self, flist: pa.Array, nums: pa.Array, lines: np.ndarray, path: Path
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sparse ids or -1 when absent [n, NS], dense or NaN [n, ND], sequences [n, NQ, L])."""
        return self.assemble(_tokenize(flist, nums, lines, path))

    def assemble(self, tok: _Tokens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A tokenized block through the vocabularies (in file order: ids are assigned in order
        of first appearance, so blocks must come in order)."""
        n = tok.n
        sparse = np.full((n, _NS), -1, dtype=np.int32)
        dense = np.full((n, _ND), np.nan, dtype=np.float32)
        seq = np.zeros((n, _NQ, self.max_len), dtype=np.int32)
        for j, entry in enumerate(tok.fields):
            if entry is None:
                continue
            rows, uniq, inverse, values = entry
            # map each distinct id once; np.unique sorted them, and _Vocab.map hands new ids out
            # in sorted order of the new keys, as it did for the full entry list
            ids = self.vocab[j].map(uniq, self.grow)[inverse]
            if j < _NS:  # single-valued: the first entry of the row wins
                rows_u, first = np.unique(rows, return_index=True)
                sparse[rows_u, j] = ids[first]
                if _DENSE_COL[j] >= 0:
                    dense[rows_u, _DENSE_COL[j]] = values[first]
                continue
            q = j - _NS
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


def _in_order(items: Iterator[_T], fn: Callable[[_T], _R], workers: int = 2,
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


def _md5_keys(md5: pa.Array, lines: np.ndarray, path: Path) -> np.ndarray:
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


def _batches(path: Path, names: list[str], block_bytes: int
             ) -> Iterator[tuple[pa.RecordBatch, np.ndarray, int]]:
    """(batch, line number of each row, bytes consumed) of a raw comma-separated file."""
    try:
        with path.open("rb") as fh:
            head = fh.readline()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check the path") from None
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


class _Common:
    """The common features of one split, on disk, looked up by md5 prefix."""

    def __init__(self, tmp: Path, path: Path, parser: _Parser, block_bytes: int,
                 progress: Progress | None) -> None:
        writer = ColumnWriter(tmp)
        keys: list[np.ndarray] = []
        self.lines = 0
        def tokenize(item: tuple[pa.RecordBatch, np.ndarray, int]
                     ) -> tuple[_Tokens, np.ndarray, int, int]:
            batch, lines, nbytes = item
            return (_tokenize(batch.column(2), batch.column(1), lines, path),
                    _md5_keys(batch.column(0), lines, path), batch.num_rows, nbytes)

        blocks = _batches(path, ["md5", "feature_num", "feature_list"], block_bytes)
        for tok, block_keys, n_rows, nbytes in _in_order(blocks, tokenize):
            sparse, dense, seq = parser.assemble(tok)
            keys.append(block_keys)
            writer.append("c", "sparse", sparse)
            writer.append("c", "dense", dense)
            writer.append("c", "seq", seq)
            self.lines += n_rows
            if progress:
                progress(f"user features {path.name}", nbytes, n_rows)
        writer.close()
        self.keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        self.order = np.argsort(self.keys, kind="stable")
        self.sorted_keys = self.keys[self.order]
        n = len(self.keys)
        self.sparse = writer.open("c", "sparse", n, (_NS,), np.int32)
        self.dense = writer.open("c", "dense", n, (_ND,), np.float32)
        self.seq = writer.open("c", "seq", n, (_NQ, parser.max_len), np.int32)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Row index of each key, -1 when the md5 is not in the common features."""
        if len(self.sorted_keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        found = self.sorted_keys[pos] == keys
        return np.where(found, self.order[pos], -1)


@dataclass
class _SkeletonBlock:
    """One skeleton block, checked and tokenized (in a worker thread)."""

    lines: int
    nbytes: int
    noise: int
    click: np.ndarray
    buy: np.ndarray
    tok: _Tokens | None  # None when every row was noise
    keys: np.ndarray


def _skeleton_block(item: tuple[pa.RecordBatch, np.ndarray, int], path: Path) -> _SkeletonBlock:
    batch, lines, nbytes = item
    n = batch.num_rows
    click = batch.column(1).to_numpy(zero_copy_only=False)
    buy = batch.column(2).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(~np.isin(click, ("0", "1")) | ~np.isin(buy, ("0", "1")))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: line {lines[i]}: click={click[i][:10]!r} "
                        f"buy={buy[i][:10]!r}; labels must be 0 or 1, fix the row")
    c, b = click == "1", buy == "1"
    is_noise = ~c & b  # purchase without click: noise in the release
    noise = int(is_noise.sum())
    if noise:
        keep = ~is_noise
        batch, lines, c, b = batch.filter(pa.array(keep)), lines[keep], c[keep], b[keep]
    if not batch.num_rows:
        return _SkeletonBlock(n, nbytes, noise, c, b, None, np.zeros(0, np.uint64))
    tok = _tokenize(batch.column(5), batch.column(4), lines, path)
    return _SkeletonBlock(n, nbytes, noise, c, b, tok, _md5_keys(batch.column(3), lines, path))


def _write(writer: ColumnWriter, split: str, sparse: np.ndarray, dense: np.ndarray,
           labels: np.ndarray, seq: np.ndarray) -> None:
    writer.append(split, "sparse", sparse)
    writer.append(split, "dense", dense)
    writer.append(split, "labels", labels)
    for j in range(_NQ):
        writer.append(split, f"seq{j}", np.ascontiguousarray(seq[:, j]))


def prepare_ali_ccp(
    raw: str | Path,
    out: str | Path,
    max_len: int = 20,
    val_fraction: float = 0.1,
    seed: int = 0,
    block_bytes: int = 16 << 20,
    progress: Progress | None = None,
) -> PrepareReport:
    """Stream the raw Tianchi Ali-CCP files in `raw` into a columnar dataset folder `out`."""
    raw, out = Path(raw), Path(out)
    files = raw_files(raw)
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    if max_len < 1:
        raise DataError(f"--max-len {max_len}: must be >= 1")
    t0 = time.perf_counter()
    report = PrepareReport(out=out)
    parser = _Parser(max_len)
    writer = ColumnWriter(out)
    tmp = out / "_tmp_common"
    rng = np.random.default_rng(seed)
    names = ["sample_id", "click", "buy", "md5", "feature_num", "feature_list"]
    for split in ("train", "test"):  # train first: it builds the vocabularies
        parser.grow = split == "train"
        sk_path, cf_path = files[split]
        shutil.rmtree(tmp, ignore_errors=True)
        common = _Common(tmp, cf_path, parser, block_bytes, progress)
        report.lines[cf_path.name] = common.lines
        noise = missing = n_lines = 0
        blocks = _batches(sk_path, names, block_bytes)
        for blk in _in_order(blocks, lambda item, p=sk_path: _skeleton_block(item, p)):
            n_lines += blk.lines
            noise += blk.noise
            if blk.tok is not None:
                c, b = blk.click, blk.buy
                sk_s, sk_d, own = parser.assemble(blk.tok)
                idx = common.lookup(blk.keys)
                ok = idx >= 0
                missing += int((~ok).sum())
                safe = np.where(ok, idx, 0)
                sparse = common.sparse[safe]
                dense = common.dense[safe]
                if not ok.all():
                    sparse[~ok], dense[~ok] = -1, np.nan
                np.copyto(sparse, sk_s, where=sk_s >= 0)  # item-side fields from the skeleton
                np.copyto(dense, sk_d, where=~np.isnan(sk_d))
                np.maximum(sparse, 0, out=sparse)
                np.nan_to_num(dense, copy=False, nan=0.0)
                seq = common.seq[safe]  # a gathered copy [n, NQ, max_len]
                if not ok.all():
                    seq[~ok] = 0
                has_own = own[:, :, 0] > 0  # behaviour fields in the skeleton (rare) win
                if has_own.any():
                    seq[has_own] = own[has_own]
                labels = np.stack([c, c & b], axis=1).astype(np.float32)
                if split == "train" and val_fraction > 0:
                    to_val = rng.random(len(labels)) < val_fraction
                    for name, m in (("train", ~to_val), ("val", to_val)):
                        _write(writer, name, sparse[m], dense[m], labels[m], seq[m])
                else:
                    _write(writer, split, sparse, dense, labels, seq)
            if progress:
                progress(f"samples {sk_path.name}", blk.nbytes, blk.lines)
        report.lines[sk_path.name] = n_lines
        report.noise_rows_dropped[split] = noise
        report.rows_without_common[split] = missing
        del common
        shutil.rmtree(tmp, ignore_errors=True)

    for split in ("train", "val", "test"):  # a split without rows still gets empty columns
        if split not in writer.splits:
            _write(writer, split, np.zeros((0, _NS), np.int32), np.zeros((0, _ND), np.float32),
                   np.zeros((0, 2), np.float32), np.zeros((0, _NQ, max_len), np.int32))
    report.rows = {s: writer.rows(s) for s in ("train", "val", "test")}
    if report.rows["train"] == 0:
        raise DataError(f"{files['train'][0]}: no usable rows (empty or all noise); "
                        "check that it is the raw Ali-CCP skeleton")
    features = [FeatureSpec(f, "sparse", vocab_size=len(parser.vocab[j]) + 1)
                for j, f in enumerate(SPARSE_FIELDS)]
    features += [FeatureSpec(d, "dense") for d in DENSE_FIELDS]
    features += [FeatureSpec(f, "sequence", vocab_size=len(parser.vocab[_NS + j]) + 1,
                             max_len=max_len)
                 for j, f in enumerate(SEQ_FIELDS)]
    report.vocab_sizes = {f.name: f.vocab_size for f in features if f.kind != "dense"}
    report.seconds = time.perf_counter() - t0
    meta = {
        "source": str(raw),
        "prepared_from": "raw Tianchi release",
        "options": {"max_len": max_len, "val_fraction": val_fraction, "seed": seed},
        "val": f"seeded {val_fraction:.0%} of sample_skeleton_train.csv rows (seed {seed})",
        "noise_rows_dropped": report.noise_rows_dropped,
        "rows_without_common": report.rows_without_common,
        "lines": report.lines,
    }
    writer.finish(features, TASKS, "ali-ccp", meta, list(SEQ_FIELDS))
    return report
