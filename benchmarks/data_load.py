"""Data-loading speed: raw Ali-CCP prepare (lines/s), cache load (rows/s), batch iteration (rows/s).

Peers run in the same process: the cache load is compared with generating the same synthetic
data again, and device-resident batching with a torch DataLoader over the same tensors
(default per-sample collation). Results go to benchmarks/RESULTS.md, section "Data loading".

    python benchmarks/data_load.py                 # 1M synthetic rows, 1M raw skeleton lines
    python benchmarks/data_load.py --rows 50000 --raw-lines 50000 --no-write   # quick check
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the raw-file generator of the tests

from datagen import write_raw_ali_ccp  # noqa: E402

from automtl.config import DataConfig  # noqa: E402
from automtl.data import DeviceSplit, clear_memo, iter_batches, load_dataset  # noqa: E402
from automtl.data.ali_ccp_raw import prepare_ali_ccp  # noqa: E402
from automtl.data.datasets import SYNTHETIC_CACHE_ROWS  # noqa: E402
from automtl.data.synthetic import generate_synthetic  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_prepare(work: Path, lines: int) -> dict[str, float]:
    """Prepare a raw folder whose train skeleton has `lines` lines (repeated 50k-line block)."""
    block = min(lines, 50_000)
    raw = write_raw_ali_ccp(work / "raw", n_train=block, n_test=block // 10, n_users=5_000,
                            n_items=20_000, seq_max=40, keep_rows=False).folder
    sk = raw / "sample_skeleton_train.csv"
    data = sk.read_bytes()
    with sk.open("wb") as fh:
        for _ in range(max(1, lines // block)):
            fh.write(data)
    total_bytes = sum(p.stat().st_size for p in raw.iterdir())
    cpu0 = time.process_time()
    report, secs = _timed(lambda: prepare_ali_ccp(raw, work / "prepared"))
    cpu = time.process_time() - cpu0
    n_lines = sum(report.lines.values())
    return {"lines": n_lines, "mb": total_bytes / 1e6, "seconds": secs, "cpu_s": cpu,
            "lines_per_s": n_lines / secs, "mb_per_s": total_bytes / 1e6 / secs,
            "lines_per_cpu_s": n_lines / cpu}


def bench_load(rows: int) -> dict[str, float]:
    """Synthetic `rows`: generate (peer), first load (generate + write cache), cached load."""
    opts = {"rows": rows, "seed": 0}
    cpu0 = time.process_time()
    _, gen_s = _timed(lambda: generate_synthetic(**opts))
    gen_cpu = time.process_time() - cpu0
    clear_memo()
    _, first_s = _timed(lambda: load_dataset(DataConfig(options=opts)))
    clear_memo()
    ds, hit_s = _timed(lambda: load_dataset(DataConfig(options=opts)))
    assert str(ds.meta.get("cache", "")).startswith("hit"), ds.meta.get("cache")

    def touch() -> int:  # read every byte of every column (memory maps are lazy)
        n = 0
        for s in ds.splits.values():
            for a in (s.sparse, s.dense, s.labels, *s.sequences.values()):
                n += int(np.asarray(a).sum() != 0)
        return n

    _, touch_s = _timed(touch)
    return {"rows": rows, "generate_s": gen_s, "generate_cpu_s": gen_cpu,
            "first_load_s": first_s, "cache_load_s": hit_s,
            "cache_rows_per_s": rows / hit_s, "read_all_s": hit_s + touch_s,
            "read_all_rows_per_s": rows / (hit_s + touch_s), "speedup_vs_generate": gen_s / hit_s}


def bench_batches(rows: int, batch_size: int, peer_rows: int) -> dict[str, float]:
    """One epoch of shuffled batches: device-resident slicing vs a torch DataLoader peer."""
    ds = load_dataset(DataConfig(options={"rows": rows, "seed": 0}))
    split = ds.splits["train"]
    dev, to_dev_s = _timed(lambda: DeviceSplit.from_split(split, "cpu"))
    gen = torch.Generator().manual_seed(0)

    def epoch(shuffle: bool) -> int:
        n = 0
        for b in iter_batches(dev, batch_size, shuffle=shuffle, generator=gen):
            n += len(b)
        return n

    n_shuf, shuf_s = _timed(lambda: epoch(True))
    n_seq, seq_s = _timed(lambda: epoch(False))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # gathers are memory-bound; on a busy CPU extra threads only wait
    n_one, one_s = _timed(lambda: epoch(True))
    torch.set_num_threads(threads)
    k = min(peer_rows, len(dev))
    tensors = [dev.sparse[:k], dev.dense[:k], *[v[:k] for v in dev.sequences.values()],
               dev.labels[:k]]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensors),
                                         batch_size=batch_size, shuffle=True)
    n_peer, peer_s = _timed(lambda: sum(len(b[-1]) for b in loader))
    ours = n_shuf / shuf_s
    peer = n_peer / peer_s
    return {"rows": n_shuf, "batch_size": batch_size, "to_device_s": to_dev_s,
            "shuffled_rows_per_s": ours, "contiguous_rows_per_s": n_seq / seq_s,
            "shuffled_1thread_rows_per_s": n_one / one_s,
            "dataloader_rows_per_s": peer, "speedup_vs_dataloader": ours / peer}


def write_results(text: str, path: Path) -> None:
    """Replace (or append) the "## Data loading" section of RESULTS.md."""
    old = path.read_text() if path.is_file() else "# Benchmark results\n"
    start = old.find("## Data loading")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + 3)
        new = old[:start] + text + (old[nxt + 1:] if nxt >= 0 else "")
    path.write_text(new.rstrip("\n") + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="synthetic rows")
    ap.add_argument("--raw-lines", type=int, default=1_000_000, help="raw skeleton lines")
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--peer-rows", type=int, default=200_000, help="rows for the DataLoader peer")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--no-write", action="store_true", help="print only, keep RESULTS.md")
    args = ap.parse_args()
    if args.rows < SYNTHETIC_CACHE_ROWS:
        ap.error(f"--rows must be >= {SYNTHETIC_CACHE_ROWS} "
                 "(smaller synthetic sets are not cached)")
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="automtl-bench-"))
    os.environ["AUTOMTL_CACHE"] = str(work / "cache")
    try:
        prep = bench_prepare(work, args.raw_lines)
        print("prepare", prep)
        load = bench_load(args.rows)
        print("load", load)
        bat = bench_batches(args.rows, args.batch_size, args.peer_rows)
        print("batches", bat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"
    load_avg = os.getloadavg()[0]
    text = f"""## Data loading

`python benchmarks/data_load.py --rows {args.rows} --raw-lines {args.raw_lines} --threads {args.threads}` on {cpu}
(shared machine, load average {load_avg:.1f} at the end: wall times include waiting for a CPU;
torch threads {args.threads}; {time.strftime('%Y-%m-%d')}).

| measure | result |
|---|---|
| raw Ali-CCP prepare | {prep['lines']:,} lines ({prep['mb']:.0f} MB) in {prep['seconds']:.1f} s: **{prep['lines_per_s']:,.0f} lines/s** ({prep['mb_per_s']:.1f} MB/s); CPU time {prep['cpu_s']:.1f} s = {prep['lines_per_cpu_s']:,.0f} lines per CPU-second |
| synthetic generate (peer) | {load['rows']:,} rows in {load['generate_s']:.2f} s (CPU time {load['generate_cpu_s']:.2f} s) |
| first load (generate + write cache) | {load['first_load_s']:.2f} s |
| cache load (memory map) | {load['cache_load_s'] * 1000:.1f} ms: **{load['cache_rows_per_s']:,.0f} rows/s** ({load['speedup_vs_generate']:.0f}x faster than generating) |
| cache load + read every column | {load['read_all_s']:.2f} s: {load['read_all_rows_per_s']:,.0f} rows/s |
| batch iteration, shuffled (batch {bat['batch_size']}) | **{bat['shuffled_rows_per_s']:,.0f} rows/s** ({bat['rows']:,} train rows; to-device copy {bat['to_device_s']:.2f} s) |
| batch iteration, shuffled, 1 torch thread | {bat['shuffled_1thread_rows_per_s']:,.0f} rows/s |
| batch iteration, contiguous | {bat['contiguous_rows_per_s']:,.0f} rows/s |
| torch DataLoader peer (same tensors, shuffled) | {bat['dataloader_rows_per_s']:,.0f} rows/s; device-resident batching is **{bat['speedup_vs_dataloader']:.0f}x** faster |
"""
    print(text)
    if not args.no_write:
        write_results(text, ROOT / "benchmarks" / "RESULTS.md")


if __name__ == "__main__":
    main()
