"""Baselines first (`enqueue:` in presets) and warm start from another study's front."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from automtl.cli import main
from automtl.config import DataConfig, load_trial_config
from automtl.data import load_dataset
from automtl.errors import ConfigError
from automtl.search import StudyConfig, open_study, run_search, study_preset
from automtl.search.enqueue import config_params
from automtl.search.prepare import trial_base
from automtl.search.space import load_space
from automtl.search.space_nodes import SpaceContext
from automtl.search.study_config import PrunerConfig, load_study_config

ROWS = 4000
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
BASELINE_A = {"model": {"arch": "mmoe", "n_experts": 3, "expert_dims": [16], "embedding_dim": 4,
                        "tower_dims": [8]},
              "train": {"lr": 0.004, "batch_size": 1024}}
BASELINE_B = {"model": {"arch": "shared_bottom", "head": "esmm", "bottom_dims": [32],
                        "embedding_dim": 4, "tower_dims": [8]},
              "train": {"lr": 0.002, "batch_size": 1024}}


@pytest.fixture(scope="module")
def ctx():
    data = load_dataset(DataConfig("synthetic", options={"rows": ROWS}))
    return SpaceContext.from_dataset(data)


def _write(folder: Path, name: str, doc: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_shipped_presets_enqueue_examples_expressible_in_their_space(ctx):
    cfg = study_preset("synthetic")
    # one baseline (each costs a whole training of the budget) and a wide-first probe
    assert [Path(p).name for p in cfg.enqueue] == ["mmoe.yaml"]
    assert [Path(p).name for p in cfg.probes] == ["wide.yaml"]
    assert [Path(p).name for p in study_preset("ali-ccp").enqueue] == [
        "mmoe.yaml", "ple.yaml", "esmm.yaml"]
    examples = Path(cfg.enqueue[0]).parent
    for space_name in ("quick", "default"):
        space = load_space(space_name)
        for path in [str(examples / f"{n}.yaml") for n in ("mmoe", "ple", "esmm", "wide")]:
            example = load_trial_config(path)
            params = config_params(space, _plain(path), ctx, trial_base(cfg), path)
            rebuilt = space.suggest(optuna.trial.FixedTrial(params), ctx, trial_base(cfg))
            example.loss.weighting.weights = {t: 1.0 for t in ctx.tasks}  # {} means 1.0 each
            assert rebuilt.model == example.model and rebuilt.loss == example.loss
            assert (rebuilt.train.lr, rebuilt.train.weight_decay, rebuilt.train.batch_size) == \
                (example.train.lr, example.train.weight_decay, example.train.batch_size)
    census = study_preset("census-income")
    assert [Path(p).name for p in census.enqueue] == ["mmoe.yaml", "ple.yaml"]


def _plain(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def test_a_config_the_space_cannot_express_is_one_line(ctx):
    space = load_space("mmoe")
    cfg = StudyConfig()
    ple = str(Path(study_preset("synthetic").enqueue[0]).parent / "ple.yaml")
    with pytest.raises(ConfigError) as err:
        config_params(space, _plain(ple), ctx, trial_base(cfg), "ple.yaml")
    assert "\n" not in str(err.value) and "model.arch is 'ple'" in str(err.value)
    odd = {"model": {"arch": "mmoe", "activation": "gelu"}}
    with pytest.raises(ConfigError, match="model.activation is \"gelu\" but the space does not"):
        config_params(load_space("default"), odd, ctx, trial_base(cfg), "odd")


def test_preset_baselines_run_first_and_are_never_pruned(tmp_path: Path):
    space = _write(tmp_path, "tiny.yaml", TINY_SPACE)
    _write(tmp_path, "a.yaml", BASELINE_A)
    _write(tmp_path, "b.yaml", BASELINE_B)
    _write(tmp_path, "bad.yaml", {"model": {"arch": "ple"}})  # not in the tiny space: skipped
    preset = _write(tmp_path, "preset.yaml", {
        "name": "enq", "data": {"name": "synthetic", "options": {"rows": ROWS}},
        "objectives": ["ctr_auc", "cvr_auc"], "space": str(space), "epochs": 2, "n_trials": 4,
        "pruner": {"kind": "pareto", "min_epoch": 1, "warmup_trials": 1},
        "enqueue": ["a.yaml", "bad.yaml", "b.yaml"]})
    cfg = load_study_config(preset)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    result = run_search(cfg, storage=url, device="cpu")
    assert result.trial_numbers == [0, 1, 2, 3]
    study = open_study(url, "enq")
    trials = study.get_trials(deepcopy=False)
    assert [t.user_attrs.get("enqueued") for t in trials] == [
        "baseline tmp/a.yaml".replace("tmp", tmp_path.name),
        "baseline tmp/b.yaml".replace("tmp", tmp_path.name), None, None]
    for t, doc in zip(trials[:2], (BASELINE_A, BASELINE_B)):
        assert t.state == optuna.trial.TrialState.COMPLETE  # protected from the pruner
        model = t.user_attrs["config"]["model"]
        assert {k: model[k] for k in doc["model"]} == doc["model"]
        assert t.user_attrs["config"]["train"]["lr"] == doc["train"]["lr"]
    assert len(study.user_attrs["baselines_skipped"]) == 1
    assert "bad.yaml" in study.user_attrs["baselines_skipped"][0]


def test_missing_enqueue_file_is_one_line(tmp_path: Path):
    preset = _write(tmp_path, "p.yaml", {"enqueue": ["nope.yaml"]})
    with pytest.raises(ConfigError, match=r"enqueue\[0\]: nope.yaml: no such TrialConfig file"):
        load_study_config(preset)


def test_warm_start_enqueues_the_front_and_refuses_what_the_space_cannot_express(
        tmp_path: Path, capsys):
    space = _write(tmp_path, "tiny.yaml", TINY_SPACE)
    url = f"sqlite:///{tmp_path / 'a.db'}"
    src = StudyConfig(name="src", data=DataConfig("synthetic", options={"rows": ROWS}),
                      objectives=["ctr_auc", "cvr_auc"], space=str(space), epochs=1, n_trials=3,
                      pruner=PrunerConfig(kind="none"))
    run_search(src, storage=url, device="cpu")
    front = open_study(url, "src").best_trials
    assert front
    other = f"sqlite:///{tmp_path / 'b.db'}"
    base = ["search", "--dataset", "synthetic", "--space", str(space), "--storage", other,
            "--data-option", f"rows={ROWS}", "--epochs", "1", "--device", "cpu", "--no-report",
            "--warm-start", "src", "--warm-start-storage", url]
    assert main(base + ["--study-name", "dst", "--n-trials", "4"]) == 0
    dst = open_study(other, "dst").get_trials(deepcopy=False)
    n = min(len(front), 2)  # at most half of --n-trials
    ranked = sorted(front, key=lambda t: (-sum(t.values) / 2, t.number))[:n]
    for t, f in zip(dst[:n], ranked):
        assert t.user_attrs["enqueued"] == f"warm start src #{f.number}"
        assert t.user_attrs["config"]["model"] == f.user_attrs["config"]["model"]
        assert t.params == f.params
    assert all("enqueued" not in t.user_attrs for t in dst[n:])
    # a space without shared_bottom/mmoe cannot express the front: one line, nothing created
    narrow = _write(tmp_path, "narrow.yaml", {"name": "narrow", "params": {
        "model.arch": "single", "model.embedding_dim": 4}})
    capsys.readouterr()
    argv = [a if a != str(space) else str(narrow) for a in base]
    assert main(argv + ["--study-name", "dst2", "--n-trials", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--warm-start src trial #" in err and "cannot express" in err
    assert "dst2" not in optuna.get_all_study_names(other)
    assert main(base[:-4] + ["--warm-start", "nope", "--study-name", "dst3"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err
