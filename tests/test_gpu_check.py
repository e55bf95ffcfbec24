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
                "mmoe torch-rechub fp32 samples/s", "model on cpu", "mmoe AUC bf16 - fp32",
                "resident vs streamed", "host->device copy (chunked)", "values equal",
                "trials per device K=2", "4-trial search", "synthetic preset",
                "export reproducibility", "step B=64 eager", "step B=256 static",
                "CPU twin of graph", "step parity eager vs static (4 steps, B=64)",
                "4/4 losses bit-equal", "step FLOPs per sample", "step B=256 compile (eager)"):
        assert row in table, table
    assert "FAILED" not in table and "skipped" not in table and "not measured" not in table
    # the order of the parts: the rows still missing from a GPU run come first
    assert table.index("x torch-rechub") < table.index("step B=64 eager") < table.index(
        "4-trial search") < table.index("resident vs streamed") < table.index(
        "trials per device") < table.index("compile (eager)")


def test_gpu_check_skips_what_does_not_fit_its_budget_and_names_missing_packages() -> None:
    code = ("import sys; sys.modules['torch_rechub'] = None; sys.path.insert(0, 'benchmarks'); "
            "import gpu_check; sys.exit(gpu_check.main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "--dry-run", "--budget-s", "1", "--parts",
                          "throughput,scaling"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "lacks torch_rechub" in out.stderr and "missing packages: torch_rechub" in out.stdout
    table = out.stdout[out.stdout.index("gpu_check on cpu"):]
    assert "throughput  skipped" in table and "--parts throughput" in table
    assert "scaling     skipped" in table and "Traceback" not in out.stderr
    bad = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--parts", "nope"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert bad.returncode == 2 and "use some of throughput, steps, search" in bad.stdout


def test_gpu_check_without_a_gpu_refuses_in_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the full check would run")
    bad = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True,
                         text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=300)
    assert bad.returncode == 2 and "no CUDA device here" in bad.stdout
    assert "Traceback" not in bad.stderr
