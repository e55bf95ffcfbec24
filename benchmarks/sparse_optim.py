"""Row-wise (lazy) Adam vs dense Adam on the throughput benchmark's models, in one process.

Runs `throughput.run_automtl` (one epoch of training + the model-only step rate on one batch +
matmul FLOPs) for each optimizer and precision, alternating, so both see the same machine load;
prints samples/s, model-only steps/s, % of the precision's measured matmul peak and test AUC.

    python benchmarks/sparse_optim.py --rows 200000 --models mmoe --precisions bf16,fp32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import throughput  # noqa: E402
from automtl.config import DataConfig  # noqa: E402
from automtl.data import load_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="mmoe,ple")
    ap.add_argument("--precisions", default="bf16,fp32")
    ap.add_argument("--optimizers", default="adam,lazy_adam")
    ap.add_argument("--model-steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=2048)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    ds = load_dataset(DataConfig(name="synthetic", options={"rows": args.rows, "schema": "ali-ccp",
                                                           "n_tasks": 2}))
    peaks = {"fp32": throughput.matmul_peak(device),
             "bf16": throughput.matmul_peak(device, torch.bfloat16)}
    print(f"machine: {throughput.machine()}; {args.threads} threads; {len(ds.splits['train']):,} "
          f"train rows; peaks fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s")
    print(f"{'model':5} {'prec':4} {'optimizer':10} {'samples/s':>10} {'model-only/s':>12} "
          f"{'% peak':>7} {'test ctr AUC':>12} {'ctcvr AUC':>9}")
    for name in args.models.split(","):
        for precision in args.precisions.split(","):
            for opt in args.optimizers.split(","):
                ns = argparse.Namespace(epochs=1, batch_size=args.batch_size,
                                        model_steps=args.model_steps, optimizer=opt)
                r = throughput.run_automtl(ds, name, ns, device, precision)
                frac = r.gflop_per_sample * r.samples_per_s / peaks[precision]
                print(f"{name:5} {precision:4} {opt:10} {r.samples_per_s:10,.0f} "
                      f"{r.model_only_per_s:12,.0f} {frac:7.1%} {r.test_auc['ctr']:12.4f} "
                      f"{r.test_auc['ctcvr']:9.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
