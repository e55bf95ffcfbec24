"""K trial processes on one device sharing ONE copy of the data (`--trials-per-device K`).

The worker process of a device owns the data and hands it to K trial processes
(`automtl.train.sharing`: CUDA IPC handles); each of them runs the ordinary worker loop.
"""

from __future__ import annotations

from optuna.trial import FrozenTrial

from automtl.errors import AutomtlError
from automtl.search.meta import StudyMeta
from automtl.search.distributed._budget import Budget
from automtl.search.distributed._launcher import expand_devices
from automtl.search.distributed._worker import (
    Heartbeat,
    WorkerResult,
    join_study,
    run_worker,
    worker_name,
)


def _echo_trial(t: FrozenTrial, b: Budget) -> None:
    target = b.target if b.target is not None else "-"
    print(f"trial {t.number} {t.state.name} ({worker_name()}) [{b.finished}/{target} finished]",
          flush=True)


def _group_job(storage_url: str, study_name: str, n_trials: int | None, timeout: float | None,
               device: str, heartbeat: Heartbeat | None) -> WorkerResult:
    return run_worker(storage_url, study_name, n_trials=n_trials, timeout=timeout, device=device,
                      heartbeat=heartbeat, on_trial=_echo_trial)


def run_worker_group(
    storage_url: str,
    study_name: str,
    *,
    device: str,
    trials_per_device: int,
    n_trials: int | None = None,
    timeout: float | None = None,
    heartbeat: Heartbeat | None = None,
    allow_cpu: bool = False,
) -> list[WorkerResult]:
    """`automtl worker --device cuda:N --trials-per-device K`: K trial processes on one device
    sharing ONE resident copy of the study's data, which this process owns and hands them
    (CUDA IPC; `automtl.train.sharing`). Each runs `run_worker` (named "host:pid.i"); `n_trials`
    and `timeout` apply to each. Refused on CPU (`allow_cpu`: tests run the same path on CPU)."""
    from automtl._typed import from_dict
    from automtl.config import DataConfig
    from automtl.train import resolve_device
    from automtl.train.sharing import run_sharing_data

    device = str(resolve_device(device))
    if not allow_cpu:
        expand_devices([device], trials_per_device)
    elif trials_per_device < 1:
        raise AutomtlError(f"--trials-per-device {trials_per_device}: must be >= 1")
    study, hb = join_study(storage_url, study_name, heartbeat)
    data_cfg = from_dict(DataConfig, StudyMeta.read(study).dataset or {})
    me = worker_name()
    jobs = [(_group_job, (storage_url, study_name, n_trials, timeout, device, hb))
            for _ in range(trials_per_device)]
    return run_sharing_data(data_cfg, device, jobs, [f"{me}.{i}" for i in range(len(jobs))])
