"""Many workers under chaos on one PostgreSQL study: correctness checks and throughput.

N real `automtl worker` processes (tiny synthetic data, 1 epoch, trials of about a second) share
one study with a fixed target on a throwaway PostgreSQL server (tests/pg.py). A chaos loop
SIGKILLs a random worker that is running a trial every `--kill-every` seconds (bounded in count
and time; only first attempts, since a retry killed again is not retried: max_retry 1) and starts
a replacement. Afterwards the run is checked:

- exactly the target number of COMPLETE trials; trial numbers 0..n-1 with no gap or duplicate;
- every killed trial FAIL, and retried exactly once (Optuna's `retry_history`);
- automtl's Pareto table equal to a brute-force non-dominated filter of Optuna's stored values;
- no connection error or traceback in any worker log;

and measured: trials/s, peak PostgreSQL connections (pg_stat_activity, polled), worker memory,
wall time, and from the workers' own timings (`AUTOMTL_WORKER_STATS`):
seconds waited per acquisition of the study lock (the advisory lock around "count slots, create
a trial"), how long it was held, and seconds per front refresh (row lock on the study's front
version + recomputation).

    python benchmarks/workers_scale.py --workers 8 32 64 --target 200 --kills 10
    python benchmarks/workers_scale.py --workers 8 --target 24 --kills 3   # what the suite runs
    python benchmarks/workers_scale.py --workers 8 16 --via direct proxy   # vs storage proxy

`--via proxy` runs the same chaos through `automtl storage-proxy` (workers use grpc://; peak
connections then count the proxy's, the only process connected to PostgreSQL).

Memory is proportional (PSS) and unique (USS = private clean + dirty) set size from
/proc/PID/smaps_rollup, not RSS: RSS counts the shared library pages every worker maps (~150 MB
of torch & co.) once per worker. "all MB" is the largest sum of all workers' PSS at one poll,
i.e. what the run really took, "worker MB" that sum / workers and the largest worker's USS.
A row is skipped when workers x `--mb-per-worker` (PSS) does not fit in the available memory
minus 2 GiB, and a run is stopped (workers killed, reported) when available memory falls below
1 GiB: never the OOM killer.
`--start fork` forks the workers from one process that has imported everything
(benchmarks/forked_workers.py: they share those pages), for 64 workers on a small box.

When a check fails, the run folder is kept (worker logs, `trials.tsv`: every trial's state,
retry chain, worker and fail reason) and its path printed. "starved" counts trials FAILed by the
heartbeat check whose worker the driver did not kill: live workers that missed heartbeats for
longer than the grace period (a starved machine).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "import sys; from automtl.cli import main; sys.exit(main(sys.argv[1:]))"

TINY_SPACE = """\
name: tiny
description: two small architectures for fast worker tests and benchmarks
params:
  model.arch:
    choices:
      shared_bottom: {model.bottom_dims: {choices: [[8], [16]]}}
      mmoe: {model.n_experts: {int: [2, 3]}, model.expert_dims: {choices: [[8]]}}
  model.embedding_dim: 4
  model.tower_dims: {choices: [[4]]}
  train.lr: {float: [1.0e-3, 1.0e-2], log: true}
"""

STUDY = """\
name: {name}
data: {{name: synthetic, options: {{rows: {rows}, n_tasks: 2, rho: 0.5, seed: 0}}}}
objectives: [ctr_auc, cvr_auc]
space: tiny.yaml
epochs: 1
n_trials: {n_trials}
sampler: random
pruner: {{kind: none}}
train: {{batch_size: 512, device: cpu}}
"""

# A log line with one of these means a worker lost its database, which must never happen.
BAD_LOG = ("Traceback", "OperationalError", "connection failed", "too many clients",
           "server closed the connection")


def write_study(folder: Path, name: str, n_trials: int, rows: int = 2000) -> Path:
    """A study preset + the tiny search space in `folder` (also the worker tests' study);
    returns the preset path."""
    (folder / "tiny.yaml").write_text(TINY_SPACE)
    path = folder / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, n_trials=n_trials, rows=rows))
    return path


@dataclass
class ChaosResult:
    """What one chaos run did and measured; `problems` is empty when every check held."""

    workers: int
    target: int
    seconds: float
    complete: int
    failed: int
    killed: list[int]  # the trials running in the SIGKILLed workers
    peak_connections: int
    peak_worker_pss_mb: float = 0.0  # the largest worker's proportional set size
    peak_worker_uss_mb: float = 0.0  # the largest worker's private (unique) memory
    peak_all_pss_mb: float = 0.0  # the largest sum of all workers' PSS at one poll
    starved: list[int] = field(default_factory=list)  # heartbeat-FAILed, not killed by us
    kills: int = 0  # SIGKILLs sent (a worker killed between trials killed no trial)
    lock_wait: list[float] = field(default_factory=list)  # s per study-lock acquisition
    lock_hold: list[float] = field(default_factory=list)
    front_refresh: list[float] = field(default_factory=list)  # s per front refresh
    load: tuple[float, float] = (0.0, 0.0)  # 1-min load average at start and end
    problems: list[str] = field(default_factory=list)

    @property
    def trials_per_s(self) -> float:
        return self.complete / self.seconds if self.seconds else 0.0


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", ENTRY, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False, env=_env())


def _start_worker(url: str, study: str, log: Path, cwd: Path,
                  stats: Path) -> subprocess.Popen[bytes]:
    from automtl.search.distributed import STATS_ENV

    fh = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, "worker", "--study", study,
                             "--storage", url], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                            env=_env(**{STATS_ENV: str(stats)}))
    fh.close()
    return proc


def _connections(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"))
                .scalar_one()) - 1  # this probe's own connection
    finally:
        engine.dispose()


def _running_by_pid(study: Any) -> list[tuple[Any, int]]:
    """The study's RUNNING trials with their worker's pid (-1: not tagged yet)."""
    from optuna.trial import TrialState

    return [(t, int(str(t.user_attrs.get("worker", ":-1")).rsplit(":", 1)[1]))
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]


def _mem_mb(pid: int) -> tuple[float, float]:
    """(PSS, USS) of process `pid` in MB from /proc/PID/smaps_rollup ((0, 0) once it exited)."""
    kb: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Private_Clean", "Private_Dirty"):
                    kb[key] = int(rest.split()[0])
    except (OSError, ValueError):  # exited between poll and read
        return 0.0, 0.0
    private = kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)
    return kb.get("Pss", 0) / 1024, private / 1024


def _available_mb() -> float:
    import psutil

    return psutil.virtual_memory().available / 2**20


def _non_dominated(points: dict[int, tuple[float, ...]]) -> set[int]:
    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return {n for n, v in points.items()
            if not any(dominates(w, v) for m, w in points.items() if m != n)}


def dump_trials(url: str, study_name: str, path: Path) -> None:
    """Every trial's state, retry chain, worker and fail reason as a TSV (a failed check's
    evidence, kept with the run folder)."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=url)
    with path.open("w") as fh:
        fh.write("number\tstate\tretry_history\tworker\tstart\tcomplete\tfail_reason\n")
        for t in study.get_trials(deepcopy=False):
            fh.write(f"{t.number}\t{t.state.name}\t{t.system_attrs.get('retry_history', '')}\t"
                     f"{t.user_attrs.get('worker', '')}\t{t.datetime_start}\t"
                     f"{t.datetime_complete}\t{t.user_attrs.get('fail_reason', '')}\n")


def check(url: str, study_name: str, target: int, killed: list[int], logs: list[Path]) -> list[str]:
    """The run's invariants; returns what failed (empty when all hold)."""
    import optuna
    from optuna.trial import TrialState

    from automtl.search.store import Store

    problems: list[str] = []
    study = optuna.load_study(study_name=study_name, storage=url)
    trials = study.get_trials(deepcopy=False)
    numbers = sorted(t.number for t in trials)
    if numbers != list(range(len(trials))):
        problems.append(f"trial numbers not 0..{len(trials) - 1} without gaps: {numbers}")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(complete) != target:
        problems.append(f"{len(complete)} COMPLETE trials, target {target}")
    stuck = [t.number for t in trials if t.state == TrialState.RUNNING]
    if stuck:
        problems.append(f"trials still RUNNING: {stuck}")
    by_number = {t.number: t for t in trials}
    for n in killed:
        if by_number.get(n) is None or by_number[n].state != TrialState.FAIL:
            problems.append(f"killed trial {n} is not FAIL")
        retries = [t.number for t in trials if t.system_attrs.get("retry_history", [None])[-1:]
                   == [n]]
        # a retry killed (the worker had moved on to one) is not retried again: its slot goes
        # to a new trial (distributed.orphan_cap), which the COMPLETE count checks
        want = 0 if n in by_number and by_number[n].system_attrs.get("retry_history") else 1
        if len(retries) != want:
            problems.append(f"killed trial {n} retried {len(retries)} times, not {want}")
    front = {r.trial_number for r in Store(url).front(study_name)}
    brute = _non_dominated({t.number: tuple(t.values) for t in complete})
    if front != brute:
        problems.append(f"Pareto table {sorted(front)} != brute-force front {sorted(brute)}")
    for log in logs:
        text = log.read_text(errors="replace")
        bad = [b for b in BAD_LOG if b in text]
        if bad:
            problems.append(f"{log.name}: {bad[0]!r} in the log: {text[-600:]}")
    return problems


def start_proxy(url: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`automtl storage-proxy` on `url` (any free port); returns it and its grpc:// address."""
    log = folder / "proxy.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-c", ENTRY, "storage-proxy", "--port", "0",
                                 "--threads", "256"], cwd=folder, stdout=fh,
                                stderr=subprocess.STDOUT, env=_env(AUTOMTL_STORAGE=url))
    deadline = time.monotonic() + 120
    while "workers:" not in log.read_text() and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    words = log.read_text().split()
    if proc.poll() is not None or "workers:" not in words:
        proc.kill()
        raise RuntimeError(f"storage proxy did not start: {log.read_text()[-800:]}")
    return proc, words[3]


def run_chaos(url: str, workers: int, target: int, kills: int, kill_every: float,
              folder: Path, deadline_s: float = 900, seed: int = 0,
              heartbeat: tuple[int, int] = (2, 10), worker_url: str | None = None,
              fork_server: Any = None, min_available_mb: float = 1024) -> ChaosResult:
    """One chaos run on the (empty) database `url`; see the module docstring. `heartbeat` is
    (interval, grace) in seconds: a grace well above the interval keeps a starved but live
    worker's trial from being failed as dead on a loaded machine. `worker_url`: what workers
    use as --storage (a storage proxy's grpc:// address); checks always read `url` directly.
    `fork_server`: a `forked_workers.ForkServer` to fork workers from (default: exec each).
    The run stops (workers killed, a problem reported) when available memory falls below
    `min_available_mb`. When a check fails, `folder/trials.tsv` lists every trial."""
    import optuna
    from optuna.trial import TrialState

    from automtl.search.distributed import died

    rng = random.Random(seed)
    name = f"chaos{workers}"
    preset = write_study(folder, name, target)
    made = _cli("study", "create", "--study-config", str(preset), "--storage", worker_url or url,
                "--heartbeat-interval", str(heartbeat[0]), "--grace-period", str(heartbeat[1]),
                cwd=folder)
    if made.returncode != 0:
        raise RuntimeError(f"study create failed: {made.stdout[-800:]}{made.stderr[-800:]}")
    logs: list[Path] = []
    procs: dict[int, subprocess.Popen[bytes]] = {}
    stats = folder / "stats"
    stats.mkdir(exist_ok=True)
    load0 = os.getloadavg()[0]

    def spawn() -> None:
        log = folder / f"worker{len(logs)}.log"
        logs.append(log)
        if fork_server is None:
            p: Any = _start_worker(worker_url or url, name, log, folder, stats)
        else:
            from automtl.search.distributed import STATS_ENV

            p = fork_server.spawn(["worker", "--study", name, "--storage", worker_url or url],
                                  log, {STATS_ENV: str(stats)})
        procs[p.pid] = p

    for _ in range(workers):
        spawn()
    study = optuna.load_study(study_name=name, storage=url)
    killed: list[int] = []
    kills_done, peak, mem, t0, stopped = 0, 0, [0.0, 0.0, 0.0], time.monotonic(), ""
    next_kill, next_mem = t0 + kill_every, t0
    while any(p.poll() is None for p in procs.values()):
        now = time.monotonic()
        if now - t0 > deadline_s:
            stopped = f"deadline of {deadline_s:.0f} s reached: workers killed"
        elif _available_mb() < min_available_mb:
            stopped = (f"available memory fell to {_available_mb():.0f} MB: workers killed "
                       "before the OOM killer")
        if stopped:
            for p in procs.values():
                p.kill()
            break
        peak = max(peak, _connections(url))
        if now >= next_mem:  # smaps_rollup walks page tables: not every 0.3 s for 64 workers
            sizes = [_mem_mb(p.pid) for p in procs.values() if p.poll() is None]
            mem = [max(mem[0], max((s[0] for s in sizes), default=0.0)),
                   max(mem[1], max((s[1] for s in sizes), default=0.0)),
                   max(mem[2], sum(s[0] for s in sizes))]
            next_mem = now + 2.0
        if kills_done < kills and now >= next_kill:
            # first attempts only: a retry killed again is not retried (max_retry is 1)
            mine = [(t, pid) for t, pid in _running_by_pid(study)
                    if pid in procs and procs[pid].poll() is None
                    and not t.system_attrs.get("retry_history")]
            if mine:
                _, pid = rng.choice(mine)
                procs[pid].kill()
                procs[pid].wait()
                kills_done += 1
                # the trial it was running when it died: short trials (0.3 s through the proxy)
                # may have ended between the listing and the kill, and the worker be in its next
                # trial, or between trials (then no trial was killed)
                killed += [t.number for t, owner in _running_by_pid(study) if owner == pid]
                spawn()  # a replacement, as a cluster scheduler would start
                next_kill = now + kill_every
        time.sleep(0.3)
    seconds = time.monotonic() - t0
    trials = study.get_trials(deepcopy=False)
    result = ChaosResult(workers, target, seconds,
                         sum(t.state == TrialState.COMPLETE for t in trials),
                         sum(t.state == TrialState.FAIL for t in trials), killed, peak, *mem,
                         starved=[t.number for t in trials if died(t) and t.number not in killed],
                         kills=kills_done, load=(load0, os.getloadavg()[0]))
    from automtl.search.distributed import read_stats

    for ws in read_stats(stats):
        result.lock_wait += ws.lock_wait
        result.lock_hold += ws.lock_hold
        result.front_refresh += ws.front_refresh
    killed_logs = {p.pid for p in procs.values() if p.returncode == -signal.SIGKILL}
    live_logs = [log for log, p in zip(logs, procs.values()) if p.pid not in killed_logs]
    result.problems = check(url, name, target, killed, live_logs)
    if stopped:
        result.problems.insert(0, stopped)
    if result.problems:
        dump_trials(url, name, folder / "trials.tsv")
    return result


def _ms(seconds: list[float]) -> str:
    """"mean/p95/max" in milliseconds."""
    if not seconds:
        return "-"
    xs = sorted(seconds)
    p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
    return f"{1e3 * sum(xs) / len(xs):.0f}/{1e3 * p95:.0f}/{1e3 * xs[-1]:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--target", type=int, default=200)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--kill-every", type=float, default=3.0)
    ap.add_argument("--deadline", type=float, default=1800, help="seconds per run")
    ap.add_argument("--max-connections", type=int, default=400)
    ap.add_argument("--via", nargs="+", choices=("direct", "proxy"), default=["direct"],
                    help="workers on the database URL, through `automtl storage-proxy`, or both")
    ap.add_argument("--start", choices=("exec", "fork"), default="exec",
                    help="exec: each worker a new `python -c automtl worker` process; fork: "
                         "forked from one process that imported everything (shared pages)")
    ap.add_argument("--mb-per-worker", type=float, default=None,
                    help="memory (PSS) to reserve per worker (default 320 exec, 200 fork); a "
                         "row that does not fit in the available memory minus 2 GiB is skipped")
    args = ap.parse_args()
    mb_per_worker = args.mb_per_worker or (320.0 if args.start == "exec" else 200.0)
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from forked_workers import ForkServer
    from pg import PostgresServer, pg_bin  # the suite's throwaway server

    bin_dir = pg_bin()
    if bin_dir is None:
        sys.exit("PostgreSQL binaries not found (apt-get install postgresql)")
    server = PostgresServer(bin_dir, max_connections=args.max_connections)
    server.start()
    print(f"{os.cpu_count()} cores; target {args.target} trials of 1 epoch on 2k rows; "
          f"SIGKILL every {args.kill_every:.0f} s (at most {args.kills}); workers by "
          f"{args.start}")
    print("lock wait / hold, front refresh: mean / p95 / max in ms over all workers' events; "
          "wait share = lock wait summed over workers / (workers x wall); worker MB: mean PSS "
          "(all MB / workers) / largest USS, all MB: largest sum of workers' PSS; starved: "
          "heartbeat-FAILed trials of live workers; killed: SIGKILLs / trials they killed")
    print(f"{'workers':>7} {'trials/s':>8} {'wall s':>6} {'complete':>8} {'killed':>6} "
          f"{'starved':>7} {'peak conns':>10} {'worker MB':>9} {'all MB':>6} "
          f"{'lock wait ms':>17} {'share':>6} {'lock hold ms':>17} {'front refresh ms':>17} "
          f"{'load':>9}  checks")
    try:
        for n, via in [(n, via) for n in args.workers for via in args.via]:
            free_mb = _available_mb()
            if n * mb_per_worker > free_mb - 2048:
                print(f"{n:7d} skipped [{via}]: {n} x {mb_per_worker:.0f} MB (PSS) does not fit "
                      f"in {free_mb:.0f} MB available (minus 2 GiB)", flush=True)
                continue
            tmp = Path(tempfile.mkdtemp(prefix=f"workers_scale-{n}-{via}-"))
            db = server.create_database()
            proxy, grpc_url = start_proxy(db, tmp) if via == "proxy" else (None, None)
            forks = ForkServer(_env(), tmp) if args.start == "fork" else None
            try:
                r = run_chaos(db, n, args.target, args.kills, args.kill_every, tmp,
                              deadline_s=args.deadline, worker_url=grpc_url, fork_server=forks)
            finally:
                if forks is not None:
                    forks.close()
                if proxy is not None:
                    proxy.send_signal(signal.SIGINT)
                    proxy.wait(timeout=60)
            status = f"[{via}] " + ("ok" if not r.problems else "; ".join(r.problems)[:300])
            if r.problems:
                status += f" (run folder kept: {tmp})"
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            share = sum(r.lock_wait) / (n * r.seconds) if r.seconds else 0.0
            # mean PSS at the fullest poll (the largest single PSS grows as finished workers exit
            # and the survivors share the fork server's pages among fewer) / largest USS
            mem = f"{r.peak_all_pss_mb / n:.0f}/{r.peak_worker_uss_mb:.0f}"
            print(f"{n:7d} {r.trials_per_s:8.2f} {r.seconds:6.0f} {r.complete:8d} "
                  f"{f'{r.kills}/{len(r.killed)}':>6} {len(r.starved):7d} {r.peak_connections:10d} {mem:>9} "
                  f"{r.peak_all_pss_mb:6.0f} {_ms(r.lock_wait):>17} {share:6.1%} "
                  f"{_ms(r.lock_hold):>17} {_ms(r.front_refresh):>17} "
                  f"{r.load[0]:4.1f}-{r.load[1]:<4.1f}  {status}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
