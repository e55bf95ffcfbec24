"""Processed CSV tables -> Dataset: strict reading, validation, train-only vocabularies.

Shared by the Ali-CCP, AliExpress and Census-Income loaders. Every problem a user's file can
have becomes one `DataError` line naming the file, the line or column, and the fix.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from automtl.data.schema import Dataset, FeatureSpec, Split, TaskSpec
from automtl.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TableLayout:
    """The columns of one processed CSV layout and how they become features and tasks."""

    sparse: tuple[str, ...]
    dense: tuple[str, ...]
    tasks: tuple[TaskSpec, ...]
    ignore: tuple[str, ...] = ()  # present in the files but not used (e.g. search_id)
    # label column -> converter of raw values (e.g. census strings) to {0, 1}; default: as is
    label_maps: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)

    @property
    def columns(self) -> set[str]:
        return {*self.sparse, *self.dense, *(t.label for t in self.tasks), *self.ignore}


def find_split_files(folder: Path, patterns: tuple[str, ...]) -> dict[str, Path]:
    """split -> first existing file among `patterns` (formatted with {split})."""
    out: dict[str, Path] = {}
    for split in SPLITS:
        for pat in patterns:
            p = folder / pat.format(split=split)
            if p.is_file():
                out[split] = p
                break
    return out


def _first_bad_line(path: Path, n_cols: int) -> tuple[int, int] | None:
    """(line number, field count) of the first line whose field count differs from the header."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if len(row) != n_cols:
                return lineno, len(row)
    return None


def _read_header(path: Path) -> list[str]:
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:  # a BOM is accepted
            line = fh.readline()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text CSV file; export it as plain CSV") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); "
                        "check the path and permissions") from None
    if not line.strip():
        raise DataError(f"{path}: empty file (no header line); write the CSV header and rows")
    return next(csv.reader([line]))


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_table(path: Path, layout: TableLayout) -> dict[str, np.ndarray]:
    """Read and validate one CSV file of `layout`; column name -> NumPy array."""
    header = _read_header(path)
    expected = layout.columns
    missing = [c for c in sorted(expected) if c not in header]
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:  # first: a name written twice is usually why another one is "missing"
        also = f" (and {', '.join(map(repr, missing[:5]))} missing)" if missing else ""
        raise DataError(f"{path}: duplicated column(s) {', '.join(map(repr, dup))}{also}; "
                        "rename them")
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(map(repr, missing[:5]))}"
                        f"{' ...' if len(missing) > 5 else ''}; the header must have "
                        f"{len(expected)} columns of this layout")
    extra = [c for c in header if c not in expected]
    if extra:
        raise DataError(f"{path}: unexpected column(s) {', '.join(map(repr, extra[:5]))}; "
                        "remove them or check that the file belongs to this dataset")
    try:
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24),
                               convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        bad = _first_bad_line(path, len(header))
        if bad:
            raise DataError(f"{path}: line {bad[0]} has {bad[1]} fields, the header has "
                            f"{len(header)}; the file is truncated or has a broken row, "
                            "fix or remove that line") from None
        msg = str(exc).splitlines()[0][:120]
        raise DataError(f"{path}: cannot parse CSV ({msg}); fix the file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc}); check the file") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no data rows (empty split); add rows or remove the file")
    out: dict[str, np.ndarray] = {}
    for name in header:
        if name in layout.ignore:
            continue
        col = table.column(name)
        if col.null_count:
            row = int(np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))[0])
            fix = ("fill missing ids with a value (e.g. 0)" if name in layout.sparse
                   else "fill the missing values")
            raise DataError(f"{path}: line {row + 2}, column {name!r} is empty/NaN; {fix}")
        arr = col.to_numpy()
        if name in layout.sparse and np.issubdtype(arr.dtype, np.floating):
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise DataError(f"{path}: line {int(bad[0]) + 2}, column {name!r} is empty/NaN; "
                                "fill missing ids with a value (e.g. 0)")
            big = np.flatnonzero(np.abs(arr) >= 2.0**63)
            if big.size:  # one id past int64 turns the column into floats: would wrap silently
                raise DataError(f"{path}: line {int(big[0]) + 2}, column {name!r} has id "
                                f"{arr[big[0]]:.0f} beyond the 64-bit integer range; re-map "
                                "the ids to integers below 2^63 (or to strings)")
            frac = np.flatnonzero(arr != np.floor(arr))
            if frac.size:  # 3.5 is no id: a shifted column or a dense value in the wrong place
                raise DataError(f"{path}: line {int(frac[0]) + 2}, column {name!r} has "
                                f"non-integer id {arr[frac[0]]:g}; ids must be whole numbers "
                                "(or text): check the column order")
            arr = arr.astype(np.int64)  # ids written as 3.0
        if name in layout.dense or name in {t.label for t in layout.tasks}:
            conv = layout.label_maps.get(name)
            if conv is not None:
                arr = conv(arr)
            if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
                row = _first_non_numeric(arr)
                raise DataError(f"{path}: line {row + 2}, column {name!r} has non-numeric value "
                                f"{arr[row]!r}; numbers only in this column")
            arr = arr.astype(np.float64)
            if name in layout.dense and not np.isfinite(arr).all():
                row = int(np.flatnonzero(~np.isfinite(arr))[0])
                raise DataError(f"{path}: line {row + 2}, column {name!r} is NaN/inf; "
                                "fill the missing values")
            big = np.flatnonzero(np.abs(arr) > _FLOAT32_MAX) if name in layout.dense else []
            if len(big):  # training is float32: 1e308 would become inf and the loss NaN
                raise DataError(f"{path}: line {int(big[0]) + 2}, column {name!r} has value "
                                f"{arr[big[0]]:g} beyond the float32 range (±3.4e38); scale "
                                "or clip the column")
        out[name] = arr
    for task in layout.tasks:
        y = out[task.label]
        bad = np.flatnonzero((y != 0) & (y != 1))
        if bad.size:
            r = int(bad[0])
            raise DataError(f"{path}: line {r + 2}, label column {task.label!r} has value "
                            f"{y[r]:g}; labels must be 0 or 1")
    return out


def _first_non_numeric(arr: np.ndarray) -> int:
    for i, v in enumerate(arr):
        try:
            float(v)
        except (TypeError, ValueError):
            return i
    return 0


def _reindex(train: np.ndarray, others: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Map raw ids to 1..V by the train vocabulary; ids unseen in train -> 0 (OOV)."""
    cols = [train, *others]
    if len({c.dtype.kind in "iub" for c in cols}) > 1:  # text ids in one split, numbers in another
        cols = [c.astype(str) for c in cols]
    train = cols[0]
    vocab = np.unique(train)
    out = []
    for col in cols:
        pos = np.searchsorted(vocab, col)
        pos_c = np.minimum(pos, len(vocab) - 1)
        hit = vocab[pos_c] == col
        out.append(np.where(hit, pos_c + 1, 0).astype(np.int32))
    return out, len(vocab) + 1


def build_dataset(name: str, layout: TableLayout, files: dict[str, Path],
                  val_fraction: float, seed: int, meta: dict[str, object]) -> Dataset:
    """Read the split files, carve val from train when absent, re-index ids, drop cascade noise."""
    if "train" not in files or "test" not in files:
        have = ", ".join(f"{k}={v.name}" for k, v in files.items()) or "none"
        raise DataError(f"{name}: need train and test files, found {have}; "
                        "name them {split}.csv (train.csv, test.csv, optional val.csv)")
    tables = {s: read_table(p, layout) for s, p in files.items()}
    if "val" not in tables:
        if not 0.0 < val_fraction < 1.0:
            raise DataError(f"{name}: option val_fraction={val_fraction} must be in (0, 1)")
        tr = tables["train"]
        n = len(next(iter(tr.values())))
        perm = np.random.default_rng(seed).permutation(n)
        n_val = max(1, int(round(val_fraction * n)))
        val_idx, tr_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        tables["val"] = {k: v[val_idx] for k, v in tr.items()}
        tables["train"] = {k: v[tr_idx] for k, v in tr.items()}
        meta["val"] = f"seeded {val_fraction:.0%} of {files['train'].name} (seed {seed})"
    # Cascade noise (e.g. purchase without click): dropped and counted per split.
    names = [t.name for t in layout.tasks]
    dropped: dict[str, int] = {}
    for split, tab in tables.items():
        keep = np.ones(len(next(iter(tab.values()))), dtype=bool)
        for t in layout.tasks:
            if t.depends_on:
                parent = layout.tasks[names.index(t.depends_on)].label
                keep &= ~((tab[t.label] == 1) & (tab[parent] == 0))
        dropped[split] = int((~keep).sum())
        if dropped[split]:
            tables[split] = {k: v[keep] for k, v in tab.items()}
            if not keep.any():
                raise DataError(f"{files.get(split, files['train'])}: every row of split {split!r} "
                                "is a purchase without click; check the label columns")
    meta["dropped_cascade_noise"] = dropped
    order = ["train", "val", "test"]
    sparse_cols: dict[str, list[np.ndarray]] = {s: [] for s in order}
    features: list[FeatureSpec] = []
    for c in layout.sparse:
        mapped, vocab = _reindex(tables["train"][c], [tables[s][c] for s in order[1:]])
        for s, arr in zip(order, mapped):
            sparse_cols[s].append(arr)
        features.append(FeatureSpec(c, "sparse", vocab_size=vocab))
    features += [FeatureSpec(c, "dense") for c in layout.dense]
    splits: dict[str, Split] = {}
    for s in order:
        tab = tables[s]
        n = len(tab[layout.tasks[0].label])
        splits[s] = Split(
            sparse=(np.stack(sparse_cols[s], axis=1) if sparse_cols[s]
                    else np.zeros((n, 0), np.int32)),
            dense=(np.stack([tab[c] for c in layout.dense], axis=1).astype(np.float32)
                   if layout.dense else np.zeros((n, 0), np.float32)),
            sequences={},
            labels=np.stack([tab[t.label] for t in layout.tasks], axis=1).astype(np.float32),
        )
    meta["files"] = {s: str(p) for s, p in files.items()}
    return Dataset(name=name, features=features, tasks=list(layout.tasks), splits=splits,
                   meta=meta)
