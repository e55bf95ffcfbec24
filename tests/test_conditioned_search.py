"""Preference-conditioned trials in a real search (issue 16): K sweep rows per trial, the study
front over points equals a brute-force non-dominated filter, `automtl pareto` shows weights,
and export of a point inside a conditioned trial reproduces it (yaml: val AUC within 1e-4 on
CPU; TorchScript/ONNX with the vector baked in or as an input: within 1e-5 of torch)."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

from automtl.cli import main
from automtl.config import load_trial_config
from automtl.data import load_dataset
from automtl.export import example_inputs, input_names, load_weights
from automtl.models import build_model
from automtl.models.film import set_preference
from automtl.search import Store, open_study

K = 5
SPACE = {
    "name": "cond-tiny",
    "params": {
        "model.arch": {"choices": {"shared_bottom": {}, "mmoe": {"model.n_experts": 2}}},
        "model.embedding_dim": 4, "model.bottom_dims": [16], "model.expert_dims": [16],
        "model.tower_dims": [8],
        "loss.weighting.scheme": {"choices": {
            "fixed": {"loss.weighting.weights.{task}": {"float": [0.5, 2.0]}},
            "conditioned": {"loss.weighting.sweep_points": K,
                            "loss.weighting.concentration": {"float": [0.5, 2.0]}},
        }},
        "train.lr": {"float": [3.0e-3, 1.0e-2], "log": True},
        "train.batch_size": 512,
    },
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond")
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    url = f"sqlite:///{root / 'c.db'}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # the closing table (rich prints to sys.stdout)
        rc = main(["search", "--dataset", "synthetic", "--space", str(root / "space.yaml"),
                   "--storage", url, "--study-name", "cond", "--n-trials", "4", "--epochs", "2",
                   "--data-option", "rows=4000", "--device", "cpu", "--no-report", "--seed", "3",
                   "--sampler", "random", "--pruner", "none", "--save-checkpoints"])
    assert rc == 0
    (root / "search.out").write_text(out.getvalue(), encoding="utf-8")
    st = open_study(url, "cond")
    done = [t for t in st.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE]
    kinds = {t.user_attrs["config"]["loss"]["weighting"]["scheme"] for t in done}
    assert kinds == {"fixed", "conditioned"}, kinds  # the seed gives a mixed study
    return root, url, st, done


def _conditioned(done):
    return [t for t in done if t.user_attrs["config"]["loss"]["weighting"]["scheme"]
            == "conditioned"]


def test_sweep_table_has_k_rows_per_conditioned_trial(study):
    root, url, st, done = study
    with sqlite3.connect(root / "c.db") as conn:
        rows = conn.execute("SELECT trial_number, point, weights_json, val_json FROM "
                            "automtl_sweep_points WHERE study_name = 'cond'").fetchall()
    cond = _conditioned(done)
    assert sorted({r[0] for r in rows}) == sorted(t.number for t in cond)
    for t in cond:
        mine = sorted((r for r in rows if r[0] == t.number), key=lambda r: r[1])
        assert [r[1] for r in mine] == list(range(K))
        weights = [json.loads(r[2]) for r in mine]
        assert all(abs(sum(w.values()) - 1) < 1e-9 for w in weights)
        assert [w["ctr"] for w in weights] == [1.0, 0.75, 0.5, 0.25, 0.0]
        # what Optuna sees is one of the sweep points (the knee over the objectives)
        vals = [json.loads(r[3]) for r in mine]
        assert [t.values[0], t.values[1]] in [[v["ctr_auc"], v["cvr_auc"]] for v in vals]
        assert t.user_attrs["preference"] in weights
        # the pruner reads the per-epoch table: there, too, each epoch's value is a sweep point
        # (the same knee rule), and at the best epoch it is what Optuna got
        hist = Store(url).epoch_history("cond")[t.number]
        assert [hist[t.user_attrs["best_epoch"] - 1][o] for o in ("ctr_auc", "cvr_auc")] \
            == t.values
        assert t.user_attrs["config"]["loss"]["weighting"]["select_on"] == ["ctr_auc", "cvr_auc"]


def test_point_front_equals_brute_force_filter(study):
    root, url, st, done = study
    store = Store(url)
    sweeps = store.sweeps("cond")
    pts = []  # (trial, point, ctr, cvr)
    for t in done:
        if t.number in sweeps:
            pts += [(t.number, s.point, s.val["ctr_auc"], s.val["cvr_auc"])
                    for s in sweeps[t.number]]
        else:
            pts.append((t.number, None, t.values[0], t.values[1]))
    brute = {(n, p) for n, p, a, b in pts
             if not any(a2 >= a and b2 >= b and (a2 > a or b2 > b) for _, _, a2, b2 in pts)}
    front = store.point_front(st)
    assert {(r.trial_number, r.point) for r in front} == brute
    for r in front:
        assert (r.weights is not None) == (r.trial_number in sweeps)
    # the stored trial-level front is the trials that own a front point
    assert {r.trial_number for r in store.front("cond")} == {n for n, _ in brute}


def test_search_closing_table_lists_the_front_points(study):
    root, url, st, done = study
    out = (root / "search.out").read_text(encoding="utf-8")
    store = Store(url)
    points = store.point_front(st)
    store.dispose()
    assert f"Pareto front of 'cond': {len(points)} points of 4 trials" in out
    table = out.split("points of 4 trials")[1]
    for p in points:
        assert str(p.trial_number) in table
    # a conditioned point on the front brings the task-weights column (folded when narrow)
    assert ("weights" in table) == any(p.weights for p in points)


def test_pareto_cli_shows_points_with_weights(study, capsys):
    root, url, st, done = study
    capsys.readouterr()
    assert main(["pareto", "--study", "cond", "--storage", url, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    cond = {t.number for t in _conditioned(done)}
    assert any(r["weights"] for r in doc["front"] if r["trial_number"] in cond) or \
        all(r["trial_number"] not in cond for r in doc["front"])
    n = min(cond)
    assert main(["pareto", "--study", "cond", "--storage", url, "--trial", str(n),
                 "--pick", "knee"]) == 0
    out = capsys.readouterr().out
    assert f"selected: trial {n} at task weights ctr=" in out


def test_yaml_export_of_a_point_reproduces_its_val_auc(study, tmp_path, capsys):
    from automtl.train import fit

    root, url, st, done = study
    t = _conditioned(done)[0]
    path = tmp_path / "p.yaml"
    assert main(["export", "--study", "cond", "--storage", url, "--trial", str(t.number),
                 "--weights", "ctr=0.75,cvr=0.25", "-f", "yaml", "-o", str(path)]) == 0
    assert "task weights: ctr=0.75 ctcvr=0.25" in capsys.readouterr().out
    cfg = load_trial_config(path)
    assert cfg.loss.weighting.preference == {"ctr": 0.75, "ctcvr": 0.25}
    stored = Store(url).sweeps("cond")[t.number][1].val
    result = fit(cfg, load_dataset(cfg.data))
    for name in ("ctr_auc", "cvr_auc", "ctcvr_auc"):
        assert result.val[name] == pytest.approx(stored[name], abs=1e-4), name


def test_study_level_rules_choose_among_points(study, tmp_path, capsys):
    root, url, st, done = study
    front = Store(url).point_front(st)
    best_ctr = max(front, key=lambda r: (r.values["ctr_auc"], -r.trial_number))
    path = tmp_path / "w.yaml"
    capsys.readouterr()
    assert main(["export", "--study", "cond", "--storage", url, "--weights", "ctr=1",
                 "-f", "yaml", "-o", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"trial {best_ctr.trial_number} " in out
    cfg = load_trial_config(path)
    assert cfg.loss.weighting.preference == (best_ctr.weights or {})


def test_unconditioned_trial_refuses_inner_rule(study, capsys):
    root, url, st, done = study
    plain = next(t for t in done if t not in _conditioned(done))
    capsys.readouterr()
    assert main(["export", "--study", "cond", "--storage", url, "--trial", str(plain.number),
                 "--weights", "ctr=1", "-f", "yaml", "-o", "/dev/null"]) == 2
    assert "not preference-conditioned" in capsys.readouterr().err


def test_inner_weights_are_a_direction_and_each_task_is_named_once(study, tmp_path, capsys):
    """Inside a conditioned trial: 1e308 per task is the uniform vector (the sum must not
    overflow to a zero vector), and one task under two names is refused, not added up."""
    root, url, st, done = study
    t = _conditioned(done)[0]
    base = ["export", "--study", "cond", "--storage", url, "--trial", str(t.number), "-f", "yaml"]
    path = tmp_path / "huge.yaml"
    capsys.readouterr()
    assert main([*base, "--weights", "ctr=1e308,cvr=1e308", "-o", str(path)]) == 0
    assert load_trial_config(path).loss.weighting.preference == {"ctr": 0.5, "ctcvr": 0.5}
    assert main([*base, "--weights", "cvr=0.3,ctcvr=0.7", "-o", str(tmp_path / "two.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --weights: task 'ctcvr' is given twice ('cvr' and 'ctcvr'); give "
                   "each task once")
    assert not (tmp_path / "two.yaml").exists()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_serving_export_bakes_the_vector_or_takes_it_as_input(study, tmp_path, capsys, fmt):
    root, url, st, done = study
    t = _conditioned(done)[0]
    baked, live = tmp_path / f"b.{fmt}", tmp_path / f"l.{fmt}"
    base = ["export", "--study", "cond", "--storage", url, "--trial", str(t.number),
            "--weights", "ctr=0.25,ctcvr=0.75", "-f", fmt]
    assert main([*base, "-o", str(baked)]) == 0
    assert main([*base, "-o", str(live), "--weights-input"]) == 0
    assert "the trial's checkpoint" in capsys.readouterr().out
    from automtl._typed import from_dict
    from automtl.config import TrialConfig

    tcfg = from_dict(TrialConfig, t.user_attrs["config"])
    data = load_dataset(tcfg.data)
    model = load_weights(build_model(tcfg.model, data.features, data.tasks,
                                     tcfg.loss.weighting), t.user_attrs["checkpoint"]).eval()
    inputs = example_inputs(data.splits["val"], data.features, rows=200, start=5)

    def reference(vec):
        from automtl.data import Batch

        by = dict(zip(input_names(data.features), inputs))
        batch = Batch(sparse=by["sparse"], dense=by["dense"],
                      sequences={f.name: by[f.name] for f in data.sequence_features},
                      labels=torch.zeros(200, 2))
        set_preference(model, torch.tensor(vec))
        with torch.no_grad():
            out = model(batch)
        set_preference(model, None)
        return np.stack([torch.sigmoid(out[x.name]).numpy() for x in data.tasks])

    weights = torch.tensor([[0.25, 0.75]] * 100 + [[0.9, 0.1]] * 100)
    if fmt == "torchscript":
        with torch.no_grad():
            got_b = np.stack([o.numpy() for o in torch.jit.load(str(baked))(*inputs)])
            got_l = np.stack([o.numpy() for o in torch.jit.load(str(live))(*inputs, weights)])
    else:
        import onnxruntime as ort

        feed = {n: x.numpy() for n, x in zip(input_names(data.features), inputs)}
        got_b = np.stack(ort.InferenceSession(str(baked)).run(None, feed))
        got_l = np.stack(ort.InferenceSession(str(live)).run(
            None, {**feed, "task_weights": weights.numpy()}))
    np.testing.assert_allclose(got_b, reference([0.25, 0.75]), atol=1e-5, rtol=0)
    np.testing.assert_allclose(got_l[:, :100], reference([0.25, 0.75])[:, :100], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got_l[:, 100:], reference([0.9, 0.1])[:, 100:], atol=1e-5, rtol=0)
    assert not np.allclose(reference([0.25, 0.75]), reference([1.0, 0.0]), atol=1e-4)
