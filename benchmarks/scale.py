"""Ali-CCP scale: a 40M-row synthetic Ali-CCP-schema data set, memory-mapped, trained on CPU.

Measures (results go to benchmarks/RESULTS.md by hand):

- build: 40M rows written in 1M-row chunks (`generate_synthetic(schema="ali-ccp", seed=i)`, each
  chunk split 80/10/10) with the data layer's `ColumnWriter`, i.e. the same columnar format the
  load cache memory-maps (a one-shot 40M generation would need ~3x the data in RAM);
- train (in a fresh process, so its RSS is its own): `load_columnar` + `fit` of the benchmark
  MMoE on the FULL train split for `--steps` steps (stopped by a callback) + prediction of the
  full validation split; peak RSS (VmHWM) split into private (RssAnon, sampled) and file-backed
  pages of the memory maps (RssFile: page cache, reclaimable); then one whole epoch on a
  `--fraction-rows` slice of the same files (samples/s, test AUC), since a 32M-row epoch takes
  ~30 min on 2 cores;
- prepare: raw Ali-CCP prepare throughput (`automtl data prepare`) on a generated multi-GB raw
  folder (tests/datagen.py writer; deleted afterwards).

    python benchmarks/scale.py build --rows 40000000 --out /tmp/automtl-40m
    python benchmarks/scale.py build --rows 85300000 --layout ali-ccp --unique-chunks 4 --out D
    python benchmarks/scale.py train --data /tmp/automtl-40m --steps 300 --fraction-rows 2000000
    python benchmarks/scale.py prepare --raw-gb 2
    python benchmarks/scale.py build --rows 400000 --chunk 100000 --out /tmp/s && \\
        python benchmarks/scale.py train --data /tmp/s --steps 5 --fraction-rows 100000   # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from automtl.config import ModelConfig, TrainConfig, TrialConfig
from automtl.data.columnar import ColumnWriter, _column_names, load_columnar
from automtl.data.schema import Dataset
from automtl.data.synthetic import generate_synthetic
from automtl.train import Callback

GB = 1 << 30


def _status() -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon, RssFile of this process in bytes (Linux)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0]) * 1024
    return out


class _PeakSampler(threading.Thread):
    """Samples RssAnon / RssFile every 0.2 s and keeps the maxima."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_anon = self.peak_file = 0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(0.2):
            s = _status()
            self.peak_anon = max(self.peak_anon, s["RssAnon"])
            self.peak_file = max(self.peak_file, s["RssFile"])

    def stop(self) -> None:
        self._stop.set()


# The released Ali-CCP's proportions: 42.3M training impressions, of which the last ~10% are
# held out as validation (38.07M train + 4.23M val), and 43.0M test impressions.
ALI_CCP_SPLITS = {"train": 38.07, "val": 4.23, "test": 43.0}


def _whole(ds: Dataset) -> dict[str, "np.ndarray"]:
    """A chunk's rows (its 80/10/10 splits concatenated), column by column."""
    import numpy as np

    cols = [_column_names(ds.splits[s]) for s in ("train", "val", "test")]
    return {c: np.concatenate([part[c] for part in cols]) for c in cols[0]}


def _cut(whole: dict[str, "np.ndarray"], layout: str) -> dict[str, dict[str, "np.ndarray"]]:
    """A chunk's rows cut into splits: Ali-CCP's proportions ("ali-ccp") or 80/10/10."""
    n = len(whole["labels"])
    if layout == "ali-ccp":
        total = sum(ALI_CCP_SPLITS.values())
        a = round(n * ALI_CCP_SPLITS["train"] / total)
        b = a + round(n * ALI_CCP_SPLITS["val"] / total)
    else:
        a = round(0.8 * n)  # the generator's own cut, so a generated chunk is written as before
        b = a + round(0.1 * n)
    cut = {"train": slice(0, a), "val": slice(a, b), "test": slice(b, n)}
    return {s: {c: arr[sl] for c, arr in whole.items()} for s, sl in cut.items()}


def build(out: Path, rows: int, chunk: int, layout: str = "80/10/10",
          unique_chunks: int = 0) -> None:
    """Write `rows` synthetic Ali-CCP-schema rows to `out` in `chunk`-row pieces; `layout`
    "ali-ccp" splits them in the released data set's proportions (45/5/50) instead of 80/10/10.
    `unique_chunks` K > 0: only the first K chunks are generated; chunk i >= K is chunk i mod K
    with its rows in a fresh random order (the generator costs ~8 CPU-s per 1M rows, which an
    85M-row cache on a shared machine cannot afford; a row-permuted copy has the same columns,
    id distributions and access pattern, which is what a memory/speed run measures)."""
    import numpy as np

    t0, cpu0 = time.perf_counter(), time.process_time()
    writer = ColumnWriter(out)
    ds: Dataset | None = None
    kept: list[dict[str, np.ndarray]] = []
    for i, start in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - start)
        if unique_chunks and i >= unique_chunks and len(kept[i % unique_chunks]["labels"]) >= n:
            src = kept[i % unique_chunks]
            order = np.random.default_rng(i).permutation(len(src["labels"]))[:n]
            whole = {c: arr[order] for c, arr in src.items()}
        else:
            ds = generate_synthetic(rows=n, n_tasks=2, seed=i, schema="ali-ccp")
            whole = _whole(ds)
            if unique_chunks and i < unique_chunks:
                kept.append(whole)
        parts = _cut(whole, layout)
        for split_name, columns in parts.items():
            for col, arr in columns.items():
                writer.append(split_name, col, arr)
        del whole, parts
        print(f"  chunk {i + 1}: {start + n:,} rows, {time.perf_counter() - t0:.0f} s", flush=True)
    assert ds is not None
    seqs = list(next(iter(ds.splits.values())).sequences)
    writer.finish(ds.features, ds.tasks, "synthetic",
                  {"source": f"benchmarks/scale.py: {rows} rows in {chunk}-row chunks"
                             + (f", {unique_chunks} generated" if unique_chunks else "")}, seqs)
    size = sum(p.stat().st_size for p in out.rglob("*.bin"))
    secs = time.perf_counter() - t0
    print(f"build: {rows:,} rows, {size / GB:.2f} GiB on disk in {secs:.0f} s "
          f"({rows / secs:,.0f} rows/s; CPU {time.process_time() - cpu0:.0f} s)")


class _StopAfter(Callback):
    """Stops `fit` after `steps` training steps (raises `_Stopped`), keeping the model."""

    class Stopped(Exception):
        pass

    def __init__(self, steps: int) -> None:
        self.steps, self.model, self.t0, self.seconds = steps, None, 0.0, 0.0
        self.cpu0, self.done = 0.0, 0

    def on_train_start(self, model: torch.nn.Module) -> None:
        self.model, self.t0 = model, time.perf_counter()

    def on_batch_end(self, epoch: int, step: int, n_steps: int) -> None:
        if step == 3:  # the first steps warm up (allocator, page faults of the first batches)
            self.t0, self.cpu0 = time.perf_counter(), time.process_time()
        if step > 3 and step % 1000 == 0:  # progress, so a run cut short still tells its rate
            wall, cpu = time.perf_counter() - self.t0, time.process_time() - self.cpu0
            st = _status()
            print(f"  step {step:,}/{n_steps:,}: {(step - 3) * 2048 / wall:,.0f} samples/s, "
                  f"{cpu / (step - 3) * 1000:.0f} CPU-ms per step (steps 4-{step}); RSS "
                  f"{st['VmRSS'] / GB:.2f} GiB (anon {st['RssAnon'] / GB:.2f}, file "
                  f"{st['RssFile'] / GB:.2f}); load {os.getloadavg()[0]:.1f}", flush=True)
        last = min(self.steps, n_steps) if self.steps else n_steps
        stop_file = os.environ.get("SCALE_STOP_FILE")  # touch it to end a long run early
        if step >= last or (stop_file and step > 3 and os.path.exists(stop_file)):
            self.seconds, self.done = time.perf_counter() - self.t0, step
            raise self.Stopped

    def on_epoch_end(self, epoch: int, record: object) -> None:
        pass


def _mmoe(epochs: int, batch: int, precision: str) -> TrialConfig:
    model = ModelConfig(arch="mmoe", n_experts=8, embedding_dim=16, expert_dims=[256, 128],
                        tower_dims=[64], seq_pooling="mean")  # type: ignore[arg-type]
    return TrialConfig(model=model, train=TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3,
                                                      patience=epochs, seed=0, device="cpu",
                                                      precision=precision))  # type: ignore[arg-type]


def _slice(ds: Dataset, rows: int) -> Dataset:
    """The first `rows` rows (80/10/10 over splits) as views of the same memory maps."""
    n = {"train": int(rows * 0.8), "val": rows // 10, "test": rows // 10}

    def cut(split, k):  # type: ignore[no-untyped-def]
        return dataclasses.replace(
            split, sparse=split.sparse[:k], dense=split.dense[:k], labels=split.labels[:k],
            truth=None if split.truth is None else split.truth[:k],
            sequences={name: a[:k] for name, a in split.sequences.items()})

    return dataclasses.replace(ds, splits={s: cut(sp, n[s]) for s, sp in ds.splits.items()})


class _PlanLine(logging.Handler):
    """Keeps the memory plan's log line (logger "automtl.train")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.line = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("data plan"):
            self.line = record.getMessage()


def train(data: Path, steps: int, fraction_rows: int, threads: int, precision: str,
          budget: str | None = None, data_on: str = "auto", readahead: bool = True,
          validate: bool = True) -> None:
    """RSS of load + `steps` steps on the full data + validation pass; one epoch on a slice.
    `budget`: a simulated device budget (`AUTOMTL_DEVICE_BUDGET`, e.g. 24G): the memory plan
    decides which split is resident and which is streamed, as on a GPU of that size."""
    from automtl.train import clear_device_cache, device_split, fit, predict_logits
    from automtl.train.metrics import compute_metrics

    import automtl.data.pages as pages

    pages.READ_AHEAD = readahead  # reads in flight for a split that does not fit (issue 14)
    torch.set_num_threads(threads)
    if budget:
        os.environ["AUTOMTL_DEVICE_BUDGET"] = budget
    plan = _PlanLine()
    logging.getLogger("automtl.train").addHandler(plan)
    logging.getLogger("automtl.train").setLevel(logging.INFO)
    sampler = _PeakSampler()
    sampler.start()
    t0 = time.perf_counter()
    ds = load_columnar(data)
    load_s = time.perf_counter() - t0
    n_train = len(ds.splits["train"])
    stop = _StopAfter(steps)
    cpu0 = time.process_time()
    try:
        fit(_mmoe(1, 2048, precision), ds, callbacks=[stop], data_on=data_on)
    except _StopAfter.Stopped:  # fit ends an epoch with this too, before the validation pass
        clear_device_cache()  # drop the train split (resident or streamed) and its mapped pages
        gc.collect()
    train_cpu = time.process_time() - cpu0
    print(f"budget {budget or 'unlimited'}, --data-on {data_on}: {plan.line}")
    steps = stop.done
    print(f"{steps} steps: CPU {train_cpu:.0f} s ({train_cpu / steps * 1000:.0f} CPU-ms per step "
          f"incl. set-up; {(time.process_time() - stop.cpu0) / (steps - 3) * 1000:.0f} over "
          f"steps 4-{steps}), wall {stop.seconds:.0f} s; load average {os.getloadavg()[0]:.1f}")
    rate = (steps - 3) * 2048 / max(stop.seconds, 1e-9)
    print(f"training: {rate:,.0f} samples/s; peak RSS so far (VmHWM) {_status()['VmHWM'] / GB:.2f}"
          f" GiB: RssAnon peak {sampler.peak_anon / GB:.2f} GiB, RssFile peak "
          f"{sampler.peak_file / GB:.2f} GiB", flush=True)
    if not validate:
        sampler.stop()
        return
    t1 = time.perf_counter()
    val = device_split(ds, "val", torch.device("cpu"))
    assert stop.model is not None
    logits = predict_logits(stop.model, val, [t.name for t in ds.tasks], 16384, precision)
    metrics = compute_metrics(logits.numpy(), val.labels.numpy(), ds.tasks)
    val_s = time.perf_counter() - t1
    val.release_pages()
    st = _status()
    sampler.stop()
    print(f"full data: {n_train:,} train / {len(val):,} val rows; load (memory map) {load_s:.2f} s; "
          f"{steps} steps: {rate:,.0f} samples/s; val prediction {val_s:.0f} s "
          f"(ctr AUC {metrics['ctr_auc']:.4f})")
    print(f"peak RSS (VmHWM) {st['VmHWM'] / GB:.2f} GiB: private (RssAnon) peak "
          f"{sampler.peak_anon / GB:.2f} GiB, file-backed pages of the maps (RssFile) peak "
          f"{sampler.peak_file / GB:.2f} GiB; now RSS {st['VmRSS'] / GB:.2f} GiB")
    if fraction_rows:
        part = _slice(ds, fraction_rows)
        res = fit(_mmoe(1, 2048, precision), part)
        print(f"one epoch on {len(part.splits['train']):,} train rows of the same files: "
              f"{res.history[0].seconds:.0f} s, {res.samples_per_s:,.0f} samples/s; test ctr AUC "
              f"{res.test['ctr_auc']:.4f}, ctcvr AUC {res.test['ctcvr_auc']:.4f}; "
              f"extrapolated full epoch {n_train / res.samples_per_s / 60:.0f} min")
    print(f"peak RSS at the end (VmHWM) {_status()['VmHWM'] / GB:.2f} GiB")


def prepare(raw_gb: float, threads: int) -> None:
    """Raw Ali-CCP prepare throughput on a generated ~`raw_gb` GB raw folder (then deleted)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT / "tests"))
    from data_load import bench_prepare  # the data layer's benchmark, scaled up

    torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="automtl-prepare-"))
    try:
        lines = int(raw_gb * 1e9 / 215)  # ~215 bytes per raw line (data_load measurement)
        r = bench_prepare(work, lines)
        print(f"prepare: {r['lines']:,.0f} lines ({r['mb'] / 1000:.2f} GB) in {r['seconds']:.0f} s: "
              f"{r['lines_per_s']:,.0f} lines/s, {r['mb_per_s']:.1f} MB/s; CPU {r['cpu_s']:.0f} s "
              f"({r['lines_per_cpu_s']:,.0f} lines per CPU-second)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--rows", type=int, default=40_000_000)
    b.add_argument("--chunk", type=int, default=1_000_000)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--layout", default="80/10/10", choices=["80/10/10", "ali-ccp"],
                   help="split proportions: 80/10/10, or Ali-CCP's 38.07/4.23/43.0")
    b.add_argument("--unique-chunks", type=int, default=0,
                   help="generate only the first K chunks; the others are row-permuted copies")
    t = sub.add_parser("train")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--steps", type=int, default=300, help="0: one whole epoch")
    t.add_argument("--fraction-rows", type=int, default=2_000_000)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    t.add_argument("--budget", default=None,
                   help="simulated device budget for the memory plan (e.g. 24G)")
    t.add_argument("--data-on", default="auto", choices=["auto", "device", "host"])
    t.add_argument("--skip-val", action="store_true", help="stop after the training steps")
    t.add_argument("--readahead", default="on", choices=["on", "off"],
                   help="off: no reads in flight for the next batch (automtl.data.pages)")
    p = sub.add_parser("prepare")
    p.add_argument("--raw-gb", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("AUTOMTL_CACHE", "off")
    if args.cmd == "build":
        build(args.out, args.rows, args.chunk, args.layout, args.unique_chunks)
    elif args.cmd == "train":
        train(args.data, args.steps, args.fraction_rows, args.threads, args.precision,
              args.budget, args.data_on, args.readahead == "on", not args.skip_val)
    else:
        prepare(args.raw_gb, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
