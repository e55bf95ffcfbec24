"""CI smoke run of benchmarks/search_efficiency.py: every arm, the table, the JSON and the figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_search_efficiency_smoke(tmp_path: Path):
    out = tmp_path / "eff.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"),
                           "--smoke", "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "reach TPE end" in proc.stdout
    doc = json.loads(out.read_text())
    arms = {r["arm"] for r in doc["runs"]}
    assert arms == {"tpe+pareto", "tpe", "random", "nsga2", "gp"}
    for r in doc["runs"]:
        curve = r["curve"]
        assert len(curve) == r["trials"] == 3
        assert [p["epochs"] for p in curve] == sorted(p["epochs"] for p in curve)
        assert curve[-1]["epochs"] == r["epochs"]
        assert abs(curve[-1]["hv_val"] - r["hv_val"]) < 1e-9
    assert "plotly" in out.with_suffix(".html").read_text()
