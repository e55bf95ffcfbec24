"""Search efficiency: samplers and Pareto pruning at equal trial budgets, hypervolume vs compute.

Arms: tpe+pareto (TPE with automtl's Pareto pruner at its default settings, or --warmup, --eta,
--rungs, --score), tpe, random, nsga2 (no pruning), gp (Optuna
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
        --out benchmarks/search_efficiency.json          # the issue's full size, one process
    # one single-threaded process per arm sharing a --workdir; a cut run still reports
    for a in tpe+pareto tpe random; do python benchmarks/search_efficiency.py --space compact \
        --workdir runs --arms $a --seeds 0,1,2 & done; wait
    python benchmarks/search_efficiency.py --workdir runs --summarize --out eff.json
    python benchmarks/search_efficiency.py --space compact --trials 20 --rows 10000   # small
    python benchmarks/search_efficiency.py --smoke --out /tmp/eff.json   # CI (tests/)
"""

from __future__ import annotations

import argparse
import json
import os
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
        # no "din": its activation unit costs 4-6x a mean-pooled epoch on one CPU thread
        "model.seq_pooling": {"choices": {"mean": {}, "sum": {"requires": "sequences"}}},
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
    sampler, pruner = ARMS[arm.partition("@")[0]]  # "tpe+pareto@w3": a --variant of an arm
    cfg = StudyConfig(
        name=f"{arm}-s{seed}", data=DataConfig("synthetic", options={"rows": args.rows}),
        objectives=["ctr_auc", "cvr_auc"], space=args.space, epochs=args.epochs,
        n_trials=args.pruned_trials if pruner != "none" and args.pruned_trials else args.trials,
        sampler=sampler, seed=seed,  # type: ignore[arg-type]
        pruner=PrunerConfig(kind=pruner, min_epoch=1, warmup_trials=args.warmup,  # type: ignore[arg-type]
                            reduction_factor=args.eta, rungs=args.rungs, score=args.score),
        train={"patience": 1})
    t0, c0 = time.perf_counter(), time.process_time()
    run_search(cfg, storage=storage, device="cpu")
    return summarize_run(storage, cfg.name, arm, seed, time.perf_counter() - t0,
                         time.process_time() - c0, finished=True)


def summarize_run(storage: str, name: str, arm: str, seed: int, seconds: float,
                  cpu_seconds: float | None, finished: bool) -> dict:
    """One arm/seed's figures from its study (a cut run gives the trials finished so far)."""
    study = open_study(storage, name)
    names = list(study.user_attrs["objectives"])
    history = Store(storage).epoch_history(name)
    curve = trajectory(study, history)
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    front = [c for c in complete if not any(
        all(o >= v for o, v in zip(d.values, c.values)) and d.values != c.values for d in complete)]
    val_points = [list(c.values) for c in front]
    test_points = [[c.user_attrs.get("test_metrics", {}).get(n, float("nan")) for n in names]
                   for c in front]
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    nan = float("nan")
    return {
        "curve": curve, "arm": arm, "seed": seed, "seconds": seconds, "cpu_seconds": cpu_seconds,
        "finished": finished, "epochs": curve[-1]["epochs"] if curve else 0,
        "states": states, "front": len(front),
        "hv_val": hypervolume(val_points), "hv_test": hypervolume(test_points),
        "best_val": {o: max((p[i] for p in val_points), default=nan) for i, o in enumerate(names)},
        "best_test": {o: max((p[i] for p in test_points), default=nan)
                      for i, o in enumerate(names)},
        "trials": len(curve),
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


def hv_at(curve: list[dict], epochs: float, key: str = "hv_val") -> float:
    """Hypervolume (`key`: hv_val or hv_test) after the trials finished within `epochs`
    cumulative epochs."""
    hv = 0.0
    for point in curve:
        if point["epochs"] > epochs:
            break
        hv = point[key]
    return hv


def save_figure(results: list[dict], path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "validation front", "test values of the same trials"))
    colours = {arm: qualitative.Plotly[i % 10] for i, arm in enumerate(ARMS)}
    for r in results:
        curve = r["curve"]
        for col, key in ((1, "hv_val"), (2, "hv_test")):
            fig.add_trace(go.Scatter(
                x=[p["epochs"] for p in curve], y=[p[key] for p in curve],
                mode="lines+markers", line_shape="hv", legendgroup=r["arm"],
                showlegend=col == 1, line={"color": colours.get(r["arm"])},
                name=f"{r['arm']} seed {r['seed']}" + ("" if r.get("finished", True) else " (cut)")),
                row=1, col=col)
    fig.update_layout(title="Hypervolume (reference 0.5 on every AUC) vs cumulative epochs trained")
    fig.update_xaxes(title_text="cumulative epochs (all trials, pruned included)")
    fig.update_yaxes(title_text="hypervolume")
    fig.write_html(path, include_plotlyjs="cdn")


def efficiency_table(results: list[dict], arms: list[str]) -> tuple[list[str], dict]:
    """Hypervolume (val and test) at fractions of the TPE arm's epochs (same seed), and the two
    target ratios: epochs to reach TPE's / random's final validation hypervolume, as a fraction
    of their epochs."""
    # a cut run's last hypervolume is not final: only finished runs are compared here
    results = [r for r in results if r.get("finished", True)]
    seeds = sorted({r["seed"] for r in results})
    by = {(r["arm"], r["seed"]): r for r in results}
    fractions = (0.25, 0.5, 0.75, 1.0)
    lines = [f"{'arm':18s} {'n':>2s} " + " ".join(f"{'HV@' + format(f, '.0%'):>8s}" for f in fractions)
             + f" {'HV end':>7s} {'test@50%':>8s} {'test end':>8s} {'epochs':>6s}"
             f"  {'reach TPE end':>15s}  {'reach random end':>16s}"]
    summary: dict = {}
    fmt = lambda xs: "/".join("never" if x == float("inf") else f"{x:.0%}" for x in xs) or "-"
    for arm in arms:
        hv = {f: [] for f in fractions}
        test50: list[float] = []
        to_tpe, to_rnd = [], []
        for s in seeds:
            r, tpe, rnd = by.get((arm, s)), by.get(("tpe", s)), by.get(("random", s))
            if r is None or not r["curve"]:
                continue
            if tpe is not None and tpe["epochs"]:
                for f in fractions:
                    hv[f].append(hv_at(r["curve"], f * tpe["epochs"]))
                test50.append(hv_at(r["curve"], 0.5 * tpe["epochs"], "hv_test"))
                reach = epochs_to_reach(r["curve"], tpe["curve"][-1]["hv_val"])
                to_tpe.append(reach / tpe["epochs"] if reach is not None else float("inf"))
            if rnd is not None and rnd["epochs"]:
                reach = epochs_to_reach(r["curve"], rnd["curve"][-1]["hv_val"])
                to_rnd.append(reach / rnd["epochs"] if reach is not None else float("inf"))
        rows = [by[(arm, s)] for s in seeds if (arm, s) in by and by[(arm, s)]["curve"]]
        if not rows:
            continue
        summary[arm] = {
            "runs": len(rows), "cut": sum(not r.get("finished", True) for r in rows),
            "hv_at_tpe_fraction": {f: statistics.fmean(v) for f, v in hv.items() if v},
            "hv_test_at_half_tpe": statistics.fmean(test50) if test50 else None,
            "hv_end": statistics.fmean(r["hv_val"] for r in rows),
            "hv_test_end": statistics.fmean(r["hv_test"] for r in rows),
            "epochs": statistics.fmean(r["epochs"] for r in rows),
            "reach_tpe_end": to_tpe, "reach_random_end": to_rnd,
        }
        m = summary[arm]
        lines.append(f"{arm:18s} {m['runs']:2d} " + " ".join(
            f"{m['hv_at_tpe_fraction'].get(f, float('nan')):8.5f}" for f in fractions)
            + f" {m['hv_end']:7.5f} {(m['hv_test_at_half_tpe'] or float('nan')):8.5f}"
            f" {m['hv_test_end']:8.5f} {m['epochs']:6.1f}  {fmt(to_tpe):>15s}  {fmt(to_rnd):>16s}")
    return lines, summary


def curve_grid(results: list[dict], arms: list[str], step: int = 10,
               key: str = "hv_val") -> list[str]:
    """The figure as text: per arm, the mean over its finished runs of the hypervolume (`key`)
    reached within 0, step, 2 step, ... cumulative epochs (up to the longest run)."""
    results = [r for r in results if r.get("finished", True) and r["curve"]]
    top = max((r["epochs"] for r in results), default=0)
    grid = list(range(step, top + step, step))
    lines = [f"{'arm':20s} " + " ".join(f"{e:>7d}" for e in grid)]
    for arm in arms:
        rows = [r for r in results if r["arm"] == arm]
        if rows:
            lines.append(f"{arm:20s} " + " ".join(
                f"{statistics.fmean(hv_at(r['curve'], e, key) for r in rows):7.5f}" for e in grid))
    return lines


def arm_table(results: list[dict], arms: list[str], bayes: dict) -> tuple[list[str], dict]:
    """Per arm: mean hypervolumes, epochs, front size, wall and CPU minutes, best AUCs."""
    lines = [f"{'arm':18s} {'runs':>7s} {'HV val':>8s} {'HV test':>8s} {'epochs':>7s} "
             f"{'front':>5s} {'wall min':>8s} {'CPU min':>7s}  best val / test (gap to Bayes test)"]
    summary = {}
    for arm in arms:
        rows = [r for r in results if r["arm"] == arm and r["curve"]]
        if not rows:
            continue
        cpu = [r["cpu_seconds"] for r in rows if r.get("cpu_seconds") is not None]
        best = " ".join(
            f"{o}={statistics.fmean(r['best_val'][o] for r in rows):.4f}/"
            f"{statistics.fmean(r['best_test'][o] for r in rows):.4f}"
            f"({bayes['test'].get(o, float('nan')) - statistics.fmean(r['best_test'][o] for r in rows):+.4f})"
            for o in rows[0]["best_val"])
        summary[arm] = {
            "hv_val": statistics.fmean(r["hv_val"] for r in rows),
            "hv_test": statistics.fmean(r["hv_test"] for r in rows),
            "epochs": statistics.fmean(r["epochs"] for r in rows),
            "trials": statistics.fmean(r["trials"] for r in rows),
            "front": statistics.fmean(r["front"] for r in rows),
            "minutes": statistics.fmean(r["seconds"] for r in rows) / 60,
            "cpu_minutes": statistics.fmean(cpu) / 60 if cpu else None,
        }
        s = summary[arm]
        cut = sum(not r.get("finished", True) for r in rows)
        runs = f"{len(rows)}" + (f"({cut}c)" if cut else "")
        lines.append(f"{arm:18s} {runs:>7s} {s['hv_val']:8.5f} {s['hv_test']:8.5f} "
                     f"{s['epochs']:7.1f} {s['front']:5.1f} {s['minutes']:8.2f} "
                     f"{(s['cpu_minutes'] or float('nan')):7.2f}  {best}")
    return lines, summary


def claim(workdir: Path, name: str) -> bool:
    """Reserve run `name` in a shared --workdir (several processes may list the same arm and
    seed: the first one runs it)."""
    if (workdir / f"{name}.db").exists():
        return False
    try:
        os.close(os.open(workdir / f"{name}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def collect(workdir: Path) -> list[dict]:
    """Finished runs' JSON files in `workdir`, and the trials finished so far of every run
    that has a database but no JSON (a run cut before its end)."""
    results = []
    for db in sorted(workdir.glob("*.db")):
        done = db.with_suffix(".json")
        if done.exists():
            results.append(json.loads(done.read_text(encoding="utf-8")))
            continue
        arm, _, seed = db.stem.rpartition("-s")
        storage = f"sqlite:///{db}"
        try:
            study = open_study(storage, db.stem)
        except Exception:  # a run that had not created its study yet
            continue
        times = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start]
        ends = [t.datetime_complete for t in study.get_trials(deepcopy=False)
                if t.datetime_complete]
        wall = (max(ends) - min(times)).total_seconds() if ends and times else 0.0
        results.append(summarize_run(storage, db.stem, arm, int(seed), wall, None,
                                     finished=False))
    return results


def report(results: list[dict], args: argparse.Namespace, bayes: dict) -> None:
    arms = [a for a in ARMS if any(r["arm"] == a for r in results)]
    arms += sorted({r["arm"] for r in results} - set(arms))  # --variant runs
    print(f"\n{args.trials} trials x <= {args.epochs} epochs, {args.rows} rows, space "
          f"{args.space}; Bayes AUC val {({k: round(v, 4) for k, v in bayes['val'].items()})}")
    lines, summary = arm_table(results, arms, bayes)
    print("\n".join(lines))
    lines, efficiency = efficiency_table(results, arms)
    print("\nfinished runs only: hypervolume (val) at fractions of TPE's epochs (same seed); "
          "test HV at 50% and at the end; epochs to reach TPE's / random's final val "
          "hypervolume as a fraction of theirs (per repeat)")
    print("\n".join(lines))
    for key, what in (("hv_val", "validation"), ("hv_test", "test values")):
        print(f"\nmean {what} hypervolume within N cumulative epochs (finished runs; the figure)")
        print("\n".join(curve_grid(results, arms, key=key)))
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "bayes": bayes, "runs": results, "summary": summary,
                                        "efficiency": efficiency},
                                       indent=2, default=str), encoding="utf-8")
        save_figure(results, args.out.with_suffix(".html"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--space", default="default")
    parser.add_argument("--repeats", type=int, default=1, help="sampler seeds per arm (0..n-1)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (overrides --repeats)")
    parser.add_argument("--pruned-trials", type=int, default=None, help="trials of the arms "
                        "with a pruner (default --trials): a pruned arm may try more configurations "
                        "in the epochs an unpruned arm spends on --trials")
    parser.add_argument("--warmup", type=int, default=PrunerConfig().warmup_trials)
    parser.add_argument("--eta", type=float, default=3.0)
    parser.add_argument("--rungs", choices=["every", "geometric"], default="every")
    parser.add_argument("--score", choices=["epoch", "best"], default=PrunerConfig().score,
                        help="the pruner's rung score (automtl.search.pruner.rung_point)")
    parser.add_argument("--variant", default=None, help="label for non-default pruner settings: "
                        "the pruned arms are named ARM@VARIANT, beside the default runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--workdir", type=Path, default=None, help="keep each arm/seed's "
                        "database (ARM-sSEED.db) and, once it finishes, its figures (.json) here, "
                        "so arms can run as separate processes and a cut run still reports")
    parser.add_argument("--summarize", action="store_true", help="train nothing: report the "
                        "runs in --workdir (finished and cut)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON "
                        "(and the figure as the same name .html)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI: 3 trials x 2 "
                        "epochs, 3000 rows, a tiny space, every arm")
    args = parser.parse_args()
    if args.summarize and args.workdir is None:
        parser.error("--summarize needs --workdir")
    tmp_space = None
    if args.smoke:
        import yaml

        tmp_space = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump(SMOKE_SPACE, tmp_space)
        tmp_space.close()
        args.trials, args.epochs, args.rows, args.repeats = 3, 2, 3000, 1
        args.space, args.warmup = tmp_space.name, 1
    space_label = args.space
    if args.space == "compact":
        import yaml

        tmp_space = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump(COMPACT_SPACE, tmp_space)
        tmp_space.close()
        args.space = tmp_space.name
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    dataset = load_dataset(DataConfig("synthetic", options={"rows": args.rows}))  # once
    bayes = {"val": bayes_auc(dataset, "val"), "test": bayes_auc(dataset, "test")}
    seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds
             else list(range(args.repeats)))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.summarize:
            results = collect(workdir)
        else:
            for seed in seeds:
                for arm in args.arms.split(","):
                    if args.variant and ARMS[arm][1] != "none":
                        arm = f"{arm}@{args.variant}"
                    if not claim(workdir, f"{arm}-s{seed}"):
                        print(f"{arm} seed {seed}: run by another process, skipped", flush=True)
                        continue
                    storage = f"sqlite:///{workdir / f'{arm}-s{seed}.db'}"
                    r = run_arm(arm, seed, args, storage)
                    (workdir / f"{arm}-s{seed}.json").write_text(json.dumps(r), encoding="utf-8")
                    results.append(r)
                    print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
        args.space = space_label
        report(results, args, bayes)
    if tmp_space is not None:
        Path(tmp_space.name).unlink()


if __name__ == "__main__":
    main()
