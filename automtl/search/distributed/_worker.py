"""The worker loop: join a study, take the study lock, count slots, run one trial, repeat.

Heartbeats and the retry of a dead worker's trial are Optuna's (see `automtl.search.distributed`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from automtl.errors import AutomtlError
from automtl.search import interrupt
from automtl.search.dburl import mask_url
from automtl.search.distributed._budget import Budget, budget, set_target, study_target
from automtl.search.distributed._stats import WorkerStats
from automtl.search.enqueue import WarmStart
from automtl.search.front import FrontRow
from automtl.search.locks import StudyLock, study_lock
from automtl.search.meta import StudyMeta, TrialMeta, count_states
from automtl.search.prepare import prepare_study
from automtl.search.runner import SearchListener, optimize_study
from automtl.search.samplers import make_sampler
from automtl.search.storage import (
    close_storage,
    db_error,
    enable_sqlite_wal,
    make_storage,
    study_names,
)
from automtl.search.store import Store
from automtl.search.study_config import StudyConfig



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
        raw = StudyMeta.read(study).heartbeat or {}
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


@dataclass
class WorkerResult:
    """What one worker did."""

    worker: str
    trials: list[int] = field(default_factory=list)  # numbers of the trials it ran
    states: dict[str, int] = field(default_factory=dict)
    stopped_by: str = "target"  # target | n_trials | timeout | interrupted | budget
    seconds: float = 0.0


def worker_name() -> str:
    """This process's worker id, "host:pid" ("host:pid.i" for trial process i of a device
    group, see `run_worker_group`)."""
    from automtl.train.sharing import WORKER_NAME_ENV

    return os.environ.get(WORKER_NAME_ENV) or f"{socket.gethostname()}:{os.getpid()}"


class _TimedLock:
    """The study lock, recording into `stats` how long each acquire waited and each hold lasted."""

    def __init__(self, lock: StudyLock, stats: WorkerStats) -> None:
        self._lock, self._stats = lock, stats

    def acquire(self) -> None:
        t0 = time.perf_counter()
        self._lock.acquire()
        self._stats.acquired(time.perf_counter() - t0)

    def release(self) -> None:
        self._lock.release()
        self._stats.released()

    def close(self) -> None:
        self._lock.close()
        self._stats.released()


class _WorkerListener(SearchListener):
    """Releases the study lock once the trial exists and tags it with the worker's name."""

    def __init__(self, study: optuna.Study, lock: StudyLock, me: str,
                 on_trial: Callable[[FrozenTrial, Budget], None] | None,
                 result: WorkerResult, stats: WorkerStats) -> None:
        self.study, self.lock, self.me = study, lock, me
        self.on_trial, self.result, self.stats = on_trial, result, stats
        self.finished: list[FrozenTrial] = []

    def on_trial_created(self, trial: optuna.Trial) -> None:
        # The lock was taken before Optuna's stale-trial check and ask(); the trial now exists
        # (or a retry was popped), so other workers may count slots again.
        self.lock.release()
        TrialMeta.write(trial, worker=self.me)

    def on_front_refreshed(self, seconds: float) -> None:
        self.stats.front_refresh.append(seconds)

    def on_trial_end(self, trial: FrozenTrial, front: list[FrontRow]) -> None:
        self.lock.release()  # the trial failed before training started
        self.stats.trials += 1
        self.stats.save()
        self.result.trials.append(trial.number)
        self.finished.append(trial)
        self.result.states = count_states(self.finished)
        if self.on_trial is not None:
            self.on_trial(trial, budget(self.study))


def _worker_sampler(study: optuna.Study) -> optuna.samplers.BaseSampler:
    """The study's sampler kind, seeded per process (equal seeds would repeat configurations)."""
    cfg = StudyMeta.read(study).study_config or {}
    seed = (int(cfg.get("seed", 0)) * 7919 + os.getpid()) % (2**31)
    return make_sampler(str(cfg.get("sampler", "tpe")), seed, int(cfg.get("n_trials", 20)))


def _load_data(study: optuna.Study) -> None:
    """Load the study's data (memoised per process) and the training imports before the first
    study lock: under it, N workers starting together would take turns loading."""
    from automtl._typed import from_dict
    from automtl.config import DataConfig
    from automtl.data import load_dataset

    load_dataset(from_dict(DataConfig, StudyMeta.read(study).dataset))


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
        close_storage(probe)
    storage = worker_storage(storage_url, hb)
    study = optuna.load_study(study_name=study_name, storage=storage)
    if not StudyMeta.read(study).made_by_automtl:
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
    _load_data(study)
    me = worker_name()
    result = WorkerResult(worker=me)
    stats = WorkerStats(me)
    store: Store | None = None  # one pooled connection for all of this worker's trials
    lock = _TimedLock(study_lock(storage_url, study_name), stats)
    listener = _WorkerListener(study, lock, me, on_trial, result, stats)
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
                if store is None:  # under the lock: PostgreSQL's CREATE TABLE races otherwise
                    store = Store(storage_url)
                try:
                    run = optimize_study(study, storage_url=storage_url, n_trials=1,
                                         device=device, listener=listener, store=store)
                except ValueError as exc:
                    if not str(exc).startswith("Cannot tell a"):
                        raise
                    # This worker's heartbeat went stale for longer than the grace period (a
                    # starved machine), so another worker FAILed the trial and queued its retry.
                    logging.getLogger("automtl.worker").warning(
                        "a trial of %s was failed by another worker after missing heartbeats "
                        "for %d s (its retry runs elsewhere); on a loaded machine raise "
                        "--grace-period", me, hb.grace)
                    continue
            finally:
                lock.release()
            if run.interrupted or interrupt.requested():  # see automtl.search.interrupt
                result.stopped_by = "interrupted"
                break
            if run.trials_run == 0:  # a budgeted study whose budget is spent (search/budget.py)
                result.stopped_by = "budget"
                break
    except KeyboardInterrupt:
        result.stopped_by = "interrupted"
    except optuna.exceptions.StorageInternalError as exc:  # e.g. the database became read-only
        raise db_error(storage_url, exc.__cause__ or exc) from None
    finally:
        lock.close()
        if store is not None:
            store.dispose()
        stats.save()
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
        try:  # a missing or empty database holds no study: prepare_study creates it after
            rdb = make_storage(storage_url, must_exist=True)  # its checks of the space
        except AutomtlError:
            rdb = None
        try:
            if rdb is not None and name in optuna.get_all_study_names(rdb):
                raise AutomtlError(f"study {name!r} already exists in {mask_url(storage_url)}; "
                                   "join it with `automtl worker --study "
                                   f"{name}` or pass another --study-name")
        finally:
            if rdb is not None:
                close_storage(rdb)
    study = prepare_study(cfg, storage_url, name, warm_start=warm_start)
    extra = cfg.n_trials if n_trials is None else n_trials
    # enqueued baselines / warm-start points are among the `extra` new trials, as in-process
    seeded = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                 if TrialMeta.read(t).enqueued is not None)
    set_target(study, budget(study, target=0).used - seeded + extra)
    hb = heartbeat or Heartbeat.of_study(study)
    StudyMeta.write(study, heartbeat={"interval": hb.interval, "grace": hb.grace})
    return study
