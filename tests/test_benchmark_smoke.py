"""CI smoke run of benchmarks/search_efficiency.py: every arm, the table, the JSON and the figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(1800)  # five arms and four processes: minutes on a loaded 2-core machine
def test_search_efficiency_smoke(tmp_path: Path):
    out, work = tmp_path / "eff.json", tmp_path / "runs"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    bench = [sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py")]
    proc = subprocess.run([*bench, "--smoke", "--out", str(out), "--workdir", str(work)],
                          capture_output=True, text=True, env=env, timeout=900, check=False)
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

    # each arm/seed kept its database and figures; a second process skips what is claimed
    assert sorted(p.name for p in work.glob("*.json")) == sorted(
        f"{a}-s0.json" for a in ("tpe+pareto", "tpe", "random", "nsga2", "gp"))
    again = subprocess.run([*bench, "--smoke", "--workdir", str(work), "--arms", "tpe"],
                           capture_output=True, text=True, env=env, timeout=300, check=False)
    assert again.returncode == 0 and "run by another process, skipped" in again.stdout

    # a run cut before its end (database, no JSON) still reports its finished trials
    (work / "random-s0.json").unlink()
    summary = tmp_path / "summary.json"
    proc = subprocess.run([*bench, "--smoke", "--workdir", str(work), "--summarize",
                           "--out", str(summary)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = {r["arm"]: r for r in json.loads(summary.read_text())["runs"]}
    assert set(runs) == arms and runs["random"]["finished"] is False
    assert runs["random"]["curve"] == next(r for r in doc["runs"] if r["arm"] == "random")["curve"]

    # pruning rules replayed on the unpruned runs' learning curves
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pruner_replay.py"),
                           str(work), "--out", str(tmp_path / "replay.json")],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    replay = json.loads((tmp_path / "replay.json").read_text())
    # finished unpruned runs only (random's was "cut" above); with 3 trials the default rule
    # (3 warm-up trials: at most 2 peers here) never decides: every epoch, whole front
    assert {key.rpartition(" | ")[2] for key in replay} == {"tpe", "nsga2", "gp"}
    for key, figures in replay.items():
        assert all(0 < e <= 1.0 for e in figures["epochs"]), key
        if key.startswith("default"):
            assert figures["epochs"] == [1.0] and figures["hv_end"] == [1.0], key


def test_additive_lr_smoke(tmp_path: Path, capsys):
    """benchmarks/additive_lr.py on a tiny additive set (in this process: no second torch
    import): the LR arm and one wide config write their JSON + predictions, and the summary
    pairs them (gap to the LR and a bootstrap SE per task)."""
    import torch

    from conftest import load_benchmark

    mod = load_benchmark("additive_lr")
    common = ["--rows", "4000", "--out", str(tmp_path)]
    threads = torch.get_num_threads()  # main() sets one thread; the rest of the suite keeps its own
    try:
        assert mod.main([*common, "--arms", "lr,wide_esmm", "--epochs", "1", "--C", "0.3",
                         "--probe-rows", "1000"]) == 0
        for arm in ("lr", "wide_esmm"):
            rec = json.loads((tmp_path / f"{arm}.json").read_text())
            assert set(rec["test"]) == {"ctr_auc", "cvr_auc", "ctcvr_auc"}
            assert (tmp_path / f"{arm}.npz").is_file()
        lr = json.loads((tmp_path / "lr.json").read_text())
        assert lr["test"]["ctr_auc"] > 0.6  # the well-specified model learns the additive data
        assert [f["step"] for f in lr["fits"] if not f.get("probe")] == ["ctr", "cvr"]
        capsys.readouterr()
        assert mod.main([*common, "--summary", "--boot", "20"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("wide_esmm"))
        assert "gap to lr" in line and "best ep 1/1" in line
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("score,kept", [("epoch", False), ("best", True)])
def test_replay_prunes_at_the_epoch_early_stopping_ends_a_trial(score: str, kept: bool):
    """pruner_replay as the live pruner: its callback runs before early stopping, so a trial
    pruned at its last recorded epoch (< the study's epochs) is pruned and leaves the front.
    Trial 1 peaked at epoch 1 (its result, 0.75) and early-stopped after epoch 3 at 0.60: the
    rung-epoch score prunes it there, the best-so-far score keeps it."""
    from dataclasses import replace

    from conftest import load_benchmark

    replay_mod = load_benchmark("pruner_replay")

    def recs(*vs: float) -> list[dict[str, float]]:
        return [{"ctr_auc": v, "cvr_auc": v, "mean_auc": v} for v in vs]

    run = {"objectives": ["ctr_auc", "cvr_auc"], "epochs_max": 4, "trials": [
        {"number": 0, "values": [0.73, 0.73], "test": [0.7, 0.7], "epochs": recs(0.70, 0.72, 0.73)},
        {"number": 1, "values": [0.75, 0.75], "test": [0.8, 0.8], "epochs": recs(0.75, 0.74, 0.60)},
    ]}
    cfg = replace(replay_mod.BASE, warmup_trials=1, reduction_factor=2.0, score=score)
    curve = replay_mod.replay(run, cfg)
    assert curve[-1]["epochs"] == 6  # no epoch saved either way: it stopped at 3 anyway
    front = [[0.75, 0.75]] if kept else [[0.73, 0.73]]
    assert curve[-1]["hv_val"] == pytest.approx(replay_mod.hypervolume(front))
