"""Many workers, one study: the worker loop, crash recovery and the local multi-process launcher.

A worker (`run_worker`, CLI `automtl worker`) joins an existing study in a shared Optuna RDB
storage (PostgreSQL across machines, or one SQLite file on one machine) and runs trials until
the study's target trial count is reached. Each trial is the search's own: `optimize_study` of
`automtl.search.runner` with one trial (same objective, per-epoch metrics, pruning, front
refresh); this module only decides when a trial may start.

- Heartbeats: every trial of a worker beats every `heartbeat_interval` seconds (Optuna's RDB
  heartbeat). A RUNNING trial whose beat is older than `grace_period` belongs to a dead worker
  (SIGKILL, OOM, preemption); the next worker to look marks it FAIL, and Optuna's
  `RetryFailedTrialCallback(max_retry=1)` enqueues its parameters once as a WAITING trial, which
  the next `ask` of any worker picks up.
- Target count: a study's target (`target_trials` user attribute) counts *trial slots*: every
  trial except one superseded by its retry. COMPLETE, PRUNED and genuinely FAILed trials (NaN,
  invalid combination: they would fail again) fill their slot; a trial FAILed because its worker
  died hands its slot to its retry, and so does one stopped by Ctrl-C. Before creating a trial a worker takes a per-study lock
  (PostgreSQL advisory lock, a lock file beside a SQLite database) so that counting slots and
  creating the trial are atomic: N workers never overshoot the target. When the target is
  reached but trials are still RUNNING, workers wait (checking heartbeats) instead of leaving,
  so a worker dying near the end still gets its trial retried.
- SQLite: several processes on one file are made safe by a 60 s busy timeout on every
  connection (see `store._engine_kwargs`), WAL journaling (readers never block the writer) and
  the same study lock. Only processes on ONE machine may share a SQLite file (file locks are not
  reliable on network file systems): use PostgreSQL across machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import optuna
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from automtl.errors import AutomtlError
from automtl.search.enqueue import ENQUEUED_ATTR, WarmStart
from automtl.search.runner import (
    SearchListener,
    SearchResult,
    make_sampler,
    optimize_study,
    prepare_study,
)
from automtl.search.store import (
    Store,
    _engine_kwargs,
    _wrap_db_error,
    make_storage,
    mask_url,
    objective_names,
    sqlite_path,
    study_names,
)
from automtl.search.study_config import StudyConfig

# Study user attributes written by `automtl study create` / `automtl search` and read here.
TARGET_ATTR = "target_trials"
HEARTBEAT_ATTR = "heartbeat"  # {"interval": s, "grace": s}
# Trial user attribute naming the worker running it ("host:pid"), shown in the progress view.
WORKER_ATTR = "worker"


@dataclass(frozen=True)
class Heartbeat:
    """Heartbeat settings: a trial beats every `interval` s; no beat for `grace` s = dead."""

    interval: int = 10
    grace: int = 60

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.grace <= 0:
            raise AutomtlError(f"heartbeat: interval and grace period must be > 0 seconds, got "
                               f"{self.interval} and {self.grace}")
        if self.grace < 2 * self.interval:
            raise AutomtlError(f"heartbeat: grace period ({self.grace} s) must be at least twice "
                               f"the interval ({self.interval} s), or live workers look dead")

    @classmethod
    def of_study(cls, study: optuna.Study) -> Heartbeat:
        """The settings stored with the study, else the defaults."""
        raw = study.user_attrs.get(HEARTBEAT_ATTR) or {}
        default = cls()
        return cls(int(raw.get("interval", default.interval)), int(raw.get("grace", default.grace)))


def _retry_callback(max_retry: int) -> Callable[[optuna.Study, FrozenTrial], None]:
    # Optuna 4.9 renamed RetryFailedTrialCallback; same behaviour, keep working on both.
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) \
        or optuna.storages.RetryFailedTrialCallback
    return cls(max_retry=max_retry)


def worker_storage(url: str, heartbeat: Heartbeat) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats and one retry of a dead worker's trial."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return make_storage(
            url, must_exist=True,
            heartbeat_interval=heartbeat.interval, grace_period=heartbeat.grace,
            heartbeat_stale_trial_callback=_retry_callback(max_retry=1))


def enable_sqlite_wal(url: str) -> None:
    """Switch a SQLite database to WAL journaling (persistent; no-op for other backends)."""
    if sqlite_path(url) is None:
        return
    engine = sa.create_engine(url, **_engine_kwargs(url))
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    except sa.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise AutomtlError(f"--storage {mask_url(url)}: cannot open the SQLite database for "
                           f"several workers ({detail}); check the file is writable") from None
    finally:
        engine.dispose()


# -- the per-study lock -------------------------------------------------------------------------


class StudyLock(Protocol):
    """A cross-process mutex around "count trial slots, then create a trial"."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class _FileLock:
    """flock() on a file beside the SQLite database: processes on one machine."""

    def __init__(self, path: Path) -> None:
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AutomtlError(f"{path}: cannot create the workers' lock file beside the SQLite "
                               f"database ({exc.strerror}); make the folder writable") from None
        self._held = False

    def acquire(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.release()
        os.close(self._fd)


class _AdvisoryLock:
    """A PostgreSQL session advisory lock (freed by the server when a worker's connection dies)."""

    def __init__(self, url: str, key: int) -> None:
        self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self._conn: sa.Connection | None = None
        self._key = key
        self._held = False

    def _connection(self) -> sa.Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def acquire(self) -> None:
        self._connection().execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        self._held = True

    def release(self) -> None:
        if self._held and self._conn is not None:
            self._held = False
            self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})

    def close(self) -> None:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            self.release()
        if self._conn is not None:
            self._conn.close()
        self._engine.dispose()


class _ThreadLock:
    """Fallback for other backends: serialises this process only (documented limitation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = False

    def acquire(self) -> None:
        self._lock.acquire()
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()

    def close(self) -> None:
        self.release()


def study_lock(url: str, study_name: str) -> StudyLock:
    """The cross-process lock of one study in the storage at `url`."""
    path = sqlite_path(url)
    if path is not None:
        return _FileLock(path.with_name(path.name + "-lock"))
    backend = sa.engine.make_url(url).get_backend_name()
    if backend == "postgresql":
        digest = hashlib.sha1(f"automtl-study:{study_name}".encode()).digest()
        return _AdvisoryLock(url, int.from_bytes(digest[:8], "big", signed=True))
    return _ThreadLock()


# -- the study's trial budget -------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Trial slots of a study: how many are used, by state, against the target."""

    target: int | None
    states: dict[str, int]  # slot-filling trials by state name (superseded FAILs excluded)
    retried: int  # FAILed trials of dead workers whose configuration was re-queued

    @property
    def used(self) -> int:
        return sum(self.states.values())

    @property
    def finished(self) -> int:
        """Slots whose trial reached a final state (COMPLETE, PRUNED or FAIL)."""
        return sum(self.states.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))

    def next_step(self) -> Literal["ask", "wait", "done"]:
        """ask: create (or pop a retry) now; wait: slots full but trials still running."""
        if self.states.get("WAITING", 0):
            return "ask"
        if self.target is None or self.used < self.target:
            return "ask"
        return "wait" if self.states.get("RUNNING", 0) else "done"


def superseded_trials(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of trials replaced by a retry (each retry names its predecessor last)."""
    out: set[int] = set()
    for t in trials:
        history = t.system_attrs.get("retry_history")
        if history:
            out.add(int(history[-1]))
    return out


def study_target(study: optuna.Study) -> int | None:
    """The study's target trial count (user attribute `target_trials`), None = unlimited.

    Studies made by a plain `automtl search` have none: workers joining them run until their
    own `--n-trials` / `--timeout`.
    """
    value = study.user_attrs.get(TARGET_ATTR)
    return int(value) if value is not None else None


def interrupted(trial: FrozenTrial) -> bool:
    """A trial stopped by Ctrl-C (FAIL with an "interrupted ..." reason): it frees its slot."""
    reason = trial.user_attrs.get("fail_reason")
    return trial.state == TrialState.FAIL and str(reason or "").startswith("interrupted")


def budget(study: optuna.Study, target: int | None = None) -> Budget:
    """Count the study's trial slots now (target: the study's own unless given)."""
    trials = study.get_trials(deepcopy=False)
    gone = superseded_trials(trials)
    states = Counter(t.state.name for t in trials if t.number not in gone and not interrupted(t))
    return Budget(target=study_target(study) if target is None else target,
                  states=dict(states), retried=len(gone))


def set_target(study: optuna.Study, target: int) -> None:
    """Set the study's target trial count (all workers stop when its slots are used)."""
    if target < 0:
        raise AutomtlError(f"target trial count must be >= 0, got {target}")
    study.set_user_attr(TARGET_ATTR, int(target))


# -- the worker loop ----------------------------------------------------------------------------


@dataclass
class WorkerResult:
    """What one worker did."""

    worker: str
    trials: list[int] = field(default_factory=list)  # numbers of the trials it ran
    states: dict[str, int] = field(default_factory=dict)
    stopped_by: str = "target"  # target | n_trials | timeout | interrupted
    seconds: float = 0.0


def worker_name() -> str:
    """This process's worker id, "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _WorkerListener(SearchListener):
    """Releases the study lock once the trial exists and tags it with the worker's name."""

    def __init__(self, study: optuna.Study, lock: StudyLock, me: str,
                 on_trial: Callable[[FrozenTrial, Budget], None] | None,
                 result: WorkerResult) -> None:
        self.study, self.lock, self.me = study, lock, me
        self.on_trial, self.result = on_trial, result

    def on_trial_start(self, number: int, index: int, config: Any) -> None:
        # The lock was taken before Optuna's stale-trial check and ask(); the trial now exists
        # (or a retry was popped), so other workers may count slots again.
        self.lock.release()
        storage = self.study._storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        storage.set_trial_user_attr(trial_id, WORKER_ATTR, self.me)

    def on_trial_end(self, trial: FrozenTrial, front: Any) -> None:
        self.lock.release()  # the trial failed before training started
        self.result.trials.append(trial.number)
        self.result.states[trial.state.name] = self.result.states.get(trial.state.name, 0) + 1
        if self.on_trial is not None:
            self.on_trial(trial, budget(self.study))


def _worker_sampler(study: optuna.Study) -> optuna.samplers.BaseSampler:
    """The study's sampler kind, seeded per process (equal seeds would repeat configurations)."""
    cfg = study.user_attrs.get("study_config") or {}
    seed = (int(cfg.get("seed", 0)) * 7919 + os.getpid()) % (2**31)
    return make_sampler(str(cfg.get("sampler", "tpe")), seed, int(cfg.get("n_trials", 20)))


def join_study(storage_url: str, study_name: str,
               heartbeat: Heartbeat | None = None) -> tuple[optuna.Study, Heartbeat]:
    """Load an existing study through a heartbeat storage (settings: given, else the study's)."""
    probe = make_storage(storage_url, must_exist=True)
    try:
        names = study_names(probe)
        if study_name not in names:
            raise AutomtlError(f"no study named {study_name!r} in {mask_url(storage_url)} "
                               f"(available: {', '.join(names) or 'none'}); create it with "
                               "`automtl study create` or `automtl search`")
        hb = heartbeat or Heartbeat.of_study(optuna.load_study(study_name=study_name,
                                                               storage=probe))
    finally:
        probe.engine.dispose()
    storage = worker_storage(storage_url, hb)
    study = optuna.load_study(study_name=study_name, storage=storage)
    if "study_config" not in study.user_attrs:
        raise AutomtlError(f"study {study_name!r} in {mask_url(storage_url)} was not made by "
                           "automtl (no study_config); create it with `automtl study create`")
    study.sampler = _worker_sampler(study)
    return study, hb


def run_worker(
    storage_url: str,
    study_name: str,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    device: str | None = None,
    heartbeat: Heartbeat | None = None,
    on_trial: Callable[[FrozenTrial, Budget], None] | None = None,
) -> WorkerResult:
    """Join study `study_name` and run its trials until its target count is reached.

    Each trial is the search's own (`optimize_study` with one trial: same objective, per-epoch
    metrics, pruning, front refresh). Stops earlier after `n_trials` trials of this worker or
    `timeout` seconds. `on_trial` is called after each trial with it and the study's budget.
    """
    if n_trials is not None and n_trials < 1:
        raise AutomtlError(f"--n-trials must be >= 1, got {n_trials}")
    if timeout is not None and timeout <= 0:
        raise AutomtlError(f"--timeout must be > 0 seconds, got {timeout}")
    study, hb = join_study(storage_url, study_name, heartbeat)
    if study_target(study) is None and n_trials is None and timeout is None:
        raise AutomtlError(f"study {study_name!r} has no target trial count (made by a plain "
                           "`automtl search`); pass --n-trials N or --timeout S, or make studies "
                           "for workers with `automtl study create`")
    enable_sqlite_wal(storage_url)
    me = worker_name()
    result = WorkerResult(worker=me)
    lock = study_lock(storage_url, study_name)
    listener = _WorkerListener(study, lock, me, on_trial, result)
    start = time.monotonic()
    try:
        while True:
            if n_trials is not None and len(result.trials) >= n_trials:
                result.stopped_by = "n_trials"
                break
            if timeout is not None and time.monotonic() - start >= timeout:
                result.stopped_by = "timeout"
                break
            lock.acquire()
            try:
                step = budget(study).next_step()
                if step == "wait":
                    # Slots are full but trials are RUNNING: one may belong to a dead worker.
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        optuna.storages.fail_stale_trials(study)
                    step = budget(study).next_step()
                if step == "done":
                    result.stopped_by = "target"
                    break
                if step == "wait":
                    lock.release()
                    time.sleep(min(2.0, hb.interval))
                    continue
                run = optimize_study(study, storage_url=storage_url, n_trials=1, device=device,
                                     listener=listener)
            finally:
                lock.release()
            if run.interrupted:
                result.stopped_by = "interrupted"
                break
    except KeyboardInterrupt:
        result.stopped_by = "interrupted"
    except optuna.exceptions.StorageInternalError as exc:  # e.g. the database became read-only
        raise _wrap_db_error(storage_url, exc.__cause__ or exc) from None
    finally:
        lock.close()
        result.seconds = time.monotonic() - start
    return result


def prepare_shared_study(cfg: StudyConfig, storage_url: str, study_name: str | None = None, *,
                         n_trials: int | None = None, heartbeat: Heartbeat | None = None,
                         must_be_new: bool = False,
                         warm_start: WarmStart | None = None) -> optuna.Study:
    """Create (or resume) the study of `cfg` for workers: `n_trials` (default `cfg.n_trials`)
    more trial slots become its target, heartbeat settings are stored with it."""
    name = study_name or cfg.name
    if must_be_new:
        rdb = make_storage(storage_url)
        try:
            if name in optuna.get_all_study_names(rdb):
                raise AutomtlError(f"study {name!r} already exists in {mask_url(storage_url)}; "
                                   "join it with `automtl worker --study "
                                   f"{name}` or pass another --study-name")
        finally:
            rdb.engine.dispose()
    study = prepare_study(cfg, storage_url, name, warm_start=warm_start)
    extra = cfg.n_trials if n_trials is None else n_trials
    # enqueued baselines / warm-start points are among the `extra` new trials, as in-process
    seeded = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                 if ENQUEUED_ATTR in t.user_attrs)
    set_target(study, budget(study, target=0).used - seeded + extra)
    hb = heartbeat or Heartbeat.of_study(study)
    study.set_user_attr(HEARTBEAT_ATTR, {"interval": hb.interval, "grace": hb.grace})
    return study


# -- the local multi-process launcher -------------------------------------------------------------

# Child processes run the CLI's `worker` command; the storage URL travels in the environment so a
# password never shows in `ps`.
_ENTRY = "import sys; from automtl.cli import main; sys.exit(main(sys.argv[1:]))"
STORAGE_ENV = "AUTOMTL_STORAGE"


def parse_devices(devices: str | Sequence[str] | None) -> list[str]:
    """"0,1" -> ["cuda:0", "cuda:1"]; names such as cpu, cuda:1, mps pass through."""
    if devices is None:
        return []
    items = devices.split(",") if isinstance(devices, str) else list(devices)
    out = []
    for raw in items:
        d = raw.strip()
        if not d:
            raise AutomtlError(f"--devices {devices!r}: empty entry; use e.g. --devices 0,1 or "
                               "--devices cpu,cpu")
        out.append(f"cuda:{d}" if d.isdigit() else d)
    return out


def expand_devices(devices: Sequence[str], trials_per_device: int) -> list[str]:
    """Each device `trials_per_device` times (round-robin: 0,1,0,1) so that K workers, i.e. K
    concurrent trials, share each GPU, for models too small to fill one. Refused unless every
    device is CUDA: on CPU, concurrent trials only split the same cores (use --workers N)."""
    if trials_per_device < 1:
        raise AutomtlError(f"--trials-per-device {trials_per_device}: must be >= 1")
    if trials_per_device == 1:
        return list(devices)
    cpu = [d for d in devices if not d.startswith("cuda")]
    if not devices or cpu:
        raise AutomtlError(
            f"--trials-per-device {trials_per_device} runs several trials on each GPU and needs "
            f"CUDA devices (--devices 0,1 or --device cuda), got {', '.join(devices) or 'none'}; "
            "on CPU use --workers N instead (CPU workers split the cores)")
    return [d for _ in range(trials_per_device) for d in devices]


@dataclass
class WorkerProcess:
    """One launched worker process."""

    index: int
    device: str | None
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}:{self.process.pid}"


@dataclass
class LaunchResult:
    """The outcome of `launch_workers`."""

    returncodes: list[int]
    budget: Budget
    seconds: float
    log_dir: Path

    @property
    def ok(self) -> bool:
        return all(rc == 0 for rc in self.returncodes)


def start_workers(
    storage_url: str,
    study_name: str,
    n_workers: int,
    *,
    devices: Sequence[str] = (),
    n_trials: int | None = None,
    timeout: float | None = None,
    heartbeat: Heartbeat | None = None,
    log_dir: Path | None = None,
) -> list[WorkerProcess]:
    """Start `n_workers` `automtl worker` processes (devices assigned round-robin)."""
    if n_workers < 1:
        raise AutomtlError(f"--workers must be >= 1, got {n_workers}")
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix=f"automtl-workers-{os.getpid()}-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, STORAGE_ENV: storage_url, "PYTHONUNBUFFERED": "1"}
    procs = []
    for i in range(n_workers):
        device = devices[i % len(devices)] if devices else None
        if (device is None or device == "cpu") and "OMP_NUM_THREADS" not in os.environ:
            # CPU workers share the cores instead of each starting one thread per core.
            env = {**env, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n_workers))}
        cmd = [sys.executable, "-c", _ENTRY, "worker", "--study", study_name]
        if device:
            cmd += ["--device", device]
        if n_trials is not None:
            cmd += ["--n-trials", str(n_trials)]
        if timeout is not None:
            cmd += ["--timeout", str(timeout)]
        if heartbeat is not None:
            cmd += ["--heartbeat-interval", str(heartbeat.interval),
                    "--grace-period", str(heartbeat.grace)]
        log = log_dir / f"worker-{i}.log"
        with log.open("wb") as fh:
            # Own session: a terminal Ctrl-C reaches only the launcher, which forwards exactly
            # one SIGINT (a second one could interrupt a worker while it stores its trial).
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(WorkerProcess(i, device, proc, log))
    return procs


def _latest_epochs(storage_url: str, study_name: str, trials: Sequence[int]) -> dict[int, int]:
    """Trial -> last recorded epoch, for the running trials shown in the progress view."""
    if not trials:
        return {}
    from automtl.search.store import epoch_metrics

    t = epoch_metrics.c
    q = (sa.select(t.trial_number, sa.func.max(t.epoch))
         .where(t.study_name == study_name, t.trial_number.in_(list(trials)))
         .group_by(t.trial_number))
    engine = sa.create_engine(storage_url, poolclass=sa.pool.NullPool, **{
        k: v for k, v in _engine_kwargs(storage_url).items() if k != "pool_pre_ping"})
    try:
        with engine.connect() as conn:
            return {int(n): int(e) for n, e in conn.execute(q)}
    except sa.exc.SQLAlchemyError:  # tables not created yet: nothing to show
        return {}
    finally:
        engine.dispose()


def _progress_table(study: optuna.Study, procs: Sequence[WorkerProcess], b: Budget,
                    epochs: dict[int, int], started: float) -> Any:
    from rich.table import Table

    elapsed = time.monotonic() - started
    done = b.finished
    eta = ""
    if b.target and done:
        eta = f", ETA {max(0.0, elapsed / done * (b.target - done)):.0f} s"
    target = b.target if b.target is not None else "∞"
    title = (f"study {study.study_name}: {done}/{target} trials finished "
             f"({b.states.get('COMPLETE', 0)} complete, {b.states.get('PRUNED', 0)} pruned, "
             f"{b.states.get('FAIL', 0)} failed, {b.retried} retried), "
             f"{elapsed:.0f} s{eta}")
    table = Table(title=title, title_justify="left")
    for col in ("worker", "pid", "device", "status"):
        table.add_column(col)
    running = {t.user_attrs.get(WORKER_ATTR): t
               for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    for p in procs:
        rc = p.process.poll()
        if rc is not None:
            status = "finished" if rc == 0 else f"exited with code {rc}"
        elif p.name in running:
            t = running[p.name]
            status = f"trial {t.number}, epoch {epochs.get(t.number, 0) + 1} running"
        else:
            status = "starting / waiting"
        table.add_row(str(p.index), str(p.process.pid), p.device or "auto", status)
    return table


def _trial_line(t: FrozenTrial, names: Sequence[str]) -> str:
    who = t.user_attrs.get(WORKER_ATTR, "?")
    line = f"trial {t.number} {t.state.name} ({who})"
    if t.values:
        line += " " + " ".join(f"{n}={v:.4f}" for n, v in zip(names, t.values))
    reason = t.user_attrs.get("fail_reason")
    if t.state == TrialState.FAIL:
        retry = "; its worker died, retried" if reason is None else f": {reason}"
        line += retry
    return line


def watch_workers(
    storage_url: str,
    study_name: str,
    procs: Sequence[WorkerProcess],
    *,
    console: Any = None,
    poll: float = 1.0,
) -> LaunchResult:
    """Show one combined progress view of local workers until they all exit."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    storage = make_storage(storage_url, must_exist=True)
    study = optuna.load_study(study_name=study_name, storage=storage)
    names = objective_names(study)
    started = time.monotonic()
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    live = Live(console=console, auto_refresh=False, transient=True) if console.is_terminal \
        else contextlib.nullcontext()

    def tick() -> Budget:
        b = budget(study)
        for t in study.get_trials(deepcopy=False):
            if t.state.is_finished() and t.number not in seen:
                seen.add(t.number)
                console.print(_trial_line(t, names), highlight=False)
        if isinstance(live, Live):
            running = [t.number for t in study.get_trials(deepcopy=False,
                                                          states=(TrialState.RUNNING,))]
            epochs = _latest_epochs(storage_url, study_name, running)
            live.update(_progress_table(study, procs, b, epochs, started), refresh=True)
        return b

    try:
        with live:
            while any(p.process.poll() is None for p in procs):
                tick()
                time.sleep(poll)
            b = tick()
    except KeyboardInterrupt:
        for p in procs:  # workers mark their running trial FAIL and exit (Ctrl-C semantics)
            if p.process.poll() is None:
                p.process.send_signal(2)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.process.wait(timeout=30)
        raise
    finally:
        storage.engine.dispose()
    codes = [int(p.process.returncode) for p in procs]
    for p, rc in zip(procs, codes):
        if rc != 0:
            tail = p.log.read_text(errors="replace").strip().splitlines()[-3:]
            console.print(f"worker {p.index} (pid {p.process.pid}) exited with code {rc}; "
                          f"log {p.log}: " + " | ".join(tail), highlight=False)
    log_dir = procs[0].log.parent if procs else Path(".")
    return LaunchResult(codes, b, time.monotonic() - started, log_dir)


def launch_workers(
    storage_url: str,
    study_name: str,
    n_workers: int | None,
    *,
    devices: str | Sequence[str] | None = None,
    timeout: float | None = None,
    heartbeat: Heartbeat | None = None,
    log_dir: Path | None = None,
    console: Any = None,
    trials_per_device: int = 1,
) -> LaunchResult:
    """Run `n_workers` local worker processes on an existing study and show their progress.

    `devices` ("0,1" or a list) are assigned round-robin (`n_workers` None: one per device,
    else 1), each `trials_per_device` times (CUDA only); SQLite databases are switched to WAL
    first. Returns when every worker has exited.
    """
    devs = expand_devices(parse_devices(devices), trials_per_device)
    if devs and n_workers is None:
        n_workers = len(devs)
    enable_sqlite_wal(storage_url)
    procs = start_workers(storage_url, study_name, n_workers or 1, devices=devs, timeout=timeout,
                          heartbeat=heartbeat, log_dir=log_dir)
    return watch_workers(storage_url, study_name, procs, console=console)


def search_with_workers(
    cfg: StudyConfig,
    *,
    storage: str,
    study_name: str | None = None,
    n_workers: int | None = None,
    devices: str | Sequence[str] | None = None,
    device: str | None = None,
    console: Any = None,
    trials_per_device: int = 1,
    warm_start: WarmStart | None = None,
) -> SearchResult:
    """`automtl search --workers N [--devices 0,1] [--trials-per-device K]`: create or resume the
    study of `cfg`, add `cfg.n_trials` trial slots to its target, run local worker processes
    until it is reached."""
    devs = parse_devices(devices) or ([device] if device else [])
    expand_devices(devs, trials_per_device)  # refuse CPU before the study is touched
    study = prepare_shared_study(cfg, storage, study_name, warm_start=warm_start)
    before = {t.number for t in study.get_trials(deepcopy=False)
              if t.state != optuna.trial.TrialState.WAITING}
    launched = launch_workers(storage, study.study_name, n_workers, devices=devs,
                              timeout=cfg.timeout, console=console,
                              trials_per_device=trials_per_device)
    if not launched.ok:
        bad = [f"worker {i}: exit code {rc}" for i, rc in enumerate(launched.returncodes) if rc]
        raise AutomtlError(f"{len(bad)} of {len(launched.returncodes)} workers failed ("
                           f"{'; '.join(bad)}); their logs are in {launched.log_dir}; rerun to "
                           "resume")
    study = optuna.load_study(study_name=study.study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    states = dict(Counter(t.state.name for t in trials))
    new = sorted(t.number for t in trials if t.number not in before)
    front = Store(storage).refresh_front(study)
    return SearchResult(study.study_name, mask_url(storage), objective_names(study), front,
                        len(new), states, launched.seconds, False, new)


__all__ = [
    "HEARTBEAT_ATTR",
    "STORAGE_ENV",
    "TARGET_ATTR",
    "WORKER_ATTR",
    "Budget",
    "Heartbeat",
    "LaunchResult",
    "StudyLock",
    "WorkerProcess",
    "WorkerResult",
    "budget",
    "enable_sqlite_wal",
    "expand_devices",
    "interrupted",
    "join_study",
    "launch_workers",
    "parse_devices",
    "prepare_shared_study",
    "run_worker",
    "search_with_workers",
    "set_target",
    "start_workers",
    "study_lock",
    "study_target",
    "superseded_trials",
    "watch_workers",
    "worker_name",
    "worker_storage",
]
