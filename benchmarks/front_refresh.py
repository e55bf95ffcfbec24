"""Seconds per Pareto-front refresh as a study grows: direct PostgreSQL vs `automtl storage-proxy`.

One study on a throwaway PostgreSQL server (tests/pg.py) is grown to each size N in turn: COMPLETE
trials (two objectives, realistic trial attributes: config, test metrics, front fields) written
straight into the database and folded into the front. Then, as a worker does after each trial, one new
COMPLETE trial is added and `Store.refresh_front` is timed, `--repeats` times:

- direct: the worker's own `Store` on the database URL and its study (Optuna's trial cache warm);
- proxy: a real `automtl storage-proxy` process, the worker with ``--storage grpc://...``; the
  first refresh after the proxy starts is reported apart (its cache is cold), then the median.

Also recorded: the proxy's CPU time per refresh (its process's user + system time over the
timed refreshes) and its resident memory after them. `PYTHONPATH=/other/checkout python
benchmarks/front_refresh.py` measures that checkout's code (the proxy process included).

    python benchmarks/front_refresh.py --sizes 100 1000 3000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "import sys; from automtl.cli import main; sys.exit(main(sys.argv[1:]))"
NAMES = ["ctr_auc", "cvr_auc"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    # an explicit PYTHONPATH comes first: the proxy then runs that code (e.g. an older checkout)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(ROOT)) if p)
    return env


def _trial(number: int, rng: random.Random):  # -> optuna.trial.FrozenTrial
    import optuna

    a = rng.uniform(0.6, 0.8)
    b = 1.4 - a + rng.gauss(0, 0.03)
    arch = rng.choice(["mmoe", "ple", "shared_bottom"])
    config = {"model": {"arch": arch, "embedding_dim": 16, "n_experts": 4,
                        "expert_dims": [256, 128], "tower_dims": [64]},
              "train": {"lr": rng.uniform(1e-4, 1e-2), "batch_size": 1024, "epochs": 3},
              "loss": {"weighting": {"kind": "uncertainty"}}}
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0),
            "arch": optuna.distributions.CategoricalDistribution(["mmoe", "ple", "shared_bottom"])}
    return optuna.trial.create_trial(
        params={"x": rng.random(), "arch": arch}, distributions=dist, values=[a, b],
        user_attrs={"config": config, "arch": arch, "n_params": rng.randint(10**4, 10**6),
                    "test_metrics": {"ctr_auc": a - 0.01, "cvr_auc": b - 0.01},
                    "val_metrics": {"ctr_auc": a, "cvr_auc": b}, "epochs_run": 3,
                    "worker": f"host:{number}"})


def grow(url: str, name: str, have: int, n: int, seed: int = 0) -> None:
    """Add COMPLETE trials numbered `have`..`n - 1` to the study (created when `have` is 0),
    written straight into the database, then fold them into the front."""
    import optuna

    from automtl.search.storage import make_storage
    from automtl.search.store import Store

    rng = random.Random(seed + have)
    if have == 0:
        study = optuna.create_study(storage=make_storage(url), study_name=name,
                                    directions=["maximize", "maximize"])
        study.set_user_attr("objectives", NAMES)
    else:
        study = optuna.load_study(study_name=name, storage=make_storage(url))
    study.add_trials([_trial(i, rng) for i in range(have, n)])
    store = Store(url)
    store.refresh_front(study)
    store.dispose()


def start_proxy(url: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = folder / "proxy.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-c", ENTRY, "storage-proxy", "--port", "0"],
                                cwd=folder, stdout=fh, stderr=subprocess.STDOUT,
                                env=_env(AUTOMTL_STORAGE=url))
    deadline = time.monotonic() + 180
    while "workers:" not in log.read_text() and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    words = log.read_text().split()
    if proc.poll() is not None or "workers:" not in words:
        proc.kill()
        raise RuntimeError(f"storage proxy did not start: {log.read_text()[-800:]}")
    return proc, words[3]


def time_refreshes(storage_url: str, name: str, repeats: int, seed: int,
                   proxy_pid: int | None = None) -> dict[str, float]:
    """First refresh and the median of `repeats` refreshes, each after one new trial (ms)."""
    import optuna
    import psutil

    from automtl.search.storage import make_storage
    from automtl.search.store import Store

    rng = random.Random(seed)
    study = optuna.load_study(study_name=name, storage=make_storage(storage_url))
    store = Store(storage_url)
    study.get_trials(deepcopy=False)  # a worker's cache is warm: it has seen the study
    t0 = time.perf_counter()
    store.refresh_front(study)
    first = (time.perf_counter() - t0) * 1e3
    proc = psutil.Process(proxy_pid) if proxy_pid else None
    cpu0 = sum(proc.cpu_times()[:2]) if proc else 0.0
    times = []
    for i in range(repeats):
        study.add_trial(_trial(10**6 + i, rng))
        t0 = time.perf_counter()
        rows = store.refresh_front(study)
        times.append((time.perf_counter() - t0) * 1e3)
    out = {"first": first, "median": statistics.median(times), "front": float(len(rows))}
    if proc:
        out["proxy_cpu"] = (sum(proc.cpu_times()[:2]) - cpu0) * 1e3 / repeats
        out["proxy_rss"] = proc.memory_info().rss / 2**20
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 3000])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--via", nargs="+", default=["direct", "proxy"], choices=["direct", "proxy"])
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    import optuna
    from pg import PostgresServer, pg_bin  # the suite's throwaway server

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bin_dir = pg_bin()
    if bin_dir is None:
        print("PostgreSQL binaries not found (apt-get install postgresql)", file=sys.stderr)
        return 2
    server = PostgresServer(bin_dir)
    server.start()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print(f"{'trials':>7} {'via':>6} {'first ms':>9} {'median ms':>10} {'proxy CPU ms':>13} "
          f"{'proxy MB':>9} {'front':>6} {'load':>5}")
    try:
        with tempfile.TemporaryDirectory(prefix="automtl-refresh-") as tmp:
            url, have = server.create_database(), 0
            for n in sorted(args.sizes):  # one study, grown to each size in turn
                t0 = time.perf_counter()
                grow(url, "s", have, n)
                print(f"        ({n - have} trials written in {time.perf_counter() - t0:.0f} s)",
                      flush=True)
                for via in args.via:
                    proc, grpc_url = (start_proxy(url, Path(tmp)) if via == "proxy"
                                      else (None, url))
                    try:
                        r = time_refreshes(grpc_url, "s", args.repeats, seed=n,
                                           proxy_pid=proc.pid if proc else None)
                    finally:
                        if proc:
                            proc.terminate()
                            proc.wait(timeout=60)
                    cpu = f"{r['proxy_cpu']:.0f}" if "proxy_cpu" in r else ""
                    mb = f"{r['proxy_rss']:.0f}" if "proxy_rss" in r else ""
                    print(f"{n:>7} {via:>6} {r['first']:>9.0f} {r['median']:>10.0f} {cpu:>13} "
                          f"{mb:>9} {r['front']:>6.0f} {os.getloadavg()[0]:>5.1f}", flush=True)
                have = n + args.repeats * len(args.via)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
