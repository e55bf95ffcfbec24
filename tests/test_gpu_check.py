"""benchmarks/gpu_check.sh --dry-run: the prepared GPU check runs every part at tiny sizes on CPU
and prints its one table (the real run needs a GPU; this keeps the script working)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_gpu_check_dry_run_prints_the_table() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"],
                         capture_output=True, text=True, env=env, timeout=840)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = out.stdout[out.stdout.index("gpu_check on cpu"):]
    for row in ("bf16 matmul peak", "mmoe automtl fp32 samples/s", "x torch-rechub",
                "mmoe AUC bf16 - fp32", "resident vs streamed", "trials per device K=2",
                "2-trial search", "export reproducibility"):
        assert row in table, table
    assert "FAILED" not in table


def test_gpu_check_without_a_gpu_refuses_in_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the full check would run")
    bad = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True,
                         text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=300)
    assert bad.returncode == 2 and "no CUDA device here" in bad.stdout
    assert "Traceback" not in bad.stderr
