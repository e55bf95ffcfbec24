"""Convert the raw Tianchi Ali-CCP release into the columnar layout, streaming.

Input folder: ``sample_skeleton_{train,test}.csv`` (``sample_id,click,buy,md5,feature_num,
feature_list``) and ``common_features_{train,test}.csv`` (``md5,feature_num,feature_list``);
``feature_list`` entries are joined by ``\\x01``, each ``field\\x02feature_id\\x03value``.

One pass per file, bounded memory: each common-features file is parsed once into on-disk
columns indexed by a 64-bit md5 prefix (held in memory: 8 bytes per user); the skeleton is then
streamed in chunks, joined by md5 against the memory-mapped common columns and appended to the
output columns. What grows in memory is only the vocabularies and the md5 index, never the
number of samples.

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

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from automtl.data.columnar import ColumnWriter
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import DataError

SPARSE_FIELDS = ("101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206",
                 "207", "210", "216", "508", "509", "702", "853", "301")
SEQ_FIELDS = ("109_14", "110_14", "127_14", "150_14")
DENSE_FIELDS = ("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853")
TASKS = [TaskSpec("ctr", "click"), TaskSpec("ctcvr", "purchase", "ctr", "cvr")]

_NS, _NQ, _ND = len(SPARSE_FIELDS), len(SEQ_FIELDS), len(DENSE_FIELDS)
# field id (bytes) -> (kind, column); kind 0 = single sparse, 1 = sequence
_FIELD = {f.encode(): (0, j) for j, f in enumerate(SPARSE_FIELDS)}
_FIELD.update({f.encode(): (1, j) for j, f in enumerate(SEQ_FIELDS)})
_DENSE_OF = {d[1:].encode(): j for j, d in enumerate(DENSE_FIELDS)}  # b"508" -> 4, b"109_14" -> 0
_NAN = float("nan")

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


class _Parser:
    """Parses feature lists with the train vocabularies (grown on train, frozen for test)."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.vocab: list[dict[bytes, int]] = [{} for _ in range(_NS + _NQ)]
        self.grow = True

    def _id(self, j: int, fid: bytes) -> int:
        voc = self.vocab[j]
        v = voc.get(fid)
        if v is None:
            if not self.grow:
                return 0
            v = voc[fid] = len(voc) + 1
        return v

    def parse(self, flist: bytes, n_expected: bytes, where: Callable[[], str]
              ) -> tuple[list[int], list[float], list[list[int]]]:
        """(sparse ids or -1 when absent, dense values or NaN, sequences) of one feature list."""
        entries = flist.split(b"\x01") if flist else []
        try:
            n = int(n_expected)
        except ValueError:
            raise DataError(f"{where()}: feature_num {n_expected[:20]!r} is not a number; "
                            "the row is broken, fix or remove it") from None
        if len(entries) != n:
            raise DataError(f"{where()}: feature_num is {n} but feature_list has {len(entries)} "
                            "entries separated by \\x01; the separators are broken or the line is "
                            "truncated, re-extract the raw file")
        sparse = [-1] * _NS
        dense = [_NAN] * _ND
        seqs: list[list[int]] = [[] for _ in range(_NQ)]
        seq_sum = [0.0] * _NQ
        for e in entries:
            fld, s1, rest = e.partition(b"\x02")
            fid, s2, val = rest.partition(b"\x03")
            if not s1 or not s2:
                raise DataError(f"{where()}: feature entry {e[:30]!r} is not "
                                "field\\x02feature_id\\x03value; the separators are broken, "
                                "re-extract the raw file")
            kind = _FIELD.get(fld)
            if kind is None:
                continue  # a field outside the 23 used by the common preprocessing
            try:
                value = float(val)
            except ValueError:
                raise DataError(f"{where()}: feature value {val[:20]!r} of field "
                                f"{fld.decode(errors='replace')} is not a number; fix the row"
                                ) from None
            k, j = kind
            if k == 0:
                if sparse[j] < 0:
                    sparse[j] = self._id(j, fid)
                    dj = _DENSE_OF.get(fld)
                    if dj is not None:
                        dense[dj] = value
            else:
                seq = seqs[j]
                if len(seq) < self.max_len:
                    v = self._id(_NS + j, fid)
                    if v:
                        seq.append(v)
                        seq_sum[j] += value
        for j in range(_NQ):
            if seqs[j]:
                dense[j] = seq_sum[j] / len(seqs[j])
        return sparse, dense, seqs


def _pad(seqs: list[list[list[int]]], max_len: int) -> np.ndarray:
    """[rows][field][ids] -> int32 [rows, n_fields, max_len], zero padded."""
    out = np.zeros((len(seqs), _NQ, max_len), dtype=np.int32)
    for i, row in enumerate(seqs):
        for j, s in enumerate(row):
            if s:
                out[i, j, : len(s)] = s
    return out


def _md5_key(md5: bytes, where: Callable[[], str]) -> int:
    try:
        return int(md5[:16], 16)  # 64-bit prefix: collisions are ~1e-8 likely at 1M users
    except ValueError:
        raise DataError(f"{where()}: md5 {md5[:40]!r} is not a hex digest; the row is broken, "
                        "fix or remove it") from None


def _lines(path: Path):
    """(line number, line without newline, bytes) of a raw file, skipping a header line."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            size = len(line)
            line = line.rstrip(b"\r\n")
            if lineno == 1 and (line.startswith(b"sample_id") or line.startswith(b"md5")):
                continue
            if not line:
                continue
            yield lineno, line, size


class _Common:
    """The common features of one split, on disk, looked up by md5 prefix."""

    def __init__(self, tmp: Path, path: Path, parser: _Parser, chunk: int,
                 progress: Progress | None) -> None:
        writer = ColumnWriter(tmp)
        keys: list[np.ndarray] = []
        buf_k: list[int] = []
        buf_s: list[list[int]] = []
        buf_d: list[list[float]] = []
        buf_q: list[list[list[int]]] = []
        nbytes = nlines = 0
        self.lines = 0

        def flush() -> None:
            nonlocal nbytes, nlines
            if not buf_k:
                return
            keys.append(np.array(buf_k, dtype=np.uint64))
            writer.append("c", "sparse", np.array(buf_s, dtype=np.int32))
            writer.append("c", "dense", np.array(buf_d, dtype=np.float32))
            writer.append("c", "seq", _pad(buf_q, parser.max_len))
            buf_k.clear(), buf_s.clear(), buf_d.clear(), buf_q.clear()
            if progress:
                progress(f"common features {path.name}", nbytes, nlines)
            nbytes = nlines = 0

        for lineno, line, size in _lines(path):
            def where() -> str:
                return f"{path}: line {lineno}"
            parts = line.split(b",", 2)
            if len(parts) != 3:
                raise DataError(f"{where()}: expected md5,feature_num,feature_list "
                                f"(3 comma-separated fields), got {len(parts)}; fix or remove it")
            sparse, dense, seqs = parser.parse(parts[2], parts[1], where)
            buf_k.append(_md5_key(parts[0], where))
            buf_s.append(sparse)
            buf_d.append(dense)
            buf_q.append(seqs)
            nbytes += size
            nlines += 1
            self.lines += 1
            if len(buf_k) >= chunk:
                flush()
        flush()
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


def prepare_ali_ccp(
    raw: str | Path,
    out: str | Path,
    max_len: int = 50,
    val_fraction: float = 0.1,
    seed: int = 0,
    chunk: int = 50_000,
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
    for split in ("train", "test"):  # train first: it builds the vocabularies
        parser.grow = split == "train"
        sk_path, cf_path = files[split]
        shutil.rmtree(tmp, ignore_errors=True)
        common = _Common(tmp, cf_path, parser, chunk, progress)
        report.lines[cf_path.name] = common.lines
        noise = missing = n_lines = 0
        lab: list[tuple[int, int]] = []
        keys: list[int] = []
        rows_s: list[list[int]] = []
        rows_d: list[list[float]] = []
        rows_q: list[list[list[int]]] = []
        nbytes = nlines = 0

        def flush() -> None:
            nonlocal missing, nbytes, nlines
            if not lab:
                return
            idx = common.lookup(np.array(keys, dtype=np.uint64))
            ok = idx >= 0
            missing += int((~ok).sum())
            safe = np.where(ok, idx, 0)
            sk_s = np.array(rows_s, dtype=np.int32)
            sk_d = np.array(rows_d, dtype=np.float32)
            c_s = np.where(ok[:, None], common.sparse[safe], -1)
            c_d = np.where(ok[:, None], common.dense[safe], np.float32(np.nan))
            sparse = np.maximum(np.where(sk_s >= 0, sk_s, c_s), 0).astype(np.int32)
            dense = np.where(np.isnan(sk_d), c_d, sk_d)
            dense = np.nan_to_num(dense, nan=0.0).astype(np.float32)
            seq = np.where(ok[:, None, None], common.seq[safe], 0).astype(np.int32)
            own = _pad(rows_q, max_len)  # behaviour fields in the skeleton override the user's
            has_own = own[:, :, 0] > 0
            seq = np.where(has_own[:, :, None], own, seq)
            y = np.array(lab, dtype=np.float32)
            labels = np.stack([y[:, 0], y[:, 0] * y[:, 1]], axis=1)
            if split == "train" and val_fraction > 0:
                to_val = rng.random(len(y)) < val_fraction
                parts = [("train", ~to_val), ("val", to_val)]
            else:
                parts = [(split, np.ones(len(y), dtype=bool))]
            for name, m in parts:
                writer.append(name, "sparse", sparse[m])
                writer.append(name, "dense", dense[m])
                writer.append(name, "labels", labels[m])
                for j in range(_NQ):
                    writer.append(name, f"seq{j}", np.ascontiguousarray(seq[m, j]))
            for buf in (lab, keys, rows_s, rows_d, rows_q):
                buf.clear()
            if progress:
                progress(f"samples {sk_path.name}", nbytes, nlines)
            nbytes = nlines = 0

        for lineno, line, size in _lines(sk_path):
            def where() -> str:
                return f"{sk_path}: line {lineno}"
            parts = line.split(b",", 5)
            if len(parts) != 6:
                raise DataError(f"{where()}: expected sample_id,click,buy,md5,feature_num,"
                                f"feature_list (6 comma-separated fields), got {len(parts)}; "
                                "the file is truncated or not a raw Ali-CCP skeleton")
            click, buy = parts[1], parts[2]
            if click not in (b"0", b"1") or buy not in (b"0", b"1"):
                raise DataError(f"{where()}: click={click[:10]!r} buy={buy[:10]!r}; labels must be "
                                "0 or 1, fix the row")
            n_lines += 1
            nbytes += size
            nlines += 1
            if click == b"0" and buy == b"1":
                noise += 1  # purchase without click: noise in the release
                continue
            sparse, dense, seqs = parser.parse(parts[5], parts[4], where)
            lab.append((click == b"1", buy == b"1"))
            keys.append(_md5_key(parts[3], where))
            rows_s.append(sparse)
            rows_d.append(dense)
            rows_q.append(seqs)
            if len(lab) >= chunk:
                flush()
        flush()
        report.lines[sk_path.name] = n_lines
        report.noise_rows_dropped[split] = noise
        report.rows_without_common[split] = missing
        del common
        shutil.rmtree(tmp, ignore_errors=True)

    for split in ("train", "val", "test"):  # a split without rows still gets empty columns
        if split not in writer.splits:
            writer.append(split, "sparse", np.zeros((0, _NS), np.int32))
            writer.append(split, "dense", np.zeros((0, _ND), np.float32))
            writer.append(split, "labels", np.zeros((0, 2), np.float32))
            for j in range(_NQ):
                writer.append(split, f"seq{j}", np.zeros((0, max_len), np.int32))
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
