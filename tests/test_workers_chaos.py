"""Eight real workers on one PostgreSQL study while a chaos loop SIGKILLs some of them.

The driver and its checks live in benchmarks/workers_scale.py (which runs 8/32/64 workers);
this is its suite-sized run: every invariant it checks must hold.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_benchmark

pytestmark = pytest.mark.timeout(1500)

workers_scale = load_benchmark("workers_scale")


def test_eight_workers_under_sigkill_chaos_reach_exactly_the_target(
        pg_url: str, tmp_path: Path) -> None:
    r = workers_scale.run_chaos(pg_url, workers=8, target=24, kills=3, kill_every=2.0,
                                folder=tmp_path, deadline_s=1200)
    # on failure tmp_path keeps the worker logs and trials.tsv (every trial's state and retries)
    assert r.problems == [], f"run folder: {tmp_path}"
    # a SIGKILL between two trials kills no trial; every FAIL is a killed or a starved trial
    assert r.complete == 24 and r.kills == 3 and 1 <= len(r.killed) <= 3
    assert r.failed == len(r.killed) + len(r.starved)
    assert 0 < r.peak_connections < 100
    # every worker's timings came back (AUTOMTL_WORKER_STATS): one front refresh per COMPLETE
    # trial (a killed worker's file keeps those before its kill), a lock acquisition per trial
    assert r.complete - len(r.killed) <= len(r.front_refresh) <= r.complete
    assert len(r.lock_wait) >= len(r.front_refresh) and min(r.lock_wait) >= 0
