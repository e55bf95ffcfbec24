"""Many workers, one study: the worker loop, crash recovery and the local multi-process launcher.

Private modules, one concern each: `_budget` (trial slots against the target), `_worker` (the
worker loop), `_launcher` (local worker processes and their view), `_group` (K trial processes of
one device sharing one copy of the data). The per-study lock is `automtl.search.locks` (torch-free:
the storage proxy takes it too).

A worker (`run_worker`, CLI `automtl worker`) joins an existing study in a shared Optuna RDB
storage (PostgreSQL across machines, or one SQLite file on one machine) and runs trials until
the study's target trial count is reached. Each trial is the search's own: `optimize_study` of
`automtl.search.runner` with one trial (same objective, per-epoch metrics, pruning, front
refresh); this module only decides when a trial may start.

- Heartbeats: every trial of a worker beats every `heartbeat_interval` seconds (Optuna's RDB
  heartbeat). A RUNNING trial whose beat is older than `grace_period` belongs to a dead worker
  (SIGKILL, OOM, preemption); the next worker to look marks it FAIL, and Optuna's
  `RetryFailedTrialCallback(max_retry=1)` enqueues its parameters once as a WAITING trial, which
  the next `ask` of any worker picks up. A retry whose worker dies too is not retried again; its
  slot goes to a new trial (bounded, see `_budget`), so the target count is still reached.
- Target count: a study's target (`target_trials` user attribute) counts *trial slots*: every
  trial except one superseded by its retry. COMPLETE, PRUNED and genuinely FAILed trials (NaN,
  invalid combination: they would fail again) fill their slot; a trial FAILed because its worker
  died hands its slot to its retry, and so does one stopped by Ctrl-C. Before creating a trial a worker takes a per-study lock
  (PostgreSQL advisory lock, a lock file beside a SQLite database) so that counting slots and
  creating the trial are atomic: N workers never overshoot the target. When the target is
  reached but trials are still RUNNING, workers wait (checking heartbeats) instead of leaving,
  so a worker dying near the end still gets its trial retried.
- Diagnostics: with `AUTOMTL_WORKER_STATS=<folder>` each worker keeps one JSON file there with
  the seconds it waited on and held the study lock and spent refreshing the front (`_stats`).
- SQLite: several processes on one file are made safe by a 60 s busy timeout on every
  connection (see `storage.engine_kwargs`), WAL journaling (readers never block the writer) and
  the same study lock. Only processes on ONE machine may share a SQLite file (file locks are not
  reliable on network file systems): use PostgreSQL across machines.
"""

from automtl.search.distributed._budget import (
    Budget,
    budget,
    died,
    interrupted,
    orphan_cap,
    set_target,
    study_target,
    superseded_trials,
)
from automtl.search.distributed._launcher import (
    LaunchResult,
    WorkerProcess,
    WorkersView,
    expand_devices,
    launch_workers,
    parse_devices,
    running_epochs,
    search_with_workers,
    start_workers,
    watch_workers,
)
from automtl.search.distributed._group import run_worker_group
from automtl.search.distributed._stats import STATS_ENV, WorkerStats, read_stats
from automtl.search.distributed._worker import (
    Heartbeat,
    WorkerResult,
    join_study,
    prepare_shared_study,
    run_worker,
    worker_name,
    worker_storage,
)
from automtl.search.defaults import STORAGE_ENV

__all__ = [
    "STATS_ENV", "STORAGE_ENV", "Budget", "Heartbeat",
    "LaunchResult", "WorkerProcess", "WorkerResult", "WorkersView", "budget",
    "died", "expand_devices", "interrupted", "join_study", "launch_workers",
    "orphan_cap", "parse_devices", "prepare_shared_study", "read_stats", "run_worker", "run_worker_group", "running_epochs",
    "search_with_workers",
    "set_target", "start_workers", "study_target", "superseded_trials",
    "watch_workers", "worker_name", "worker_storage", "WorkerStats",
]
