"""Sampler cost at scale: seconds per `ask` (+ sampling the default space) for the samplers automtl
offers, once a study already holds 1k, 5k or 10k finished trials; `tpe` is automtl's default
(history capped by `automtl.search.history_cap`), `tpe-nocap` plain Optuna TPE.

Multi-objective TPE, NSGA-II and the GP sampler read the study's whole history at every ask, so
their cost grows with the study; this script measures how fast. Histories are written straight
into an in-memory study (random configurations of `search_spaces/default.yaml` with plausible,
correlated two-task AUCs), then the sampler under test asks (and the space samples) `--asks`
times; each (sampler, size) runs in its own process with a time limit, so one slow cell cannot
stall the table.

    python benchmarks/sampler_cost.py                      # 1k/5k/10k, every sampler
    python benchmarks/sampler_cost.py --sizes 200 --asks 2 # smoke
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
import warnings

import numpy as np
import optuna

SAMPLERS = ("tpe", "tpe-nocap", "nsga2", "gp", "random")
NO_CAP = 10**9


def _context():  # type: ignore[no-untyped-def]
    from automtl.search.space_nodes import SpaceContext

    return SpaceContext(["ctr", "ctcvr"], 1, frozenset({"cascade"}))


def _values(rng: np.random.Generator) -> list[float]:
    """Two correlated task AUCs in a plausible band."""
    base = rng.normal(0.70, 0.03)
    return [float(base + rng.normal(0, 0.01)), float(base - 0.05 + rng.normal(0, 0.015))]


def build_history(n: int, seed: int = 0) -> optuna.Study:
    """An in-memory two-objective study holding `n` COMPLETE trials of random default-space
    configurations."""
    from automtl.search.space import load_space

    space, ctx, rng = load_space("default"), _context(), np.random.default_rng(seed)
    study = optuna.create_study(directions=["maximize", "maximize"],
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        t = study.ask()
        space.sample(t, ctx)
        study.tell(t, _values(rng))
    return study


def _cell(kind: str, n: int, asks: int, queue: mp.Queue) -> None:
    from automtl.search.samplers import make_sampler
    from automtl.search.space import load_space

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    study = build_history(n)
    # "tpe" is automtl's default (history capped at DEFAULT_HISTORY_CAP); "tpe-nocap" reads all.
    if kind == "tpe-nocap":
        study.sampler = make_sampler("tpe", 1, n + asks, history_cap=NO_CAP)
    else:
        study.sampler = make_sampler(kind, 1, n + asks)
    space, ctx, rng = load_space("default"), _context(), np.random.default_rng(1)
    times = []
    for _ in range(asks):
        t0 = time.perf_counter()
        t = study.ask()
        space.sample(t, ctx)
        times.append(time.perf_counter() - t0)
        study.tell(t, _values(rng))
    queue.put(times)


def measure(kind: str, n: int, asks: int, limit_s: float) -> tuple[str, list[float] | None]:
    """Seconds per ask for sampler `kind` on an `n`-trial history (None past `limit_s`)."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_cell, args=(kind, n, asks, queue))
    proc.start()
    proc.join(limit_s)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return kind, None
    return kind, queue.get() if not queue.empty() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    ap.add_argument("--asks", type=int, default=5)
    ap.add_argument("--limit-s", type=float, default=300.0,
                    help="per cell, history build included")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    print(f"optuna {optuna.__version__}; default space; {args.asks} asks per cell; "
          f"limit {args.limit_s:.0f} s per cell (history build included)")
    print(f"{'sampler':10} {'history':>8} {'median s/ask':>13} {'max s/ask':>10}")
    rows = []
    for n in args.sizes:
        for kind in args.samplers:
            _, times = measure(kind, n, args.asks, args.limit_s)
            if times is None:
                print(f"{kind:10} {n:8d} {'> limit':>13} {'':>10}", flush=True)
                rows.append({"sampler": kind, "history": n, "median_s": None, "max_s": None})
                continue
            med, worst = statistics.median(times), max(times)
            print(f"{kind:10} {n:8d} {med:13.3f} {worst:10.3f}", flush=True)
            rows.append({"sampler": kind, "history": n, "median_s": med, "max_s": worst})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
