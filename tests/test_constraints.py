"""Cost-aware search: serving cost per trial, `max_params` / `max_latency_ms` constraints."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from automtl.cli import main
from automtl.config import DataConfig, ModelConfig
from automtl.data import load_dataset
from automtl.errors import ConfigError
from automtl.models import build_model, count_parameters
from automtl.search import Store, StudyConfig, open_study, run_search
from automtl.search.study_config import PrunerConfig
from automtl.train import device_split, inference_latency_ms

ROWS = 4000
TINY_SPACE = {
    "name": "tiny",
    "params": {
        "model.arch": {"choices": {
            "shared_bottom": {"model.bottom_dims": {"choices": [[8], [64, 64]]}},
            "mmoe": {"model.n_experts": {"int": [2, 4]}, "model.expert_dims": [64, 64]},
        }},
        "model.embedding_dim": 4,
        "model.tower_dims": [8],
        "train.lr": {"float": [1.0e-3, 1.0e-2], "log": True},
        "train.batch_size": 1024,
    },
}
States = optuna.trial.TrialState


@pytest.fixture(scope="module")
def data():
    return load_dataset(DataConfig("synthetic", options={"rows": ROWS}))


def _dominated(v, others):
    return any(all(o >= x for o, x in zip(w, v)) and any(o > x for o, x in zip(w, v))
               for w in others)


def _brute_front(trials) -> set[int]:
    ok = [t for t in trials if t.state == States.COMPLETE
          and all(c <= 0 for c in t.constraints.values())]
    return {t.number for t in ok if not _dominated(t.values, [u.values for u in ok])}


def test_latency_is_finite_positive_and_scaled_to_1000_rows(data):
    model = build_model(ModelConfig(arch="shared_bottom", bottom_dims=[8], embedding_dim=4,
                                    tower_dims=[8]), data.features, data.tasks)
    val = device_split(data, "val", torch.device("cpu"))
    ms = inference_latency_ms(model, val, [t.name for t in data.tasks], warmup=1, repeats=3)
    assert math.isfinite(ms) and ms > 0
    assert model.training  # restored


def test_infeasible_completed_trials_never_enter_the_front(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = optuna.create_study(storage=url, study_name="c", directions=["maximize"] * 2)
    study.set_user_attr("objectives", ["a", "b"])
    points = [(0.9, 0.9, 1.0), (0.6, 0.5, -1.0), (0.5, 0.6, 0.0), (0.4, 0.4, -2.0),
              (0.95, 0.1, 3.0)]

    def objective(trial):
        a, b, c = points[trial.number]
        trial.set_constraint("max_params", c)
        return a, b

    study.optimize(objective, n_trials=len(points))
    rows = Store(url).refresh_front(study)
    got = {r.trial_number for r in rows}
    assert got == _brute_front(study.get_trials()) == {1, 2}  # 0 dominates all but is infeasible


def test_max_params_prunes_infeasible_trials_with_their_constraint_values(tmp_path, data):
    sizes = [count_parameters(build_model(ModelConfig(**m), data.features, data.tasks)) for m in (
        {"arch": "shared_bottom", "bottom_dims": [8], "embedding_dim": 4, "tower_dims": [8]},
        {"arch": "mmoe", "n_experts": 4, "expert_dims": [64, 64], "embedding_dim": 4,
         "tower_dims": [8]})]
    limit = (sizes[0] + sizes[1]) // 2
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    cfg = StudyConfig(name="cost", data=DataConfig("synthetic", options={"rows": ROWS}),
                      objectives=["ctr_auc", "cvr_auc"], space=str(space), epochs=1, n_trials=8,
                      sampler="random", pruner=PrunerConfig(kind="none"), max_params=limit)
    url = f"sqlite:///{tmp_path / 'cost.db'}"
    run_search(cfg, storage=url, device="cpu")
    study = open_study(url, "cost")
    trials = study.get_trials()
    assert len(trials) == 8
    infeasible = [t for t in trials if t.user_attrs["n_params"] > limit]
    assert infeasible and len(infeasible) < 8
    for t in trials:
        assert t.constraints == {"max_params": t.user_attrs["n_params"] - limit}
        assert t.user_attrs["latency_ms"] > 0
        if t in infeasible:
            assert t.state == States.PRUNED
            assert t.user_attrs["prune_reason"].startswith("infeasible: n_params")
            assert "epochs_run" not in t.user_attrs  # not trained
        else:
            assert t.state == States.COMPLETE
    front = {r.trial_number for r in Store(url).front("cost")}
    assert front and front == _brute_front(trials)
    assert not front & {t.number for t in infeasible}


def test_cli_max_latency_end_to_end(tmp_path: Path, capsys):
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'lat.db'}"
    argv = ["search", "--dataset", "synthetic", "--space", str(space), "--storage", url,
            "--data-option", f"rows={ROWS}", "--n-trials", "3", "--epochs", "1",
            "--device", "cpu", "--no-report", "--max-latency-ms", "2"]
    assert main(argv) == 0
    study = open_study(url, "synthetic")
    for t in study.get_trials():
        lat = t.user_attrs["latency_ms"]
        assert math.isfinite(lat) and lat > 0
        assert t.constraints["max_latency_ms"] == pytest.approx(lat - 2.0)
        assert (t.state == States.PRUNED) == (lat > 2.0)
    capsys.readouterr()
    assert main(argv[:-1] + ["-1"]) == 2
    err = capsys.readouterr().err
    assert "max_latency_ms: must be a positive number" in err and err.count("\n") == 1
    with pytest.raises(ConfigError, match="max_params: must be > 0"):
        StudyConfig(max_params=0).validate()
