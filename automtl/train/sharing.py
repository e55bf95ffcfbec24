"""K trials on one device sharing ONE copy of the data: a data-owner process and K trial
processes that receive the owner's device tensors.

Choice (issue 14): processes, not threads. K threads of one process would share the data for
free, but a small model's step is bound by Python launching kernels, and threads share one GIL:
K threads then give about one thread's trials/hour. Separate processes also keep each trial's
torch RNG its own, so a trial is reproducible alone (`automtl train` of its config) as before.

How: the owner loads the dataset, plans its memory (`memory.plan_run`, data only) and makes
every split placed on the device resident once (`cache.device_split`). It starts K processes
with `torch.multiprocessing` ("spawn" context) and hands them the resident splits as arguments:
torch pickles a CUDA tensor as a CUDA IPC handle (the child maps the owner's allocation; no
copy) and a CPU tensor as a shared-memory segment (moved there once). Each child loads the same
dataset (metadata, memory-mapped columns or the in-memory arrays of its own), puts the received
splits into its split cache (`cache.install_split`), and runs its job: every `fit` there finds
the data already resident. On CPU a split of a memory-mapped cache is not sent at all: moving
it to shared memory would copy the whole split (15.5 GiB for the 38M-row Ali-CCP train split),
while each child's own load maps the same cache files, whose pages the page cache holds once
for every process. The owner keeps its tensors alive until every child has exited (CUDA
IPC requires it) and returns the children's results.

The same code path runs with device "cpu" (shared memory instead of IPC handles): tests use it.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from automtl.errors import AutomtlError

Job = tuple[Callable[..., Any], tuple[Any, ...]]
WORKER_NAME_ENV = "AUTOMTL_WORKER_NAME"


def _child(data_cfg: dict[str, Any], splits: dict[str, Any], job: Job, index: int,
           queue: Any, name: str | None) -> None:
    try:
        if name:
            os.environ[WORKER_NAME_ENV] = name
        from automtl._typed import from_dict
        from automtl.config import DataConfig
        from automtl.data import load_dataset
        from automtl.train.cache import install_split

        dataset = load_dataset(from_dict(DataConfig, data_cfg))
        for split, data in splits.items():
            install_split(dataset, split, data)
        fn, args = job
        queue.put((index, True, fn(*args)))
    except BaseException as exc:  # reported to the owner, which raises one line
        text = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (AutomtlError, KeyboardInterrupt)):
            text += " | " + traceback.format_exc()[-1500:].replace("\n", " | ")
        queue.put((index, False, text))


def shared_splits(dataset: Any, device: Any, data_on: str | None = None) -> dict[str, Any]:
    """The dataset's splits that the data-only memory plan puts on `device`, made resident
    once in this process (the owner's copy); on CPU, except those over memory-mapped cache
    files, which the trial processes map themselves."""
    import torch

    from automtl.data.batching import DeviceSplit
    from automtl.train.cache import device_split
    from automtl.train.memory import plan_run

    dev = torch.device(device)
    plan = plan_run(dataset, dev, None, data_on=data_on)
    out = {}
    for s, where in plan.placement.items():
        if where != "device":
            continue
        data = device_split(dataset, s, dev)
        if isinstance(data, DeviceSplit) and data.file_backed:
            continue  # each trial maps the same cache files itself (see module): no copy
        out[s] = data
    return out


def run_sharing_data(data_cfg: Any, device: str, jobs: Sequence[Job],
                     names: Sequence[str] | None = None, data_on: str | None = None) -> list[Any]:
    """Run each job `fn(*args)` in its own process on `device`, all sharing this process's one
    resident copy of the dataset of `data_cfg` (see module). Returns the jobs' results in order;
    a job that raised becomes one `AutomtlError` naming it. `fn` must be importable (module
    level). `names`: each child's worker name ($AUTOMTL_WORKER_NAME)."""
    import torch.multiprocessing as mp

    from automtl._typed import to_dict
    from automtl.data import load_dataset

    dataset = load_dataset(data_cfg)
    splits = shared_splits(dataset, device, data_on)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = []
    cfg = to_dict(data_cfg)
    for i, job in enumerate(jobs):
        name = names[i] if names else None
        p = ctx.Process(target=_child, args=(cfg, splits, job, i, queue, name), daemon=False)
        p.start()
        procs.append(p)
    results: dict[int, tuple[bool, Any]] = {}
    try:
        while len(results) < len(procs):
            try:
                index, ok, value = queue.get(timeout=1.0)
                results[index] = (ok, value)
            except Exception:  # queue.Empty: check for children that died without a word
                dead = [i for i, p in enumerate(procs)
                        if p.exitcode is not None and i not in results]
                for i in dead:
                    if not queue.empty():
                        break
                    results[i] = (False, f"exited with code {procs[i].exitcode} (killed?)")
    finally:
        for p in procs:
            p.join()  # the shared tensors must outlive every child that maps them
    bad = [f"job {i}: {v}" for i, (ok, v) in sorted(results.items()) if not ok]
    if bad:
        raise AutomtlError(f"{len(bad)} of {len(jobs)} processes sharing the data failed: "
                           + "; ".join(bad))
    return [results[i][1] for i in range(len(jobs))]


__all__ = ["WORKER_NAME_ENV", "run_sharing_data", "shared_splits"]
