"""A study database written by automtl before the search package was restructured (a text dump
of a 3-trial SQLite study made by main at 60f8d82) still opens, reports and resumes."""

from __future__ import annotations

import optuna

from automtl.cli import main
from automtl.search import Store, objective_names, open_study, optimize_study


def test_old_study_opens_and_resumes(old_study_url: str, capsys) -> None:
    url = old_study_url
    study = open_study(url, "old")
    assert objective_names(study) == ["ctr_auc", "cvr_auc"]
    old = study.get_trials(deepcopy=False)
    assert len(old) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in old)
    assert [r.trial_number for r in Store(url).front("old")] == [1]  # as main stored it

    result = optimize_study(study, storage_url=url, n_trials=1, device="cpu")
    assert result.trials_run == 1 and not result.interrupted
    trials = open_study(url, "old").get_trials(deepcopy=False)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    new = trials[3]
    assert new.state == optuna.trial.TrialState.COMPLETE, new.user_attrs.get("fail_reason")
    # the new trial is drawn from the stored space and written like the old ones
    assert new.user_attrs["arch"] in ("shared_bottom", "mmoe")
    assert set(new.user_attrs) >= set(old[0].user_attrs) - {"checkpoint"}
    front = Store(url).front("old")  # recomputed over old and new trials
    assert front and {r.trial_number for r in front} <= {0, 1, 2, 3}

    capsys.readouterr()
    assert main(["pareto", "--study", "old", "--storage", url, "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 1 + len(front)
