"""Write a Dataset's splits as CSV files in the processed layout the exported scripts read.

Layout (one file per split, ``train.csv`` / ``val.csv`` / ``test.csv``): one column per task label
(`TaskSpec.label`, in task order), one per sparse field (integer ids in ``[0, vocab_size)``, 0 =
unknown), one per dense field (floats), one per sequence field (the non-padding ids, space
separated, empty when none). The same layout as the public processed Ali-CCP / AliExpress files,
plus the sequence columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from automtl.data.schema import Dataset, Split
from automtl.errors import AutomtlError

SEQ_SEPARATOR = " "


def _sequence_strings(seq: np.ndarray) -> list[str]:
    return [SEQ_SEPARATOR.join(str(v) for v in row[row != 0]) for row in seq]


def split_table(ds: Dataset, split: Split) -> pa.Table:
    """One split as an Arrow table in the processed layout."""
    cols: dict[str, pa.Array] = {}
    for j, task in enumerate(ds.tasks):
        cols[task.label] = pa.array(split.labels[:, j].astype(np.int64))
    for j, f in enumerate(ds.sparse_features):
        cols[f.name] = pa.array(split.sparse[:, j].astype(np.int64))
    for j, f in enumerate(ds.dense_features):
        cols[f.name] = pa.array(split.dense[:, j].astype(np.float32))
    for f in ds.sequence_features:
        cols[f.name] = pa.array(_sequence_strings(np.asarray(split.sequences[f.name])),
                                type=pa.string())
    return pa.table(cols)


def _write_options(names: Sequence[str]) -> pacsv.WriteOptions:
    # Plain header names stay unquoted, like the public processed files (pyarrow quotes every
    # header name unless told not to; older pyarrow cannot be told).
    plain = not any(ch in n for n in names for ch in ',"\n\r')
    try:
        return pacsv.WriteOptions(quoting_style="needed",
                                  quoting_header="none" if plain else "needed")
    except TypeError:
        return pacsv.WriteOptions(quoting_style="needed")


def write_processed_csv(ds: Dataset, out_dir: str | Path,
                        splits: Sequence[str] = ("train", "val", "test")) -> list[Path]:
    """Write the given splits of `ds` to ``out_dir/<split>.csv``; returns the paths."""
    out = Path(out_dir)
    paths = []
    try:  # --write-data naming a file, or a folder that cannot be written: one line
        out.mkdir(parents=True, exist_ok=True)
        for name in splits:
            if name not in ds.splits:
                continue
            path = out / f"{name}.csv"
            table = split_table(ds, ds.splits[name])
            pacsv.write_csv(table, path, _write_options(table.column_names))
            paths.append(path)
    except OSError as exc:
        raise AutomtlError(f"{out}: cannot write the data CSVs ({exc.strerror or exc}); choose "
                           "another --write-data folder") from None
    return paths
