"""Host memory of copying a memory-mapped split to a device: whole columns (before) vs chunks.

Building a resident split on a GPU reads every column of a cached split once. The code before
`automtl.data.transfer` copied each column whole (`torch.from_numpy(copy-on-write map).to(dev)`),
so the whole column was faulted into the process's mapping before the copy returned; now each
column goes through two staging buffers of `--chunk-mb`, and the source's pages are unmapped
after every chunk. Without a GPU the device side is simulated on the CPU, in a fresh process per
run so the peaks are its own:

- before: per column, the same copy-on-write mapping as the old `DeviceSplit.from_split`, read
  whole into a destination tensor (what the CUDA driver's pageable copy reads);
- after: per column, `copy_column(..., stage=True)`: the CUDA loop itself (chunk -> staging
  buffer -> destination), with unpinned buffers.

The destination of each column is freed after it is checked (on a GPU it is device memory), so
the host figures are what the copy itself holds: peak RssFile (the source's mapped pages,
sampled every 2 ms) and the staging buffers (RssAnon beyond the destination). Runs alternate
so that both see a similar page cache.

    python benchmarks/scale.py build --rows 12000000 --layout ali-ccp --unique-chunks 2 --out D
    python benchmarks/device_copy.py --data D [--split train] [--rounds 2] [--chunk-mb 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

MB = 1 << 20


def _status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0]) * 1024
    return out


class Peaks(threading.Thread):
    """RssFile / RssAnon maxima, sampled every 2 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.file = self.anon = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.002):
            s = _status()
            self.file, self.anon = max(self.file, s["RssFile"]), max(self.anon, s["RssAnon"])

    def stop(self) -> dict[str, int]:
        self._halt.set()
        self.join()
        return {"peak_file": self.file, "peak_anon": self.anon}


def one_run(data: Path, split: str, mode: str, chunk_mb: int) -> dict[str, float]:
    """Copy every column of `split` once (see module); returns the figures."""
    import numpy as np
    import torch

    from automtl.data.columnar import load_columnar
    from automtl.data.transfer import CopyStats, copy_column, default_chunk_rows

    torch.set_num_threads(1)
    sp = load_columnar(data).splits[split]
    cols = [(sp.sparse, torch.int32), (sp.dense, torch.float32), (sp.labels, torch.float32),
            *[(v, torch.int32) for v in sp.sequences.values()]]
    stats = CopyStats()
    base = _status()
    peaks = Peaks()
    peaks.start()
    t0, c0 = time.perf_counter(), time.process_time()
    checksum = 0
    for col, dtype in cols:
        if mode == "before":
            cow = np.memmap(col.filename, dtype=col.dtype, mode="c", offset=col.offset,
                            shape=col.shape)
            dst = torch.empty(col.shape, dtype=dtype)
            dst.copy_(torch.from_numpy(cow))  # the whole column through one mapping
            del cow
        else:
            rows = default_chunk_rows(col, dtype, chunk_mb * MB)
            dst = copy_column(col, dtype, "cpu", chunk_rows=rows, stage=True, stats=stats)
        assert dst.dtype == dtype and dst.element_size() == col.itemsize  # no conversion
        checksum = zlib.crc32(dst.numpy().data, checksum)  # reads in place: no copy
        del dst
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    pk = peaks.stop()
    biggest = max(c.nbytes for c, _ in cols)
    return {"mode": mode, "wall_s": wall, "cpu_s": cpu, "split_bytes": sum(c.nbytes for c, _ in cols),
            "largest_column": biggest, "peak_file": pk["peak_file"] - base["RssFile"],
            "peak_anon_beyond": pk["peak_anon"] - base["RssAnon"] - biggest,
            "staging_bytes": stats.staging_bytes, "chunks": stats.chunks, "checksum": checksum}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a columnar cache folder")
    ap.add_argument("--split", default="train")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--chunk-mb", type=int, default=64)
    ap.add_argument("--one", choices=["before", "after"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(args.data, args.split, args.one, args.chunk_mb)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    for r in range(args.rounds):
        for mode in (("before", "after") if r % 2 == 0 else ("after", "before")):
            out = subprocess.run([sys.executable, __file__, "--data", str(args.data), "--split",
                                  args.split, "--chunk-mb", str(args.chunk_mb), "--one", mode],
                                 capture_output=True, text=True, env=env, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  round {r + 1} {mode}: {rows[-1]}", flush=True)
    assert len({row["checksum"] for row in rows}) == 1, "the copies differ"
    first = rows[0]
    print(f"\n{args.split} split of {args.data}: {first['split_bytes'] / MB:,.0f} MiB, largest "
          f"column {first['largest_column'] / MB:,.0f} MiB; chunk {args.chunk_mb} MiB; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'mode':7} {'wall s':>7} {'CPU s':>6} {'peak mapped source MiB':>23} "
          f"{'staging MiB':>12} {'anon beyond dst MiB':>20}")
    for row in rows:
        print(f"{row['mode']:7} {row['wall_s']:7.2f} {row['cpu_s']:6.2f} "
              f"{row['peak_file'] / MB:23,.0f} {row['staging_bytes'] / MB:12,.0f} "
              f"{row['peak_anon_beyond'] / MB:20,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
