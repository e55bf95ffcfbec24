"""A columnar on-disk layout for datasets: raw little-endian arrays plus one JSON index.

Used both as the load cache (``~/.cache/automtl/cache/<name>-<key>/``) and as the output of
``automtl data prepare``. Arrays are memory-mapped on load, so opening 1M rows costs
milliseconds; rows can be appended chunk by chunk (bounded memory while preparing).

Layout::

    index.json               format, schema (features, tasks), meta, per-split columns
    <split>/<column>.bin     C-order array, dtype/shape recorded in index.json

``index.json`` is written last, so a folder without it is an unfinished write.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from automtl.data.schema import Dataset, FeatureSpec, Split, TaskSpec
from automtl.errors import DataError

FORMAT = "automtl-columnar"
VERSION = 1
INDEX = "index.json"


def _column_names(split: Split) -> dict[str, np.ndarray]:
    cols = {"sparse": split.sparse, "dense": split.dense, "labels": split.labels}
    if split.truth is not None:
        cols["truth"] = split.truth
    for i, (name, arr) in enumerate(split.sequences.items()):
        cols[f"seq{i}"] = arr
    return cols


class ColumnWriter:
    """Append row chunks of named columns per split, then `finish` with the schema."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / INDEX).unlink(missing_ok=True)  # the folder is unfinished until finish()
        self._cols: dict[str, dict[str, dict[str, Any]]] = {}
        self._files: dict[tuple[str, str], Any] = {}

    def append(self, split: str, column: str, arr: np.ndarray) -> None:
        """Append rows (axis 0) of `column` in `split`; dtype and row shape must stay the same."""
        arr = np.ascontiguousarray(arr)
        info = self._cols.setdefault(split, {}).get(column)
        if info is None:
            info = {"dtype": arr.dtype.str, "shape": [0, *arr.shape[1:]]}
            self._cols[split][column] = info
            (self.root / split).mkdir(parents=True, exist_ok=True)
            self._files[(split, column)] = open(self.root / split / f"{column}.bin", "wb")
        elif info["dtype"] != arr.dtype.str or info["shape"][1:] != list(arr.shape[1:]):
            raise ValueError(f"column {split}/{column}: chunk {arr.dtype}{arr.shape} does not fit")
        self._files[(split, column)].write(arr.tobytes())
        info["shape"][0] += int(arr.shape[0])

    @property
    def splits(self) -> list[str]:
        """Splits that have at least one column."""
        return list(self._cols)

    def rows(self, split: str) -> int:
        """Rows written so far to `split` (0 when none)."""
        cols = self._cols.get(split, {})
        return int(next(iter(cols.values()))["shape"][0]) if cols else 0

    def close(self) -> None:
        """Flush and close the column files (idempotent)."""
        for fh in self._files.values():
            fh.close()

    def open(self, split: str, column: str, n: int, row_shape: tuple[int, ...],
             dtype: type) -> np.ndarray:
        """Memory-map a closed column for reading (an empty array when `n` is 0)."""
        if n == 0:
            return np.zeros((0, *row_shape), dtype=dtype)
        return np.memmap(self.root / split / f"{column}.bin", dtype=dtype, mode="r",
                         shape=(n, *row_shape))

    def finish(self, features: list[FeatureSpec], tasks: list[TaskSpec], name: str,
               meta: dict[str, Any], sequences: list[str]) -> None:
        """Close the column files and write index.json (marks the folder complete)."""
        self.close()
        index = {
            "format": FORMAT,
            "version": VERSION,
            "name": name,
            "features": [asdict(f) for f in features],
            "tasks": [asdict(t) for t in tasks],
            "sequences": sequences,
            "meta": meta,
            "splits": self._cols,
        }
        tmp = self.root / (INDEX + ".tmp")
        tmp.write_text(json.dumps(index, indent=1, default=_json_default))
        os.replace(tmp, self.root / INDEX)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_dataset(ds: Dataset, root: str | Path) -> Path:
    """Write `ds` as a columnar folder (atomically: a temp folder renamed into place)."""
    root = Path(root)
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    writer = ColumnWriter(tmp)
    seq_names: list[str] = []
    for split_name, split in ds.splits.items():
        seq_names = list(split.sequences)
        for col, arr in _column_names(split).items():
            writer.append(split_name, col, arr)
    writer.finish(ds.features, ds.tasks, ds.name, ds.meta, seq_names)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def is_columnar(root: str | Path) -> bool:
    """Whether `root` holds a complete columnar dataset."""
    return (Path(root) / INDEX).is_file()


def load_columnar(root: str | Path) -> Dataset:
    """Open a columnar folder as a Dataset of read-only memory maps."""
    root = Path(root)
    path = root / INDEX
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable index ({exc.__class__.__name__}); "
                        "delete the folder and prepare the data again") from None
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise DataError(f"{path}: not an automtl {FORMAT} v{VERSION} folder; prepare it again")
    features = [FeatureSpec(**f) for f in index["features"]]
    tasks = [TaskSpec(**t) for t in index["tasks"]]
    seq_names: list[str] = index["sequences"]
    splits: dict[str, Split] = {}
    for split_name, cols in index["splits"].items():
        arrays: dict[str, np.ndarray] = {}
        for col, info in cols.items():
            file = root / split_name / f"{col}.bin"
            shape = tuple(info["shape"])
            expected = int(np.prod(shape)) * np.dtype(info["dtype"]).itemsize
            if not file.is_file() or file.stat().st_size != expected:
                raise DataError(f"{file}: missing or truncated column file; "
                                "delete the folder and prepare the data again")
            if shape[0] == 0:
                arrays[col] = np.zeros(shape, dtype=info["dtype"])
            else:
                arrays[col] = np.memmap(file, dtype=info["dtype"], mode="r", shape=shape)
        splits[split_name] = Split(
            sparse=arrays["sparse"],
            dense=arrays["dense"],
            sequences={name: arrays[f"seq{i}"] for i, name in enumerate(seq_names)},
            labels=arrays["labels"],
            truth=arrays.get("truth"),
        )
    return Dataset(name=index["name"], features=features, tasks=tasks, splits=splits,
                   meta=dict(index.get("meta", {})))
