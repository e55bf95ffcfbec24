"""bf16 autocast vs fp32 on CPU: test/val AUC parity over seeds, before bf16 may become a default.

The throughput benchmark's data and models (Ali-CCP-schema synthetic, MMoE 8 x [256, 128] and
PLE 2 levels, embedding 16, towers [64], batch 2048, Adam 1e-3), trained by `fit` with
`train.precision` fp32 and bf16 for each seed; prints per-seed AUCs, the mean difference and its
spread, and the training samples/s of each precision.

    python benchmarks/precision.py                          # 1M rows, 1 epoch, seeds 0,1,2
    python benchmarks/precision.py --rows 20000 --seeds 0   # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import model_config

from automtl.config import DataConfig, TrainConfig, TrialConfig
from automtl.data import load_dataset
from automtl.train import fit

METRICS = ("ctr_auc", "ctcvr_auc", "cvr_auc")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default="mmoe,ple")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = load_dataset(DataConfig(name="synthetic", options={"rows": args.rows, "schema": "ali-ccp",
                                                           "n_tasks": 2}))
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{len(ds.splits['train']):,} train rows, {args.epochs} epoch(s), seeds {seeds}")
    print(f"{'model':5} {'seed':>4} {'prec':4} {'samples/s':>10} "
          + " ".join(f"{'test ' + m:>15}" for m in METRICS) + f" {'val mean_auc':>12}")
    for name in args.models.split(","):
        diffs: dict[str, list[float]] = {m: [] for m in METRICS}
        speed: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for seed in seeds:
            res = {}
            for precision in ("fp32", "bf16"):
                cfg = TrialConfig(model=model_config(name), train=TrainConfig(
                    epochs=args.epochs, batch_size=2048, lr=1e-3, patience=args.epochs, seed=seed,
                    device="cpu", precision=precision))  # type: ignore[arg-type]
                r = fit(cfg, ds)
                res[precision] = r
                speed[precision].append(r.samples_per_s)
                print(f"{name:5} {seed:4d} {precision:4} {r.samples_per_s:10,.0f} "
                      + " ".join(f"{r.test[m]:15.4f}" for m in METRICS)
                      + f" {r.val['mean_auc']:12.4f}", flush=True)
            for m in METRICS:
                diffs[m].append(res["bf16"].test[m] - res["fp32"].test[m])
        parts = []
        for m in METRICS:
            d = diffs[m]
            sd = statistics.stdev(d) if len(d) > 1 else 0.0
            parts.append(f"{m} {statistics.mean(d):+.4f} (sd {sd:.4f}, worst {min(d):+.4f})")
        ratio = statistics.mean(speed["bf16"]) / statistics.mean(speed["fp32"])
        print(f"{name}: bf16 - fp32 test AUC over {len(seeds)} seeds: {'; '.join(parts)}; "
              f"bf16 trains {ratio:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
