"""Search efficiency: samplers and Pareto pruning at equal trial budgets, hypervolume vs compute.

Arms: tpe+pareto (TPE with automtl's Pareto pruner), tpe, random, nsga2 (no pruning), gp (Optuna
5's GPSampler: LogEHVI for several objectives). BoTorch's qNEHVI through optuna-integration is
not an arm: `pip install optuna-integration[botorch]` resolves to botorch 0.9.5 / gpytorch 1.11
(optuna-integration 5.0.0 pins botorch < 0.10, 2023 releases) next to torch 2.13, and Optuna's
own GPSampler already implements the (q)LogEHVI family, so we did not add that stack.

For each arm and repeat (sampler seed) a fresh study runs on the same synthetic data in one
temporary SQLite file. Measured: the hypervolume (reference 0.5 on every AUC) of the validation
front and of the same trials' test values, after each finished trial against the cumulative
epochs trained so far (pruned trials' epochs included), the total epochs, wall time and front
size. Targets (issue 15): tpe+pareto reaches unpruned TPE's final hypervolume with <= 50% of its
epochs, and random's final hypervolume with <= 30% of random's epochs. The table prints, per
arm, the mean hypervolume at fractions of the TPE arm's epochs and those two ratios; a plotly
figure (hypervolume vs cumulative epochs, one line per arm and repeat) is saved next to --out.

    python benchmarks/search_efficiency.py --trials 30 --epochs 4 --rows 100000 --repeats 3 \
        --out benchmarks/search_efficiency.json          # the issue's full size
    python benchmarks/search_efficiency.py --space compact --trials 20 --rows 10000   # small
    python benchmarks/search_efficiency.py --smoke --out /tmp/eff.json   # CI (tests/)
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
    "nsga2": ("nsga2", "none"),
    "gp": ("gp", "none"),
}
# --smoke: seconds per arm on a CPU (the CI test runs it)
SMOKE_SPACE = {
    "name": "smoke",
    "params": {
        "model.arch": {"choices": {
            "shared_bottom": {"model.bottom_dims": {"choices": [[8], [16]]}},
            "mmoe": {"model.n_experts": {"int": [2, 3]}, "model.expert_dims": [8]},
        }},
        "model.embedding_dim": 4,
        "model.tower_dims": [8],
        "train.lr": {"float": [1.0e-3, 1.0e-2], "log": True},
        "train.batch_size": 1024,
    },
}

# --space compact: the default space's kinds of choice (archs, head, embedding size, wide term,
# pooling, optimiser settings) at small widths, so a 20-trial arm fits a loaded 2-core machine
COMPACT_SPACE = {
    "name": "compact",
    "params": {
        "model.arch": {"choices": {
            "shared_bottom": {"model.bottom_dims": {"choices": [[32], [64, 32]]}},
            "mmoe": {"model.n_experts": {"int": [2, 6]},
                     "model.expert_dims": {"choices": [[32], [64, 32]]}},
            "ple": {"model.n_levels": {"int": [1, 2]},
                    "model.expert_dims": {"choices": [[32], [64, 32]]}},
        }},
        "model.head": {"choices": {"plain": {}, "esmm": {"requires": "cascade"}}},
        "model.embedding_dim": {"choices": [4, 8, 16]},
        "model.seq_pooling": {"choices": {"mean": {}, "sum": {"requires": "sequences"},
                                          "din": {"requires": "sequences"}}},
        "model.wide": {"choices": [False, True]},
        "model.tower_dims": {"choices": [[16], [32]]},
        "train.lr": {"float": [3.0e-4, 3.0e-2], "log": True},
        "train.weight_decay": {"choices": [0.0, 1.0e-5, 1.0e-4, 3.0e-4]},
        "train.batch_size": {"choices": [512, 1024]},
    },
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
    history = Store(storage).epoch_history(cfg.name)
    epochs = sum(len(h) for h in history.values())
    return {
        "curve": trajectory(study, history),
        "arm": arm, "seed": seed, "seconds": seconds, "epochs": epochs,
        "states": result.states, "front": len(front),
        "hv_val": hypervolume(val_points), "hv_test": hypervolume(test_points),
        "best_val": {o: max(p[i] for p in val_points) for i, o in enumerate(result.objectives)},
        "best_test": {o: max(r.test.get(o, float("nan")) for r in front)
                      for o in result.objectives},
        "trials": len(study.get_trials(deepcopy=False)),
    }


def trajectory(study: optuna.Study, history: dict[int, list]) -> list[dict]:
    """After each finished trial (in completion order): cumulative epochs trained and the
    hypervolume of the validation front of the completed trials so far (and of their test values)."""
    names = list(study.user_attrs["objectives"])
    done = sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_complete),
                  key=lambda t: (t.datetime_complete, t.number))
    out, epochs, complete = [], 0, []
    for t in done:
        epochs += len(history.get(t.number, []))
        if t.state == optuna.trial.TrialState.COMPLETE:
            complete.append(t)
        front = [c for c in complete
                 if not any(all(o >= v for o, v in zip(d.values, c.values)) and d.values != c.values
                            for d in complete)]
        test = [[c.user_attrs.get("test_metrics", {}).get(n, float("nan")) for n in names]
                for c in front]
        out.append({"trial": t.number, "epochs": epochs,
                    "hv_val": hypervolume([c.values for c in front]),
                    "hv_test": hypervolume(test)})
    return out


def epochs_to_reach(curve: list[dict], target: float) -> float | None:
    """Cumulative epochs at which the curve's validation hypervolume first reaches `target`."""
    for point in curve:
        if point["hv_val"] >= target - 1e-12:
            return float(point["epochs"])
    return None


def hv_at(curve: list[dict], epochs: float) -> float:
    """Validation hypervolume after the trials finished within `epochs` cumulative epochs."""
    hv = 0.0
    for point in curve:
        if point["epochs"] > epochs:
            break
        hv = point["hv_val"]
    return hv


def save_figure(results: list[dict], path: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in results:
        curve = r["curve"]
        fig.add_trace(go.Scatter(x=[p["epochs"] for p in curve], y=[p["hv_val"] for p in curve],
                                 mode="lines+markers", line_shape="hv",
                                 name=f"{r['arm']} seed {r['seed']}"))
    fig.update_layout(title="Hypervolume of the validation front vs cumulative epochs trained",
                      xaxis_title="cumulative epochs (all trials, pruned included)",
                      yaxis_title="hypervolume (ref 0.5)")
    fig.write_html(path, include_plotlyjs="cdn")


def efficiency_table(results: list[dict], arms: list[str]) -> tuple[list[str], dict]:
    """Hypervolume at fractions of the TPE arm's epochs, and the two target ratios."""
    seeds = sorted({r["seed"] for r in results})
    by = {(r["arm"], r["seed"]): r for r in results}
    fractions = (0.25, 0.5, 0.75, 1.0)
    lines = [f"{'arm':11s} " + " ".join(f"{'HV@' + format(f, '.0%'):>8s}" for f in fractions)
             + f" {'HV end':>7s} {'epochs':>7s}  {'reach TPE end':>13s}  {'reach random end':>16s}"]
    summary: dict = {}
    for arm in arms:
        hv = {f: [] for f in fractions}
        to_tpe, to_rnd = [], []
        for s in seeds:
            r, tpe, rnd = by.get((arm, s)), by.get(("tpe", s)), by.get(("random", s))
            if r is None:
                continue
            if tpe is not None:
                for f in fractions:
                    hv[f].append(hv_at(r["curve"], f * tpe["epochs"]))
                reach = epochs_to_reach(r["curve"], tpe["curve"][-1]["hv_val"])
                to_tpe.append(reach / tpe["epochs"] if reach is not None else float("inf"))
            if rnd is not None:
                reach = epochs_to_reach(r["curve"], rnd["curve"][-1]["hv_val"])
                to_rnd.append(reach / rnd["epochs"] if reach is not None else float("inf"))
        rows = [by[(arm, s)] for s in seeds if (arm, s) in by]
        summary[arm] = {
            "hv_at_tpe_fraction": {f: statistics.fmean(v) for f, v in hv.items() if v},
            "hv_end": statistics.fmean(r["hv_val"] for r in rows),
            "epochs": statistics.fmean(r["epochs"] for r in rows),
            "reach_tpe_end": to_tpe, "reach_random_end": to_rnd,
        }
        fmt = lambda xs: "/".join("never" if x == float("inf") else f"{x:.0%}" for x in xs) or "-"
        lines.append(f"{arm:11s} " + " ".join(
            f"{summary[arm]['hv_at_tpe_fraction'].get(f, float('nan')):8.5f}" for f in fractions)
            + f" {summary[arm]['hv_end']:7.5f} {summary[arm]['epochs']:7.1f}  {fmt(to_tpe):>13s}"
            f"  {fmt(to_rnd):>16s}")
    return lines, summary


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
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON "
                        "(and the figure as the same name .html)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI: 3 trials x 2 "
                        "epochs, 3000 rows, a tiny space, every arm")
    args = parser.parse_args()
    tmp_space = None
    if args.smoke:
        import yaml

        tmp_space = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump(SMOKE_SPACE, tmp_space)
        tmp_space.close()
        args.trials, args.epochs, args.rows, args.repeats = 3, 2, 3000, 1
        args.space, args.warmup = tmp_space.name, 1
    if args.space == "compact":
        import yaml

        tmp_space = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump(COMPACT_SPACE, tmp_space)
        tmp_space.close()
        args.space = tmp_space.name
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
    arms = args.arms.split(",")
    lines, efficiency = efficiency_table(results, arms)
    print("\nhypervolume (val) at fractions of TPE's epochs; epochs to reach TPE's / random's "
          "final hypervolume as a fraction of theirs (per repeat)")
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "bayes": bayes, "runs": results, "summary": summary,
                                        "efficiency": efficiency},
                                       indent=2, default=str), encoding="utf-8")
        save_figure(results, args.out.with_suffix(".html"))
    if tmp_space is not None:
        Path(tmp_space.name).unlink()


if __name__ == "__main__":
    main()
