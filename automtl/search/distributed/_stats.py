"""Where a worker's time goes besides training: waiting on the study lock, holding it, and
refreshing the study's front (the part that grows with many workers on one study).

Off unless `AUTOMTL_WORKER_STATS` names a folder: then every worker rewrites one small JSON file
there (`<host>_<pid>.json`, atomically) after each trial, so a killed worker's numbers survive up
to its last finished trial. `benchmarks/workers_scale.py` reads them; a timing costs two
`perf_counter` calls.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATS_ENV = "AUTOMTL_WORKER_STATS"


@dataclass
class WorkerStats:
    """Seconds per event of one worker (lists, one entry per event)."""

    worker: str
    lock_wait: list[float] = field(default_factory=list)  # acquire() of the study lock
    lock_hold: list[float] = field(default_factory=list)  # acquire -> release (slot count + ask)
    front_refresh: list[float] = field(default_factory=list)  # Store.refresh_front, row lock incl.
    trials: int = 0
    _acquired_at: float | None = None

    def acquired(self, waited: float) -> None:
        """The study lock was taken after `waited` seconds."""
        self.lock_wait.append(waited)
        self._acquired_at = time.perf_counter()

    def released(self) -> None:
        """The study lock was released (idempotent, like the lock's own release)."""
        if self._acquired_at is not None:
            self.lock_hold.append(time.perf_counter() - self._acquired_at)
            self._acquired_at = None

    def save(self) -> None:
        """Rewrite this worker's file in the `AUTOMTL_WORKER_STATS` folder (no-op when unset)."""
        folder = os.environ.get(STATS_ENV)
        if not folder:
            return
        path = Path(folder) / (self.worker.replace(":", "_").replace("/", "_") + ".json")
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


def read_stats(folder: Path) -> list[WorkerStats]:
    """Every worker's stats saved in `folder`."""
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        out.append(WorkerStats(**json.loads(path.read_text())))
    return out


__all__ = ["STATS_ENV", "WorkerStats", "read_stats"]
