"""The CLI's light commands stay light: `automtl --help`, `studies` and `pareto` import neither
torch nor scikit-learn (checked in a fresh interpreter, through `sys.modules`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
PROBE = """
import json, sys
from automtl.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
heavy = sorted(m for m in ("torch", "sklearn") if m in sys.modules)
print("PROBE" + json.dumps({"rc": rc, "heavy": heavy}))
"""


def probe(*argv: str, cwd: Path) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    run = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                         cwd=cwd, env=env, timeout=120)
    line = [x for x in run.stdout.splitlines() if x.startswith("PROBE")][-1]
    return json.loads(line[len("PROBE"):]), run.stdout + run.stderr


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["studies", "--storage", "{url}"],
    ["pareto", "--study", "old", "--storage", "{url}"],
    ["pareto", "--study", "old", "--storage", "{url}", "--format", "json"],
])
def test_light_commands_import_neither_torch_nor_sklearn(argv: list[str], tmp_path: Path,
                                                         old_study_url: str) -> None:
    result, out = probe(*[a.format(url=old_study_url) for a in argv], cwd=tmp_path)
    assert result["rc"] in (0, None), out
    assert result["heavy"] == [], out
    if argv[0] != "--help":
        assert "old" in out
