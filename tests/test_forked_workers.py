"""The benchmark's fork server (benchmarks/forked_workers.py): workers forked from one warm
process run the real CLI, each with its own log and exit code."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def test_forked_cli_runs_with_its_own_log_and_exit_code(tmp_path: Path) -> None:
    forked = load_benchmark("forked_workers")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                          if p))
    server = forked.ForkServer(env, tmp_path)
    try:
        ok = server.spawn(["--help"], tmp_path / "help.log", {})
        bad = server.spawn(["worker", "--study", "s", "--storage",
                            f"sqlite:///{tmp_path / 'missing' / 'no.db'}"], tmp_path / "bad.log",
                           {"AUTOMTL_TEST_MARK": "1"})
        assert ok.wait(timeout=120) == 0 and "Usage" in (tmp_path / "help.log").read_text()
        assert bad.wait(timeout=120) != 0
        text = (tmp_path / "bad.log").read_text()
        assert "Traceback" not in text and text.strip(), text
        assert server.spawn(["--help"], tmp_path / "again.log", {}).wait(timeout=120) == 0
    finally:
        server.close()
