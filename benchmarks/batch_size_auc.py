"""Test AUC of the benchmark MMoE vs training batch size (issue 14: what a GPU-sized batch costs).

The MMoE step reaches a useful share of a GPU's matmul peak only at batches of tens of thousands
of rows (`step_scaling.py`); this trains the same model (`throughput.model_config("mmoe")`) with
`fit` on the same synthetic Ali-CCP-schema data at each batch size, for the same number of epochs
(so a larger batch takes proportionally fewer steps), with the learning rate kept (`same`) or
scaled by sqrt(batch / 2048) (`sqrt`, the usual rule for Adam), and prints test AUCs beside the
Bayes-optimal AUC of the same test rows (the AUC of the generator's true probabilities).

    python benchmarks/batch_size_auc.py --rows 1000000 --batches 2048,8192,32768,65536 \
        --lr-rules same,sqrt --epochs 2 --threads 1 --precision bf16
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import throughput  # noqa: E402
from automtl.binary_metrics import roc_auc  # noqa: E402
from automtl.config import DataConfig, TrainConfig, TrialConfig  # noqa: E402
from automtl.data import load_dataset  # noqa: E402
from automtl.train import fit  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batches", default="2048,8192,32768,65536")
    ap.add_argument("--lr-rules", default="same,sqrt")
    ap.add_argument("--lr", type=float, default=1e-3, help="the lr at batch 2048")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = DataConfig(name="synthetic", options={"rows": args.rows, "schema": "ali-ccp",
                                                 "n_tasks": 2})
    ds = load_dataset(data)
    test = ds.splits["test"]
    assert test.truth is not None
    bayes = {t.name: roc_auc(test.labels[:, k], test.truth[:, k]) for k, t in enumerate(ds.tasks)}
    print(f"{len(ds.splits['train']):,} train rows, {args.epochs} epochs, {args.precision}, "
          f"{args.threads} thread(s), load {os.getloadavg()[0]:.1f}; Bayes test AUC "
          + ", ".join(f"{k} {v:.4f}" for k, v in bayes.items()), flush=True)
    print(f"{'batch':>7} {'lr rule':7} {'lr':>8} {'steps':>6} {'best ep':>7} "
          + " ".join(f"{t.name + ' AUC':>10}" for t in ds.tasks)
          + f" {'gap ctr':>8} {'CPU s':>7}", flush=True)
    for b in (int(x) for x in args.batches.split(",")):
        for rule in args.lr_rules.split(","):
            if b == 2048 and rule != args.lr_rules.split(",")[0]:
                continue  # every rule gives the base lr at 2048
            lr = args.lr * (math.sqrt(b / 2048) if rule == "sqrt" else 1.0)
            cfg = TrialConfig(data=data, model=throughput.model_config("mmoe"),
                              train=TrainConfig(epochs=args.epochs, patience=args.epochs,
                                                batch_size=b, lr=lr, seed=args.seed,
                                                device=args.device,
                                                precision=args.precision))  # type: ignore[arg-type]
            c0 = time.process_time()
            res = fit(cfg, ds)
            cpu = time.process_time() - c0
            steps = -(-len(ds.splits["train"]) // b) * res.epochs_run
            aucs = [res.test[f"{t.name}_auc"] for t in ds.tasks]
            print(f"{b:7,} {rule:7} {lr:8.2e} {steps:6,} {res.best_epoch:7} "
                  + " ".join(f"{a:10.4f}" for a in aucs)
                  + f" {bayes[ds.tasks[0].name] - aucs[0]:8.4f} {cpu:7.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
