"""Cascade benchmark (issue 17): ESMM vs ESCM2-IPS vs ESCM2-DR vs DCMT vs ESM2 on synthetic data
with selection bias, scored against the known truth.

Data: synthetic, 3 tasks (ctr -> ctcart -> ctcvr, so ESM2 has its D-action), option
`selection_bias` (clicks land where conversion is likely). Each system is its shipped example
config (`studies/examples/{esmm,escm2_ips,escm2_dr,dcmt,esm2}.yaml`: towers on shared embeddings)
on this data, trained by `automtl.train.fit`. On the test split:

- `cvr AUC (all, truth)`: the predicted post-click CVR p(ctcvr)/p(ctr) of EVERY impression,
  ranked against potential-outcome labels y ~ Bernoulli(p(purchase | do(click), x)) drawn once per
  row from the generator's truth (`automtl.data.do_click_truth`): what the CVR tower is for;
- `cvr AUC (clicked)`: the same score on clicked rows against the observed purchase (the usual,
  selection-biased view);
- `cvr bias`: mean predicted CVR / mean true CVR over all impressions (ESCM2's IEB: > 1 means
  overestimation);
- ctr / ctcvr AUC (test, observed labels); the `truth` row scores the generator's probabilities.

    python benchmarks/cascade.py                                   # 200k rows, 3 seeds (slow)
    python benchmarks/cascade.py --rows 30000 --epochs 2 --seeds 0 # smoke run
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from automtl.config import DataConfig, TrialConfig
from automtl.data import do_click_truth, load_dataset
from automtl.train import device_split, fit
from automtl.train.metrics import predict_logits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import example_config  # noqa: E402  (shared helper of the benchmark scripts)

SYSTEMS = ("esmm", "escm2_ips", "escm2_dr", "dcmt", "esm2")
COLUMNS = ("cvr_all", "cvr_clicked", "cvr_bias", "ctr_auc", "ctcvr_auc")
HEADER = ("cvr AUC (all, truth)", "cvr AUC (clicked)", "cvr bias", "ctr AUC", "ctcvr AUC")


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def score(logits: np.ndarray, labels: np.ndarray, true_cvr: np.ndarray,
          potential: np.ndarray) -> dict[str, float]:
    """The benchmark's measures from test logits [N, T] (columns ctr, ..., ctcvr)."""
    cvr = np.exp(_log_sigmoid(logits[:, -1]) - _log_sigmoid(logits[:, 0]))
    clicked = labels[:, 0] > 0.5
    return {
        "cvr_all": float(roc_auc_score(potential, cvr)),
        "cvr_clicked": float(roc_auc_score(labels[clicked, -1], cvr[clicked])),
        "cvr_bias": float(cvr.mean() / true_cvr.mean()),
        "ctr_auc": float(roc_auc_score(labels[:, 0], logits[:, 0])),
        "ctcvr_auc": float(roc_auc_score(labels[:, -1], logits[:, -1])),
    }


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--selection-bias", type=float, default=1.5)
    ap.add_argument("--seeds", default="0,1,2", help="data and training seeds")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    ap.add_argument("--batch-size", type=int, default=None, help="override train.batch_size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--markdown", default=None, help="write the result table to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.systems.split(",")
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        ap.error(f"unknown system {unknown[0]!r}; use {', '.join(SYSTEMS)}")
    print(f"data: synthetic, {args.rows:,} rows, 3 tasks, selection_bias={args.selection_bias}; "
          f"seeds {seeds}; {args.threads} threads", flush=True)

    results: dict[str, dict[str, list[float]]] = {n: {c: [] for c in COLUMNS} for n in names}
    results["truth"] = {c: [] for c in COLUMNS}
    for seed in seeds:
        data_cfg = DataConfig(name="synthetic", options={
            "rows": args.rows, "n_tasks": 3, "seed": seed, "selection_bias": args.selection_bias})
        ds = load_dataset(data_cfg)
        test = ds.splits["test"]
        true_cvr = do_click_truth(test)
        potential = (np.random.default_rng([seed, 17]).random(len(true_cvr)) < true_cvr)
        truth_logits = np.log(test.truth.astype(np.float64)) - np.log1p(-test.truth)
        for k, v in score(truth_logits, test.labels, true_cvr, potential).items():
            results["truth"][k].append(v)
        for name in names:
            base, _ = example_config(name)
            cfg: TrialConfig = copy.deepcopy(base)
            cfg.data = data_cfg
            cfg.loss.weighting.weights = {}  # the examples' per-task weights name their own tasks
            cfg.train.seed = seed
            cfg.train.device = "cpu"
            for key in ("epochs", "batch_size"):
                if getattr(args, key) is not None:
                    setattr(cfg.train, key, getattr(args, key))
            r = fit(cfg, ds)
            split = device_split(ds, "test", torch.device("cpu"))
            logits = predict_logits(r.model, split, [t.name for t in ds.tasks],
                                    cfg.train.eval_batch_size).numpy()
            s = score(logits, test.labels, true_cvr, potential)
            for k, v in s.items():
                results[name][k].append(v)
            print(f"  seed {seed} {name:9}: " + " ".join(f"{k}={v:.4f}" for k, v in s.items())
                  + f" | best epoch {r.best_epoch} | {r.seconds:.0f} s", flush=True)

    lines = ["| system | " + " | ".join(HEADER) + " |", "|" + "---|" * (len(HEADER) + 1)]
    for name in [*names, "truth"]:
        lines.append(f"| {name} | " + " | ".join(_ms(results[name][c]) for c in COLUMNS) + " |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
