"""A trial stopped from outside (Ctrl-C, or its process killed) loses nothing the study promised:
an enqueued baseline or budget final is trained again when the study resumes, and a budget
counts the stopped attempt for nothing (`TrialMeta.stopped`, `enqueue.redo_trial`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from automtl.cli import main
from automtl.search import open_study, run_search
from automtl.search.budget import trial_cost
from automtl.search.meta import TrialMeta
from automtl.search.study_config import load_study_config
from automtl.train.loop import Callback

pytestmark = pytest.mark.usefixtures("one_thread")
States = optuna.trial.TrialState
SPACE = {
    "name": "tiny",
    "params": {
        "model.arch": {"choices": {"shared_bottom": {"model.bottom_dims": {"choices": [[16],
                                                                                       [32]]}}}},
        "model.embedding_dim": 4,
        "model.tower_dims": [8],
        "train.lr": {"float": [1.0e-3, 1.0e-2], "log": True},
        "train.batch_size": 256,
    },
}
BASELINE = {"model": {"arch": "shared_bottom", "bottom_dims": [16], "embedding_dim": 4,
                      "tower_dims": [8]}, "train": {"lr": 0.004, "batch_size": 256}}


def _preset(folder: Path, budget: bool = True) -> Path:
    (folder / "space.yaml").write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    (folder / "base.yaml").write_text(yaml.safe_dump(BASELINE), encoding="utf-8")
    doc = {"name": "stop", "data": {"name": "synthetic", "options": {"rows": 3000}},
           "objectives": ["ctr_auc", "cvr_auc"], "space": "space.yaml", "epochs": 1,
           "n_trials": 6, "seed": 1, "enqueue": ["base.yaml"]}
    if budget:
        doc["budget"] = {"trainings": 3, "rows_fraction": 0.3, "finals": 1}
    path = folder / "preset.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


class _CtrlCOnFirstTrial(Callback):
    """What Python raises in the main thread at a Ctrl-C, at the first trial's training start."""

    def __init__(self) -> None:
        self.fired = False

    def on_train_start(self, model) -> None:
        if not self.fired:
            self.fired = True
            raise KeyboardInterrupt


def _labels(trials, state) -> list[str]:
    return [TrialMeta.read(t).enqueued for t in trials if t.state == state]


@pytest.mark.parametrize("budget", [True, False], ids=["budget", "trials"])
def test_a_baseline_stopped_by_ctrl_c_is_trained_on_resume(tmp_path: Path, budget: bool):
    cfg = load_study_config(_preset(tmp_path, budget))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = run_search(cfg, storage=url, device="cpu", extra_callbacks=[_CtrlCOnFirstTrial()])
    assert first.interrupted
    run_search(cfg, storage=url, device="cpu")
    trials = open_study(url, "stop").get_trials()
    assert TrialMeta.read(trials[0]).interrupted
    assert _labels(trials, States.COMPLETE)[0].endswith("/base.yaml")  # the baseline, first
    assert not [t for t in trials if t.state in (States.WAITING, States.RUNNING)]
    if budget:  # the stopped attempt counts for nothing; the rest fits the budget
        kept = [t for t in trials if not TrialMeta.read(t).stopped]
        assert sum(trial_cost(t) for t in kept) <= 3 + 1e-9
        assert [TrialMeta.read(t).final_of is not None for t in kept].count(True) == 1


KILL_AT_FINAL = textwrap.dedent("""
    import os, sys
    from automtl.search import run_search
    from automtl.search.study_config import load_study_config
    from automtl.train.loop import Callback
    import optuna

    url = sys.argv[2]

    class KillAtFinal(Callback):  # the process dies as under SIGKILL: no handler, no cleanup
        def on_train_start(self, model):
            study = optuna.load_study(study_name="stop", storage=url)
            running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            if any(t.user_attrs.get("final_of") is not None for t in running):
                os._exit(137)

    run_search(load_study_config(sys.argv[1]), storage=url, device="cpu",
               extra_callbacks=[KillAtFinal()])
    """)


def test_a_killed_final_is_trained_on_resume(tmp_path: Path, capsys):
    """A final whose process died (SIGKILL, a crash) stays RUNNING; the resumed search (even
    with an explicit --budget, which refuses a spent budget) marks it FAIL and trains it again:
    the budget's final is not lost."""
    preset = _preset(tmp_path)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", KILL_AT_FINAL, str(preset), url], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 137, run.stderr[-2000:]
    killed = open_study(url, "stop").get_trials()
    final = [t for t in killed if t.state == States.RUNNING]
    assert len(final) == 1 and final[0].user_attrs["final_of"] is not None
    # resumed with another dataset: refused in one line before the stale repair writes anything
    other = tmp_path / "other.yaml"
    doc = yaml.safe_load(preset.read_text(encoding="utf-8"))
    doc["data"]["options"]["rows"] = 4000
    other.write_text(yaml.safe_dump(doc), encoding="utf-8")
    db = tmp_path / "db.sqlite"
    before = db.read_bytes()
    assert main(["search", "--study-config", str(other), "--storage", url, "--device", "cpu",
                 "--no-report"]) == 2
    assert "was made on dataset" in capsys.readouterr().err
    assert db.read_bytes() == before
    assert main(["search", "--study-config", str(preset), "--storage", url, "--device", "cpu",
                 "--no-report", "--budget", "3"]) == 0, capsys.readouterr().err
    trials = open_study(url, "stop").get_trials()
    stale = trials[final[0].number]
    assert stale.state == States.FAIL and TrialMeta.read(stale).stopped
    redone = [t for t in trials if t.number > stale.number]
    assert [t.state for t in redone] == [States.COMPLETE]
    assert redone[0].user_attrs["final_of"] == final[0].user_attrs["final_of"]
    kept = [t for t in trials if not TrialMeta.read(t).stopped]
    assert sum(trial_cost(t) for t in kept) <= 3 + 1e-9
