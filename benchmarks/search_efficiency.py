"""Search efficiency: Pareto pruning on vs off vs random sampling, at equal trial budgets.

For each arm (tpe+pareto pruning, tpe without pruning, random without pruning) and each repeat
(sampler seed), run a fresh study on the same synthetic data in one temporary SQLite file and
measure: hypervolume of the validation front (and of the same trials' test values), total epochs
trained (rows of the per-epoch metrics table), wall time, front size, best val/test AUC per
objective and the gap to the Bayes-optimal AUC. Ratios are against the no-pruning arm of the
same repeat. Target (issue 4): pruning keeps hypervolume within 1% of no-pruning while training
<= 60% of its epochs.

    python benchmarks/search_efficiency.py --trials 20 --epochs 4 --rows 100000 --repeats 2
    python benchmarks/search_efficiency.py --trials 4 --epochs 2 --rows 4000   # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import torch

from automtl.config import DataConfig
from automtl.data import bayes_auc, load_dataset
from automtl.search import Store, StudyConfig, open_study, run_search
from automtl.search.study_config import PrunerConfig

ARMS = {
    "tpe+pareto": ("tpe", "pareto"),
    "tpe": ("tpe", "none"),
    "random": ("random", "none"),
}


def hypervolume(points: list[list[float]], reference: float = 0.5) -> float:
    """Hypervolume (maximised AUCs) dominated by `points` above `reference` on every axis."""
    from optuna._hypervolume import compute_hypervolume  # Optuna's WFG implementation

    pts = np.asarray([p for p in points if all(v > reference for v in p)], dtype=float)
    if len(pts) == 0:
        return 0.0
    # Optuna's helper minimises: negate values and the reference point.
    return float(compute_hypervolume(-pts, np.full(pts.shape[1], -reference)))


def run_arm(arm: str, seed: int, args: argparse.Namespace, storage: str) -> dict:
    sampler, pruner = ARMS[arm]
    cfg = StudyConfig(
        name=f"{arm}-s{seed}", data=DataConfig("synthetic", options={"rows": args.rows}),
        objectives=["ctr_auc", "cvr_auc"], space=args.space, epochs=args.epochs,
        n_trials=args.trials, sampler=sampler, seed=seed,  # type: ignore[arg-type]
        pruner=PrunerConfig(kind=pruner, min_epoch=1, warmup_trials=args.warmup,  # type: ignore[arg-type]
                            reduction_factor=args.eta),
        train={"patience": 1})
    t0 = time.perf_counter()
    result = run_search(cfg, storage=storage, device="cpu")
    seconds = time.perf_counter() - t0
    study = open_study(storage, cfg.name)
    front = result.front
    val_points = [[r.values[o] for o in result.objectives] for r in front]
    test_points = [[r.test.get(o, float("nan")) for o in result.objectives] for r in front]
    epochs = sum(len(h) for h in Store(storage).epoch_history(cfg.name).values())
    return {
        "arm": arm, "seed": seed, "seconds": seconds, "epochs": epochs,
        "states": result.states, "front": len(front),
        "hv_val": hypervolume(val_points), "hv_test": hypervolume(test_points),
        "best_val": {o: max(p[i] for p in val_points) for i, o in enumerate(result.objectives)},
        "best_test": {o: max(r.test.get(o, float("nan")) for r in front)
                      for o in result.objectives},
        "trials": len(study.get_trials(deepcopy=False)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--space", default="default")
    parser.add_argument("--repeats", type=int, default=1, help="sampler seeds per arm")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--eta", type=float, default=3.0)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(2)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    dataset = load_dataset(DataConfig("synthetic", options={"rows": args.rows}))  # once
    bayes = {"val": bayes_auc(dataset, "val"), "test": bayes_auc(dataset, "test")}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'bench.db'}"
        for seed in range(args.repeats):
            for arm in args.arms.split(","):
                r = run_arm(arm, seed, args, storage)
                results.append(r)
                print(json.dumps(r), flush=True)

    print(f"\n{args.trials} trials x <= {args.epochs} epochs, {args.rows} rows, space "
          f"{args.space}, {args.repeats} repeat(s); Bayes AUC val "
          f"{ {k: round(v, 4) for k, v in bayes['val'].items()} }")
    header = (f"{'arm':12s} {'HV val':>8s} {'HV test':>8s} {'HV/noprune':>10s} {'epochs':>7s} "
              f"{'ep/noprune':>10s} {'front':>5s} {'minutes':>8s}  best val / test (gap to Bayes)")
    print(header)
    summary = {}
    for arm in args.arms.split(","):
        rows = [r for r in results if r["arm"] == arm]
        base = [r for r in results if r["arm"] == "tpe"]
        hv_ratio = [r["hv_val"] / b["hv_val"] for r, b in zip(rows, base) if b["hv_val"] > 0]
        ep_ratio = [r["epochs"] / b["epochs"] for r, b in zip(rows, base) if b["epochs"] > 0]
        best = " ".join(
            f"{o}={statistics.fmean(r['best_val'][o] for r in rows):.4f}/"
            f"{statistics.fmean(r['best_test'][o] for r in rows):.4f}"
            f"({bayes['test'].get(o, float('nan')) - statistics.fmean(r['best_test'][o] for r in rows):+.4f})"
            for o in rows[0]["best_val"])
        summary[arm] = {
            "hv_val": statistics.fmean(r["hv_val"] for r in rows),
            "hv_test": statistics.fmean(r["hv_test"] for r in rows),
            "hv_ratio": statistics.fmean(hv_ratio) if hv_ratio else None,
            "epochs": statistics.fmean(r["epochs"] for r in rows),
            "epoch_ratio": statistics.fmean(ep_ratio) if ep_ratio else None,
            "front": statistics.fmean(r["front"] for r in rows),
            "minutes": statistics.fmean(r["seconds"] for r in rows) / 60,
        }
        s = summary[arm]
        print(f"{arm:12s} {s['hv_val']:8.5f} {s['hv_test']:8.5f} "
              f"{(s['hv_ratio'] or float('nan')):10.3f} {s['epochs']:7.1f} "
              f"{(s['epoch_ratio'] or float('nan')):10.3f} {s['front']:5.1f} "
              f"{s['minutes']:8.2f}  {best}")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "bayes": bayes, "runs": results, "summary": summary},
                                       indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
