"""Study level (issue 16): `automtl search` with `conditioned` in the space vs without, at equal
total training epochs; hypervolume of the final front, several repeats.

Two arms share one search space except for the task weighting:

- ``fixed``: ``loss.weighting.scheme: fixed`` with every task's weight searched in [0.25, 4]
  (log): each trial is one point of the trade-off;
- ``+conditioned``: the same choice plus ``conditioned`` (Dirichlet concentration and FiLM
  sites searched; draws per row): a conditioned trial gives a curve of `--k` sweep points and
  the study front is the non-dominated set over all points.

Same data, sampler (TPE), seed per repeat, trials and epochs per trial, no pruning, so both arms
train the same number of epochs (counted from the per-epoch table and printed; a conditioned
trial's sweep passes are evaluation, not training). Measured per arm and repeat: the hypervolume
(reference AUC 0.5) of the final validation front (over points where there are conditioned
trials) and of the same points' test values (the fair one: a front of many points picked on
validation is optimistic on validation), front size, epochs trained, minutes.

    python benchmarks/conditioned_study.py --rows 20000 --trials 8 --epochs 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch
import yaml

from automtl.config import DataConfig
from automtl.search import Store, StudyConfig, open_study, run_search
from automtl.search.study_config import PrunerConfig

OBJ = ["ctr_auc", "cvr_auc"]


def space(conditioned: bool, k: int) -> dict:
    """The arm's search space: small SharedBottom / MMoE / PLE, lr, and the task weighting."""
    weighting = {"fixed": {"loss.weighting.weights.{task}": {"float": [0.25, 4.0], "log": True}}}
    if conditioned:
        weighting["conditioned"] = {
            "loss.weighting.sweep_points": k,
            "loss.weighting.draw": "row",
            "loss.weighting.concentration": {"float": [0.5, 2.0], "log": True},
            "loss.weighting.film": {"choices": [["bottom"], ["bottom", "experts"]]},
        }
    return {
        "name": "cond-study" if conditioned else "fixed-study",
        "params": {
            "model.arch": {"choices": {
                "shared_bottom": {"model.bottom_dims": {"choices": [[64], [128, 64]]}},
                "mmoe": {"model.n_experts": {"int": [2, 6]},
                         "model.expert_dims": {"choices": [[64], [128, 64]]}},
                "ple": {"model.n_shared_experts": {"int": [1, 2]},
                        "model.n_specific_experts": 1,
                        "model.expert_dims": {"choices": [[64], [128, 64]]}},
            }},
            "model.embedding_dim": {"choices": [8, 16]},
            "model.tower_dims": [32],
            "loss.weighting.scheme": {"choices": weighting},
            "train.lr": {"float": [1.0e-3, 1.0e-2], "log": True},
            "train.batch_size": 512,
        },
    }


def hypervolume(points: list[list[float]], reference: float = 0.5) -> float:
    """Area (maximised AUCs) dominated by `points` above `reference` on both axes."""
    pts = sorted((p for p in points if all(v > reference for v in p)), reverse=True)
    area, best_y = 0.0, reference
    for x, y in pts:
        if y > best_y:
            area += (x - reference) * (y - best_y)
            best_y = y
    return area


def run_arm(arm: str, seed: int, args: argparse.Namespace, storage: str, tmp: Path) -> dict:
    path = tmp / f"{arm}.yaml"
    path.write_text(yaml.safe_dump(space(arm == "+conditioned", args.k)), encoding="utf-8")
    name = f"{arm.strip('+')}-s{seed}"
    cfg = StudyConfig(
        name=name, data=DataConfig("synthetic", options={"rows": args.rows, "rho": args.rho}),
        objectives=list(OBJ), space=str(path), epochs=args.epochs, n_trials=args.trials,
        sampler="tpe", seed=seed, pruner=PrunerConfig(kind="none"),  # type: ignore[arg-type]
        train={"patience": args.epochs})
    t0 = time.perf_counter()
    result = run_search(cfg, storage=storage, device="cpu")
    seconds = time.perf_counter() - t0
    study = open_study(storage, name)
    store = Store(storage)
    front = store.point_front(study) if store.sweeps(name) else result.front
    epochs = sum(len(h) for h in store.epoch_history(name).values())
    store.dispose()
    schemes = [t.user_attrs.get("config", {}).get("loss", {}).get("weighting", {}).get("scheme")
               for t in study.get_trials(deepcopy=False)]
    val = [[r.values[o] for o in OBJ] for r in front]
    test = [[r.test.get(o, float("nan")) for o in OBJ] for r in front]
    return {"arm": arm, "seed": seed, "seconds": seconds, "epochs": epochs,
            "conditioned_trials": schemes.count("conditioned"), "front": len(front),
            "front_points_from_conditioned": sum(1 for r in front if r.weights),
            "hv_val": hypervolume(val), "hv_test": hypervolume(test),
            "best_val": [max(p[i] for p in val) for i in range(2)],
            "best_test": [max(p[i] for p in test) for i in range(2)],
            "states": result.states}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--rho", type=float, default=0.5)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--k", type=int, default=11)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="repeats use seeds first..; run "
                    "repeats as parallel processes with --repeats 1 --first-seed N")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'bench.db'}"
        for seed in range(args.first_seed, args.first_seed + args.repeats):
            for arm in ("fixed", "+conditioned"):
                r = run_arm(arm, seed, args, storage, Path(tmp))
                results.append(r)
                print(json.dumps(r), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"\n{args.rows} rows (rho {args.rho}), {args.trials} trials x {args.epochs} epochs, "
          f"K {args.k}, TPE, no pruning, {args.repeats} repeats")
    print("| arm | repeat | conditioned trials | epochs | front points (from conditioned) | "
          "HV val | HV test | minutes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['arm']} | {r['seed']} | {r['conditioned_trials']} | {r['epochs']} | "
              f"{r['front']} ({r['front_points_from_conditioned']}) | {r['hv_val']:.5f} | "
              f"{r['hv_test']:.5f} | {r['seconds'] / 60:.1f} |")
    for arm in ("fixed", "+conditioned"):
        rows = [r for r in results if r["arm"] == arm]
        print(f"| {arm} | mean | {statistics.fmean(r['conditioned_trials'] for r in rows):.1f} | "
              f"{statistics.fmean(r['epochs'] for r in rows):.0f} | "
              f"{statistics.fmean(r['front'] for r in rows):.1f} | "
              f"{statistics.fmean(r['hv_val'] for r in rows):.5f} | "
              f"{statistics.fmean(r['hv_test'] for r in rows):.5f} | "
              f"{statistics.fmean(r['seconds'] for r in rows) / 60:.1f} |")
    wins = sum(c["hv_test"] > f["hv_test"] for f, c in zip(results[::2], results[1::2]))
    print(f"+conditioned has the higher test hypervolume in {wins} of {args.repeats} repeats")


if __name__ == "__main__":
    main()
