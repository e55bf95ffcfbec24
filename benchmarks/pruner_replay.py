"""Replay pruning rules on recorded learning curves: what a pruner would have saved and kept.

`benchmarks/search_efficiency.py --workdir DIR` keeps each arm's study database. For a finished
arm run without a pruner (tpe, random, nsga2, gp) every trial's validation metrics are recorded after
every epoch it trained, so any pruning rule can be replayed on those curves without training
again: the trials are taken in completion order (one worker, as the benchmark runs them); at
each rung a trial is ranked by `automtl.search.pruner.decide` against the earlier trials that
reached the same epoch in the replay; a pruned trial costs the epochs up to its rung and leaves
the front (also when early stopping ended it at that epoch: the live pruner decides first); a
kept trial finishes exactly as recorded (its values and test values are the recorded ones).
For the random sampler this is the pruned run exactly (its proposals do not depend on
results); for TPE it ignores that the sampler would have seen pruned trials.

    python benchmarks/pruner_replay.py /tmp/eff            # every rule below, every unpruned run
    python benchmarks/pruner_replay.py /tmp/eff --arms random --out replay.json

Per rule and arm: total epochs as a fraction of the unpruned run's, final validation
hypervolume as a fraction of it, and the epochs at which the replayed front first reaches the
unpruned run's final hypervolume (as a fraction of the unpruned run's epochs), per repeat.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_efficiency import epochs_to_reach, hypervolume  # noqa: E402

from automtl.errors import AutomtlError  # noqa: E402
from automtl.search import Store, open_study  # noqa: E402
from automtl.search.pruner import decide, rung_point  # noqa: E402
from automtl.search.study_config import PrunerConfig  # noqa: E402

# the rule before the default changed (score epoch, warm-up 5): the variations start from it
BASE = PrunerConfig(kind="pareto", min_epoch=1, warmup_trials=5, reduction_factor=3.0,
                    score="epoch")
RULES = {
    "default (best-so-far, warmup 3, eta 3)": PrunerConfig(kind="pareto"),  # as shipped
    "old default (epoch, warmup 5, eta 3)": BASE,
    "warmup 3": replace(BASE, warmup_trials=3),
    "warmup 2": replace(BASE, warmup_trials=2),
    "eta 2": replace(BASE, reduction_factor=2.0),
    "eta 4": replace(BASE, reduction_factor=4.0),
    "geometric rungs (1, 3)": replace(BASE, rungs="geometric"),
    "score best-so-far": replace(BASE, score="best"),
    "best-so-far, warmup 3, eta 2": replace(BASE, score="best", warmup_trials=3,
                                            reduction_factor=2.0),
    "best-so-far, warmup 2, eta 4": replace(BASE, score="best", warmup_trials=2,
                                            reduction_factor=4.0),
    "warmup 3, eta 4": replace(BASE, warmup_trials=3, reduction_factor=4.0),
    "geometric, warmup 3": replace(BASE, rungs="geometric", warmup_trials=3),
    "best-so-far, geometric, warmup 3": replace(BASE, score="best", rungs="geometric",
                                                warmup_trials=3),
}
# bounds, not rules: every trial off the unpruned run's final front stopped at epoch 1
ORACLES = {"oracle: non-front trials stopped at epoch 1, warmup 3": replace(BASE, warmup_trials=3),
           "oracle: non-front trials stopped at epoch 1, warmup 0": replace(BASE, warmup_trials=0)}


def load_run(db: Path) -> dict | None:
    """The trials of one finished or cut unpruned run, in completion order."""
    storage = f"sqlite:///{db}"
    try:
        study = open_study(storage, db.stem)
    except AutomtlError:  # a run that has not created its study yet
        return None
    names = list(study.user_attrs["objectives"])
    history = Store(storage).epoch_history(db.stem)
    done = sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_complete),
                  key=lambda t: (t.datetime_complete, t.number))
    if any(t.state == optuna.trial.TrialState.PRUNED for t in done):
        return None  # a pruned run: its curves stop at the rungs, nothing to replay
    trials = []
    for t in done:
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue  # a failed trial costs nothing the replay can change
        test = t.user_attrs.get("test_metrics", {})
        trials.append({"number": t.number, "values": list(t.values),
                       "test": [test.get(n, float("nan")) for n in names],
                       "epochs": history.get(t.number, [])})
    return {"objectives": names, "trials": trials, "epochs_max": int(study.user_attrs.get(
        "study_config", {}).get("epochs", 0)) or max(len(t["epochs"]) for t in trials)}


def front_numbers(trials: list[dict]) -> set[int]:
    """Numbers of the trials on the Pareto front of `trials`' values."""
    return {c["number"] for c in trials if not any(
        all(o >= v for o, v in zip(d["values"], c["values"])) and d["values"] != c["values"]
        for d in trials)}


def replay(run: dict, cfg: PrunerConfig, oracle: bool = False) -> list[dict]:
    """Cumulative epochs and validation / test hypervolume after each replayed trial. `oracle`:
    instead of `decide`, prune at epoch 1 every trial (after `cfg.warmup_trials`) that is not
    on the unpruned run's final front: a bound no rule with a rung at epoch 1 can beat."""
    names, max_epoch = run["objectives"], run["epochs_max"]
    keep = front_numbers(run["trials"]) if oracle else set()
    at_rung: dict[int, list[list[float]]] = {}  # epoch -> points of earlier trials there
    complete: list[dict] = []
    curve, epochs = [], 0
    for t in run["trials"]:
        trained, pruned = len(t["epochs"]), False
        for k, rec in enumerate(t["epochs"], start=1):
            own = rung_point(t["epochs"][:k], names, cfg.score)
            peers = at_rung.get(k, [])
            if oracle:
                if len(peers) >= cfg.warmup_trials and t["number"] not in keep:
                    trained, pruned = 1, True
                break
            # as live: a trial pruned at the epoch where early stopping ends it is still pruned
            # (the pruner's callback runs before the stop), so it leaves the front
            if k < max_epoch and decide(own, peers, k, cfg).prune:
                trained, pruned = k, True
                break
        for k in range(1, trained + 1):
            at_rung.setdefault(k, []).append(rung_point(t["epochs"][:k], names, cfg.score))
        epochs += trained
        if not pruned:
            complete.append(t)
        front = [c for c in complete if not any(
            all(o >= v for o, v in zip(d["values"], c["values"])) and d["values"] != c["values"]
            for d in complete)]
        curve.append({"trial": t["number"], "epochs": epochs,
                      "hv_val": hypervolume([c["values"] for c in front]),
                      "hv_test": hypervolume([c["test"] for c in front])})
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--arms", default="tpe,random,nsga2,gp")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = {}
    for db in sorted(args.workdir.glob("*.db")):
        arm, _, seed = db.stem.rpartition("-s")
        if arm in args.arms.split(",") and db.with_suffix(".json").exists():  # finished runs
            run = load_run(db)
            if run is not None and run["trials"]:
                runs[(arm, int(seed))] = run
    random_end = {s: replay(r, replace(BASE, kind="none"))[-1]["hv_val"]
                  for (a, s), r in runs.items() if a == "random"}
    print(f"runs replayed: {sorted(runs)}")
    print(f"{'rule':55s} {'arm':7s} {'epochs':>7s} {'HV end':>7s} {'test end':>8s} "
          f"{'reach own end':>14s} {'reach random end':>16s}")
    out = {}
    for name, cfg in [*RULES.items(), *ORACLES.items()]:
        for arm in sorted({a for a, _ in runs}):
            ep, hv, hvt, reach, reach_rnd = [], [], [], [], []
            for (a, s), run in sorted(runs.items()):
                if a != arm:
                    continue
                base = replay(run, replace(cfg, kind="none"))
                curve = replay(run, cfg, oracle=name in ORACLES)
                ep.append(curve[-1]["epochs"] / base[-1]["epochs"])
                hv.append(curve[-1]["hv_val"] / base[-1]["hv_val"] if base[-1]["hv_val"] else 1.0)
                hvt.append(curve[-1]["hv_test"] / base[-1]["hv_test"]
                           if base[-1]["hv_test"] else 1.0)
                r = epochs_to_reach(curve, base[-1]["hv_val"])
                reach.append(r / base[-1]["epochs"] if r is not None else float("inf"))
                if s in random_end:
                    # against the random run of the same seed: its epochs, its final hypervolume
                    rnd = replay(runs[("random", s)], replace(cfg, kind="none"))
                    r = epochs_to_reach(curve, random_end[s])
                    reach_rnd.append(r / rnd[-1]["epochs"] if r is not None else float("inf"))
            fmt = lambda xs: "/".join("never" if x == float("inf") else f"{x:.0%}" for x in xs)
            print(f"{name:55s} {arm:7s} {statistics.fmean(ep):7.0%} {statistics.fmean(hv):7.1%} "
                  f"{statistics.fmean(hvt):8.1%} {fmt(reach):>14s} {fmt(reach_rnd) or '-':>16s}")
            out[f"{name} | {arm}"] = {"epochs": ep, "hv_end": hv, "hv_test_end": hvt,
                                      "reach_own_end": reach, "reach_random_end": reach_rnd}
    if args.out:
        args.out.write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
