"""The local multi-process launcher: start `automtl worker` processes on one study, follow them
through a `WorkersView` (the CLI's is a rich table), and collect their exit codes."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from automtl.errors import AutomtlError
from automtl.search.dburl import is_proxy_url, mask_url
from automtl.search.defaults import STORAGE_ENV
from automtl.search.distributed._budget import Budget, budget
from automtl.search.distributed._worker import Heartbeat, prepare_shared_study
from automtl.search.enqueue import WarmStart
from automtl.search.meta import count_states
from automtl.search.runner import SearchResult
from automtl.search.storage import (
    close_storage,
    enable_sqlite_wal,
    engine_kwargs,
    make_storage,
    objective_names,
)
from automtl.search.store import Store
from automtl.search.study_config import StudyConfig

# Child processes run the CLI's `worker` command; the storage URL travels in the environment so a
# password never shows in `ps`.
_ENTRY = "import sys; from automtl.cli import main; sys.exit(main(sys.argv[1:]))"


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
    """Each device `trials_per_device` times (round-robin: 0,1,0,1): the K concurrent trials
    each GPU runs, for models too small to fill one (the launcher starts one worker per device
    that runs them as K processes sharing one copy of the data). Refused unless every device is
    CUDA: on CPU, concurrent trials only split the same cores (use --workers N)."""
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
    trials_per_device: int = 1,
) -> list[WorkerProcess]:
    """Start `n_workers` `automtl worker` processes (devices assigned round-robin; each runs
    `trials_per_device` trials sharing one copy of the data, see `run_worker_group`)."""
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
        if trials_per_device > 1:
            cmd += ["--trials-per-device", str(trials_per_device)]
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

class WorkersView:
    """How `watch_workers` reports progress; the CLI's is a rich table (`automtl.cli`). No-ops."""

    def __enter__(self) -> WorkersView:
        return self

    def __exit__(self, *exc: object) -> None:
        """The watch ended (normally or not)."""

    def trial_finished(self, trial: FrozenTrial, objectives: Sequence[str]) -> None:
        """A trial of the study reached a final state (once per trial)."""

    def update(self, study: optuna.Study, procs: Sequence[WorkerProcess], budget: Budget,
               epochs: dict[int, int], elapsed: float) -> None:
        """Called every poll; `epochs`: running trial -> last recorded epoch."""

    def wants_epochs(self) -> bool:
        """Whether `update` shows per-trial epochs (they cost one query per poll)."""
        return False

    def worker_failed(self, proc: WorkerProcess, returncode: int, log_tail: list[str]) -> None:
        """A worker exited non-zero; `log_tail`: the last lines of its log."""


def running_epochs(storage_url: str, study_name: str, trials: Sequence[int]) -> dict[int, int]:
    """Trial -> last recorded epoch, for the given (running) trials (polled: no pooled
    connection is kept between polls)."""
    if not trials:
        return {}
    if is_proxy_url(storage_url):
        return Store(storage_url).running_epochs(study_name, trials)
    engine = sa.create_engine(storage_url, poolclass=sa.pool.NullPool, **{
        k: v for k, v in engine_kwargs(storage_url).items() if k != "pool_pre_ping"})
    try:
        return Store(storage_url, create=False, engine=engine).running_epochs(study_name, trials)
    except sa.exc.SQLAlchemyError:  # tables not created yet: nothing to show
        return {}
    finally:
        engine.dispose()


def watch_workers(
    storage_url: str,
    study_name: str,
    procs: Sequence[WorkerProcess],
    *,
    view: WorkersView | None = None,
    poll: float = 1.0,
) -> LaunchResult:
    """Follow local workers until they all exit, reporting through `view`."""
    view = view or WorkersView()
    storage = make_storage(storage_url, must_exist=True)
    study = optuna.load_study(study_name=study_name, storage=storage)
    names = objective_names(study)
    started = time.monotonic()
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def tick() -> Budget:
        b = budget(study)
        for t in study.get_trials(deepcopy=False):
            if t.state.is_finished() and t.number not in seen:
                seen.add(t.number)
                view.trial_finished(t, names)
        epochs: dict[int, int] = {}
        if view.wants_epochs():
            running = [t.number for t in study.get_trials(deepcopy=False,
                                                          states=(TrialState.RUNNING,))]
            epochs = running_epochs(storage_url, study_name, running)
        view.update(study, procs, b, epochs, time.monotonic() - started)
        return b

    try:
        with view:
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
        close_storage(storage)
    codes = [int(p.process.returncode) for p in procs]
    for p, rc in zip(procs, codes):
        if rc != 0:
            view.worker_failed(p, rc, p.log.read_text(errors="replace").strip().splitlines()[-3:])
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
    view: WorkersView | None = None,
    trials_per_device: int = 1,
) -> LaunchResult:
    """Run `n_workers` local worker processes on an existing study and follow their progress.

    `devices` ("0,1" or a list) are assigned round-robin (`n_workers` None: one per device,
    else 1); with `trials_per_device` K > 1 (CUDA only) each worker runs K concurrent trials
    sharing one copy of the data on its device. SQLite databases are switched to WAL first.
    Returns when every worker has exited.
    """
    devs = parse_devices(devices)
    expand_devices(devs, trials_per_device)  # refuses K > 1 off CUDA
    if devs and n_workers is None:
        n_workers = len(devs)
    enable_sqlite_wal(storage_url)
    procs = start_workers(storage_url, study_name, n_workers or 1, devices=devs, timeout=timeout,
                          heartbeat=heartbeat, log_dir=log_dir,
                          trials_per_device=trials_per_device)
    return watch_workers(storage_url, study_name, procs, view=view)


def search_with_workers(
    cfg: StudyConfig,
    *,
    storage: str,
    study_name: str | None = None,
    n_workers: int | None = None,
    devices: str | Sequence[str] | None = None,
    device: str | None = None,
    view: WorkersView | None = None,
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
              if t.state != TrialState.WAITING}
    launched = launch_workers(storage, study.study_name, n_workers, devices=devs,
                              timeout=cfg.timeout, view=view,
                              trials_per_device=trials_per_device)
    if not launched.ok:
        bad = [f"worker {i}: exit code {rc}" for i, rc in enumerate(launched.returncodes) if rc]
        raise AutomtlError(f"{len(bad)} of {len(launched.returncodes)} workers failed ("
                           f"{'; '.join(bad)}); their logs are in {launched.log_dir}; rerun to "
                           "resume")
    # All went well: the temporary log folder (named only on failure) would pile up in /tmp.
    shutil.rmtree(launched.log_dir, ignore_errors=True)
    study = optuna.load_study(study_name=study.study_name, storage=make_storage(storage))
    trials = study.get_trials(deepcopy=False)
    states = count_states(trials)
    new = sorted(t.number for t in trials if t.number not in before)
    front = Store(storage).refresh_front(study)
    return SearchResult(study.study_name, mask_url(storage), objective_names(study), front,
                        len(new), states, launched.seconds, False, new)


__all__ = [
    "LaunchResult", "WorkerProcess", "WorkersView", "expand_devices", "launch_workers",
    "parse_devices", "running_epochs", "search_with_workers", "start_workers", "watch_workers",
]
