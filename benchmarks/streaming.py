"""Streamed vs resident batches: the benchmark MMoE trained on the same data with every split
resident on the device and with the splits kept on the host and streamed batch by batch
(`automtl.data.StreamedSplit`), alternating in ONE process so both see the same machine load.

"Streamed" runs under the memory plan with a small simulated device budget
(`AUTOMTL_DEVICE_BUDGET`: just the model estimate + reserve + staging batches, so no split
fits and `auto` streams all of them, as on a GPU too small for the data); the plan line
of each run is printed. "Resident" runs with `--data-on device`. Per run: training samples/s
(`fit`'s epoch timing), the process CPU seconds per 1,000 samples (both threads and the
streaming thread), and the validation AUC (identical rows in identical order, so it must match).

    python benchmarks/streaming.py                      # 400k rows, bf16, 3 rounds, 2 threads
    python benchmarks/streaming.py --rows 20000 --rounds 1   # smoke run
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import throughput  # noqa: E402
from automtl.config import DataConfig, TrainConfig, TrialConfig  # noqa: E402
from automtl.data import load_dataset  # noqa: E402
from automtl.models import build_model  # noqa: E402
from automtl.train import clear_device_cache, fit  # noqa: E402
from automtl.train.memory import (  # noqa: E402
    DEVICE_BUDGET_ENV,
    RESERVE_MIN,
    STAGING_BATCHES,
    estimate_model_bytes,
    row_bytes,
)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def small_budget(ds: object, cfg: TrialConfig) -> int:
    """A device budget that holds the model (estimate + reserve + staging) and no split."""
    split = ds.splits["train"]  # type: ignore[attr-defined]
    model = build_model(cfg.model, ds.features, ds.tasks)  # type: ignore[attr-defined]
    elements = split.sparse.shape[1] + sum(v.shape[1] for v in split.sequences.values())
    est = estimate_model_bytes(model, cfg.train.batch_size, cfg.train.eval_batch_size, elements)
    staging = STAGING_BATCHES * row_bytes(split) * max(cfg.train.batch_size,
                                                       cfg.train.eval_batch_size)
    return est + RESERVE_MIN + staging


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=2048)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = load_dataset(DataConfig(name="synthetic", options={"rows": args.rows, "schema": "ali-ccp",
                                                           "n_tasks": 2}))
    cfg = TrialConfig(data=DataConfig(name="synthetic"), model=throughput.model_config("mmoe"),
                      train=TrainConfig(epochs=1, batch_size=args.batch_size, lr=1e-3, seed=0,
                                        device=args.device,
                                        precision=args.precision))  # type: ignore[arg-type]
    budget = small_budget(ds, cfg)
    handler = _Lines()
    logging.getLogger("automtl.train").addHandler(handler)
    logging.getLogger("automtl.train").setLevel(logging.INFO)
    print(f"data: {len(ds.splits['train']):,} train rows; MMoE {args.precision}, batch "
          f"{args.batch_size}, {args.threads} threads, device {args.device}; simulated budget "
          f"{budget / 2**20:.0f} MiB for the streamed runs; load {os.getloadavg()}", flush=True)
    fit(cfg, ds, data_on="device")  # warm-up (allocator, first-touch pages), not timed
    rates: dict[str, list[float]] = {"resident": [], "streamed": []}
    for r in range(args.rounds):
        for kind in ("resident", "streamed") if r % 2 == 0 else ("streamed", "resident"):
            clear_device_cache()
            if kind == "streamed":
                os.environ[DEVICE_BUDGET_ENV] = str(budget)
            else:
                os.environ.pop(DEVICE_BUDGET_ENV, None)
            handler.lines.clear()
            cpu0 = time.process_time()
            res = fit(cfg, ds, data_on="auto" if kind == "streamed" else "device")
            cpu = time.process_time() - cpu0
            rates[kind].append(res.samples_per_s)
            rows = len(ds.splits["train"])
            print(f"round {r + 1} {kind:8}: {res.samples_per_s:,.0f} samples/s, "
                  f"{cpu / rows * 1000:.3f} CPU-s per 1k samples (whole fit), val ctr AUC "
                  f"{res.val['ctr_auc']:.6f}; load {os.getloadavg()[0]:.1f}; {res.memory_plan}",
                  flush=True)
    os.environ.pop(DEVICE_BUDGET_ENV, None)
    med = {k: statistics.median(v) for k, v in rates.items()}
    best = {k: max(v) for k, v in rates.items()}
    print(f"median: resident {med['resident']:,.0f}, streamed {med['streamed']:,.0f} samples/s "
          f"= {med['streamed'] / med['resident']:.0%} (best-of: {best['streamed'] / best['resident']:.0%})"
          f"; target streamed >= 90%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
