"""End to end: `automtl search` on tiny synthetic data into a temp SQLite file, resume, `pareto`,
`studies`, checkpoints, and a trial forced to fail while the search goes on."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import sqlite3
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from automtl.cli import main
from automtl.config import DataConfig
from automtl.errors import TrialFailedError
from automtl.search import Store, StudyConfig, open_study, run_search
from automtl.search.study_config import PrunerConfig
from automtl.train import Callback

ROWS = "rows=4000"
TINY_SPACE = {
    "name": "tiny",
    "params": {
        "model.arch": {"choices": {
            "shared_bottom": {"model.bottom_dims": {"choices": [[16], [32]]}},
            "mmoe": {"model.n_experts": {"int": [2, 3]}, "model.expert_dims": [16]},
        }},
        "model.head": {"choices": {"plain": {}, "esmm": {"requires": "cascade"}}},
        "model.embedding_dim": 4,
        "model.tower_dims": [8],
        "train.lr": {"float": [1.0e-3, 1.0e-2], "log": True},
        "train.batch_size": 1024,
    },
}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One 4-trial, 1-epoch search through the CLI (module-scoped: the tests below read it)."""
    root = tmp_path_factory.mktemp("search")
    space = root / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    url = f"sqlite:///{root / 'automtl.db'}"
    args = ["search", "--dataset", "synthetic", "--space", str(space), "--storage", url,
            "--study-name", "e2e", "--n-trials", "4", "--epochs", "1", "--data-option", ROWS,
            "--device", "cpu", "--save-checkpoints", "--no-report", "--seed", "7"]
    assert main(args) == 0
    return root, url, args


def _cli_out(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


def test_search_stores_trials_metrics_and_the_front(searched):
    root, url, _ = searched
    study = open_study(url, "e2e")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 4
    assert study.user_attrs["objectives"] == ["ctr_auc", "cvr_auc"]
    assert study.user_attrs["dataset"]["options"]["rows"] == 4000
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done  # 1 epoch < warm-up: nothing can be pruned, nothing should fail
    assert all(t.state != optuna.trial.TrialState.FAIL for t in trials)
    for t in done:
        a = t.user_attrs
        assert a["config"]["train"]["epochs"] == 1 and a["config"]["train"]["seed"] == 7
        assert a["arch"] == a["config"]["model"]["arch"] in ("shared_bottom", "mmoe")
        assert t.values == [a["val_metrics"]["ctr_auc"], a["val_metrics"]["cvr_auc"]]
        assert set(a["test_metrics"]) >= {"ctr_auc", "cvr_auc", "ctcvr_auc"}
        assert a["n_params"] > 0 and a["samples_per_s"] > 0 and a["epochs_run"] == 1
        state = torch.load(a["checkpoint"], weights_only=True)
        assert Path(a["checkpoint"]).parent == root / "automtl_checkpoints" / "e2e"
        assert sum(v.numel() for v in state.values()) >= a["n_params"]
    # per-epoch metrics table: one epoch per trial, values equal the stored objective values
    hist = Store(url).epoch_history("e2e")
    assert sorted(hist) == sorted(t.number for t in trials)
    for t in done:
        (rec,) = hist[t.number]
        assert rec["epoch"] == 1 and rec["ctr_auc"] == pytest.approx(t.values[0])
    # Pareto table rows match Optuna's best_trials, read with plain SQL
    with sqlite3.connect(root / "automtl.db") as conn:
        rows = conn.execute("select trial_number, values_json, config_json from "
                            "automtl_pareto_front where study_name = 'e2e'").fetchall()
    best = {t.number: t for t in study.best_trials}
    assert sorted(r[0] for r in rows) == sorted(best)
    for number, values, config in rows:
        assert json.loads(values) == {"ctr_auc": best[number].values[0],
                                      "cvr_auc": best[number].values[1]}
        assert json.loads(config) == best[number].user_attrs["config"]


def test_pareto_output_parses_in_every_format(searched, capsys):
    _, url, _ = searched
    best = sorted(t.number for t in open_study(url, "e2e").best_trials)
    doc = json.loads(_cli_out(capsys, ["pareto", "--study", "e2e", "--storage", url,
                                       "--format", "json"]))
    assert doc["objectives"] == ["ctr_auc", "cvr_auc"]
    assert sorted(r["trial_number"] for r in doc["front"]) == best
    rows = list(csv.DictReader(io.StringIO(_cli_out(
        capsys, ["pareto", "--study", "e2e", "--storage", url, "--format", "csv"]))))
    assert sorted(int(r["trial"]) for r in rows) == best
    assert all(0.0 < float(r["val_ctr_auc"]) < 1.0 for r in rows)
    table = _cli_out(capsys, ["pareto", "--study", "e2e", "--storage", url])
    assert "Pareto front of 'e2e'" in table and all(str(n) in table for n in best)
    listing = json.loads(_cli_out(capsys, ["studies", "--storage", url, "--format", "json"]))
    (entry,) = [s for s in listing if s["study"] == "e2e"]
    assert entry["front"] == len(best) and entry["trials"] >= 4
    # a missing study is one line, exit code 2
    capsys.readouterr()
    assert main(["pareto", "--study", "nope", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "no study named 'nope'" in err and "e2e" in err and "Traceback" not in err


def test_same_study_name_resumes(searched, capsys):
    _, url, args = searched
    before = {t.number for t in open_study(url, "e2e").get_trials(deepcopy=False)}
    resumed = [a if a != "4" else "2" for a in args]  # --n-trials 2
    out = _cli_out(capsys, resumed)
    assert "resuming study 'e2e': 4 trials already stored" in out
    trials = open_study(url, "e2e").get_trials(deepcopy=False)
    assert len(trials) == len(before) + 2 and before < {t.number for t in trials}
    front = Store(url).front("e2e")
    assert sorted(r.trial_number for r in front) == \
        sorted(t.number for t in open_study(url, "e2e").best_trials)
    # a different dataset under the same name is refused clearly
    capsys.readouterr()
    assert main(["rows=5000" if a == ROWS else a for a in args]) == 2
    assert "pass another --study-name" in capsys.readouterr().err
    i = args.index("--space")
    assert main(args[:i + 1] + ["mmoe"] + args[i + 2:]) == 2
    assert "made with search space 'tiny', not 'mmoe'" in capsys.readouterr().err



def test_the_printed_pareto_command_works_for_an_odd_study_name(searched, tmp_path: Path, capsys):
    """The closing line's `automtl pareto ...` is shell-quoted: pasted, it opens the study even
    when the name holds quotes, spaces or a semicolon."""
    _, _, args = searched
    url = f"sqlite:///{tmp_path / 'odd db.sqlite'}"
    odd = ["it's; a \"name\"" if a == "e2e" else a for a in args]
    odd[odd.index("--storage") + 1] = url
    odd[odd.index("--n-trials") + 1] = "1"
    out = _cli_out(capsys, odd)
    command = re.search(r"see `(automtl pareto [^`]*)`", out)
    assert command is not None, out
    argv = shlex.split(command.group(1))
    assert argv[argv.index("--study") + 1] == "it's; a \"name\""
    assert "Pareto front of" in _cli_out(capsys, argv[1:])

class FailSecondTrial(Callback):
    """A real trainer callback that makes the second trial of this run fail mid-training."""

    def __init__(self) -> None:
        self.started = 0

    def on_train_start(self, model) -> None:
        self.started += 1

    def on_epoch_end(self, epoch, record) -> None:
        if self.started == 2:
            raise TrialFailedError(f"forced failure at epoch {epoch}")


def test_failing_trial_is_stored_fail_and_the_search_goes_on(tmp_path: Path):
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'f.db'}"
    cfg = StudyConfig(name="fails", data=DataConfig("synthetic", options={"rows": 4000}),
                      objectives=["ctr_auc", "cvr_auc"], space=str(space), epochs=1, n_trials=3,
                      pruner=PrunerConfig(kind="none"))
    result = run_search(cfg, storage=url, device="cpu", extra_callbacks=[FailSecondTrial()])
    assert result.trials_run == 3 and not result.interrupted
    assert result.states == {"COMPLETE": 2, "FAIL": 1}
    failed = [t for t in open_study(url, "fails").trials
              if t.state == optuna.trial.TrialState.FAIL]
    assert failed[0].number == 1
    assert failed[0].user_attrs["fail_reason"] == "forced failure at epoch 1"
    assert {r.trial_number for r in result.front} <= {0, 2} and result.front


def test_reeval_stores_seed_mean_and_std_shown_by_pareto(searched, capsys):
    _, url, _ = searched
    out = _cli_out(capsys, ["reeval", "--study", "e2e", "--storage", url, "--top", "1",
                            "--seeds", "2", "--device", "cpu"])
    assert "seed 2/2" in out
    store = Store(url)
    ((trial, stats),) = store.reeval("e2e").items()
    assert stats["val/ctr_auc"]["n"] == 2 and stats["val/ctr_auc"]["std"] >= 0.0
    assert 0.0 < stats["test/cvr_auc"]["mean"] < 1.0
    assert store.reeval_seeds("e2e", trial) == {8, 9}  # study seed 7 + 1, + 2
    doc = json.loads(_cli_out(capsys, ["pareto", "--study", "e2e", "--storage", url, "-f", "json"]))
    (row,) = [r for r in doc["front"] if r["trial_number"] == trial]
    assert row["reeval"]["val/ctr_auc"]["mean"] == pytest.approx(stats["val/ctr_auc"]["mean"])
    rows = list(csv.DictReader(io.StringIO(_cli_out(
        capsys, ["pareto", "--study", "e2e", "--storage", url, "-f", "csv"]))))
    (crow,) = [r for r in rows if int(r["trial"]) == trial]
    assert int(crow["reeval_val_ctr_auc_n"]) == 2
    # a rerun skips stored seeds (resumes) and trains nothing new
    assert "seed 1/2" not in _cli_out(capsys, ["reeval", "--study", "e2e", "--storage", url,
                                           "--top", "1", "--seeds", "2"])
