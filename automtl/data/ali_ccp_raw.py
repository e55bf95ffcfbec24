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

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from automtl.data.ali_ccp_parse import (
    DENSE_FIELDS,
    N_DENSE,
    N_SEQ,
    N_SPARSE,
    SEQ_FIELDS,
    SPARSE_FIELDS,
    Parser,
    Tokens,
    archive_kind,
    archived,
    csv_batches,
    in_order,
    md5_keys,
    tokenize,
)
from automtl.data.columnar import INDEX, ColumnWriter
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import DataError

TASKS = [TaskSpec("ctr", "click"), TaskSpec("ctcvr", "purchase", "ctr", "cvr")]

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
            try:
                with p.open("rb") as fh:
                    kind = archive_kind(fh.read(512))
            except OSError as exc:
                raise DataError(f"{p}: cannot read ({exc.strerror}); check the path") from None
            if kind:  # found before anything is written
                raise DataError(archived(p, kind))
        out[split] = (sk, cf)
    return out


class _Common:
    """The common features of one split, on disk, looked up by md5 prefix."""

    def __init__(self, tmp: Path, path: Path, parser: Parser, block_bytes: int,
                 progress: Progress | None) -> None:
        writer = ColumnWriter(tmp)
        keys: list[np.ndarray] = []
        self.lines = 0
        def tokenize_block(item: tuple[pa.RecordBatch, np.ndarray, int]
                     ) -> tuple[Tokens, np.ndarray, int, int]:
            batch, lines, nbytes = item
            return (tokenize(batch.column(2), batch.column(1), lines, path),
                    md5_keys(batch.column(0), lines, path), batch.num_rows, nbytes)

        blocks = csv_batches(path, ["md5", "feature_num", "feature_list"], block_bytes)
        for tok, block_keys, n_rows, nbytes in in_order(blocks, tokenize_block):
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
        self.sparse = writer.open("c", "sparse", n, (N_SPARSE,), np.int32)
        self.dense = writer.open("c", "dense", n, (N_DENSE,), np.float32)
        self.seq = writer.open("c", "seq", n, (N_SEQ, parser.max_len), np.int32)

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
    tok: Tokens | None  # None when every row was noise
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
    tok = tokenize(batch.column(5), batch.column(4), lines, path)
    return _SkeletonBlock(n, nbytes, noise, c, b, tok, md5_keys(batch.column(3), lines, path))


def _write(writer: ColumnWriter, split: str, sparse: np.ndarray, dense: np.ndarray,
           labels: np.ndarray, seq: np.ndarray) -> None:
    writer.append(split, "sparse", sparse)
    writer.append(split, "dense", dense)
    writer.append(split, "labels", labels)
    for j in range(N_SEQ):
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
    """Stream the raw Tianchi Ali-CCP files in `raw` into a columnar dataset folder `out`.

    The data set is built in a sibling folder and takes `out`'s place only once finished: a
    broken row found mid-stream (`DataError`) or Ctrl-C leaves `out` as it was, a data set
    prepared there before included, and a search still reading the old files (memory-mapped)
    keeps them until it closes them. An `out` holding anything but a prepared data set is
    refused before any write (its files would be replaced)."""
    # the real folder: "." has no name to build beside, and a linked --out is built beside
    # its target (the renames of the swap stay on one file system)
    raw, out = Path(raw), Path(os.path.realpath(out))
    files = raw_files(raw)
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    if max_len < 1:
        raise DataError(f"--max-len {max_len}: must be >= 1")
    check_prepare_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        report = _prepare(raw, work, files, max_len, val_fraction, seed, block_bytes, progress)
    except BaseException:  # a broken row found mid-stream, or Ctrl-C: `out` is untouched
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out.is_dir():
        _swap_into(work, out)
    else:
        work.rename(out)
    report.out = out
    return report


def _swap_into(work: Path, out: Path) -> None:
    """Move the finished data set in `work` into the existing folder `out`, entry by entry
    (renames, not copies; `out` itself stays, so a shell or a link inside it keeps working).
    The old index goes first and the new one last: in between the folder reads as unfinished.
    The old entries are removed after; a reader's open mapping keeps its files until closed."""
    trash = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(trash, ignore_errors=True)
    trash.mkdir()
    for entry in sorted(out.iterdir(), key=lambda p: p.name != INDEX):  # all ours (checked)
        entry.rename(trash / entry.name)
    for entry in sorted(work.iterdir(), key=lambda p: p.name == INDEX):
        entry.rename(out / entry.name)
    work.rmdir()
    shutil.rmtree(trash, ignore_errors=True)


# what a folder of `prepare` holds; anything else in `--out` belongs to somebody else
_OURS = {"train", "val", "test", "_tmp_common", INDEX}


def check_prepare_out(out: Path) -> None:
    """Refuse an `out` that is a file, or a folder with files `prepare` did not make."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: is a file; pass a folder for the prepared data set")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OURS)
        if foreign:
            raise DataError(f"--out {out}: the folder holds files that are not a prepared data "
                            f"set ({', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''})"
                            "; pass a new or empty folder")


def _prepare(raw: Path, out: Path, files: dict[str, tuple[Path, Path]], max_len: int,
             val_fraction: float, seed: int, block_bytes: int,
             progress: Progress | None) -> PrepareReport:
    t0 = time.perf_counter()
    report = PrepareReport(out=out)
    parser = Parser(max_len)
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
        blocks = csv_batches(sk_path, names, block_bytes)
        for blk in in_order(blocks, lambda item, p=sk_path: _skeleton_block(item, p)):
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
            _write(writer, split, np.zeros((0, N_SPARSE), np.int32), np.zeros((0, N_DENSE), np.float32),
                   np.zeros((0, 2), np.float32), np.zeros((0, N_SEQ, max_len), np.int32))
    report.rows = {s: writer.rows(s) for s in ("train", "val", "test")}
    if report.rows["train"] == 0:
        raise DataError(f"{files['train'][0]}: no usable rows (empty or all noise); "
                        "check that it is the raw Ali-CCP skeleton")
    features = [FeatureSpec(f, "sparse", vocab_size=len(parser.vocab[j]) + 1)
                for j, f in enumerate(SPARSE_FIELDS)]
    features += [FeatureSpec(d, "dense") for d in DENSE_FIELDS]
    features += [FeatureSpec(f, "sequence", vocab_size=len(parser.vocab[N_SPARSE + j]) + 1,
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
