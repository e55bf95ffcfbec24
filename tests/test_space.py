"""Search-space parsing, validation errors with YAML paths, conditional sampling, presets."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from automtl.config import TrialConfig
from automtl.errors import ConfigError
from automtl.search.space import list_spaces, load_space, parse_space
from automtl.search.space_nodes import SpaceContext
from automtl.search.study_config import (
    StudyConfig,
    list_presets,
    load_study_config,
    resolve_objectives,
    study_preset,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

CASCADE = SpaceContext(["ctr", "ctcvr"], n_pairs=1, capabilities=frozenset({"cascade"}))
FLAT = SpaceContext(["income", "marital"], n_pairs=0, capabilities=frozenset())

SPACE = {
    "name": "t",
    "params": {
        "model.arch": {"choices": {
            "shared_bottom": {"model.bottom_dims": {"choices": [[16], [32, 16]]}},
            "mmoe": {"model.n_experts": {"int": [2, 4]},
                     "model.expert_dims": {"choices": [[16], [32]]}},
            "ple": {"model.n_levels": {"int": [1, 2]},
                    "model.expert_dims": {"choices": [[16], [32]]}},
            "aitm": {"requires": "cascade", "model.aitm_dim": {"choices": [8, 16]}},
        }},
        "model.head": {"choices": {"plain": {}, "esmm": {"requires": "cascade"}}},
        "model.embedding_dim": 4,
        "loss.pwiser": {"optional": {"requires": "cascade",
                                     "loss.pwiser.lam": {"float": [0.01, 1.0], "log": True}}},
        "loss.dependency": {"optional": {
            "loss.dependency.tau": {"float": [0.01, 1.0], "log": True, "repeat": "pairs"}}},
        "loss.weighting.weights.{task}": {"float": [0.5, 2.0]},
        "train.lr": {"float": [1e-3, 1e-2], "log": True},
        "train.batch_size": {"choices": [256, 512]},
    },
}


def _samples(space, ctx, n=60, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        cfg = space.suggest(trial, ctx, {"train": {"epochs": 1}})
        out.append((cfg, dict(trial.params)))
        study.tell(trial, 0.0)
    return out


def test_conditional_params_appear_only_under_their_parents():
    space = parse_space(SPACE, "t.yaml")
    seen_arch = set()
    for cfg, params in _samples(space, CASCADE):
        arch = params["model.arch"]
        seen_arch.add(arch)
        assert cfg.model.arch == arch
        assert ("model.n_experts" in params) == (arch == "mmoe")
        assert ("model.n_levels" in params) == (arch == "ple")
        assert ("model.expert_dims" in params) == (arch in ("mmoe", "ple"))
        assert ("model.bottom_dims" in params) == (arch == "shared_bottom")
        assert ("model.aitm_dim" in params) == (arch == "aitm")
        # list choices are stored as JSON labels and decoded into the config
        if arch == "shared_bottom":
            assert cfg.model.bottom_dims in ([16], [32, 16])
        assert cfg.model.embedding_dim == 4  # fixed value
        assert ("loss.pwiser.lam" in params) == bool(params["loss.pwiser"])
        assert (cfg.loss.pwiser is not None) == bool(params["loss.pwiser"])
        if cfg.loss.dependency is not None:
            assert len(cfg.loss.dependency.tau) == 1  # one cascade pair
        assert set(cfg.loss.weighting.weights) == {"ctr", "ctcvr"}  # {task} expanded
        assert isinstance(cfg, TrialConfig) and cfg.train.epochs == 1
    assert seen_arch == {"shared_bottom", "mmoe", "ple", "aitm"}


def test_cascade_only_choices_are_skipped_without_a_cascade():
    space = parse_space(SPACE, "t.yaml")
    archs = set()
    for cfg, params in _samples(space, FLAT):
        archs.add(cfg.model.arch)
        assert cfg.model.head == "plain" and "model.head" not in params  # one choice left
        assert cfg.loss.pwiser is None and "loss.pwiser" not in params
        assert set(cfg.loss.weighting.weights) == {"income", "marital"}
    assert "aitm" not in archs and len(archs) == 3


def test_every_choice_needing_a_missing_capability_is_an_error():
    doc = {"params": {"model.arch": {"choices": {"aitm": {"requires": "cascade"}}}}}
    space = parse_space(doc, "only_aitm.yaml")
    study = optuna.create_study()
    with pytest.raises(ConfigError, match="model.arch: every choice needs cascade"):
        space.suggest(study.ask(), FLAT)


def _bad(params, **top):
    return {"params": params, **top}


@pytest.mark.parametrize("doc, where", [
    (_bad({"model.n_expert": 3}), "params.model.n_expert: unknown config path"),
    (_bad({"model.arch": {"choices": {"mmoe": {"model.n_expert": {"int": [1, 2]}}}}}),
     "params.model.arch.choices.mmoe.model.n_expert: unknown config path"),
    (_bad({"model.n_experts": {"int": [2, "x"]}}), "params.model.n_experts.int: expected [low, high]"),
    (_bad({"model.n_experts": {"int": [5, 2]}}), "params.model.n_experts.int: low 5 > high 2"),
    (_bad({"train.lr": {"float": [0.0, 1.0], "log": True}}), "params.train.lr.float: a log range"),
    (_bad({"model.n_experts": {"int": [0, 3]}}), "params.model.n_experts: value 0 does not fit"),
    (_bad({"model.arch": {"choices": ["mmoe", "transformerz"]}}),
     "params.model.arch.choices[1]: value 'transformerz'"),
    (_bad({"model.arch": {"choices": {"mmoe": {"requires": "gpu"}}}}),
     "params.model.arch.choices.mmoe.requires: must be one of"),
    (_bad({"model.arch": {"choices": {
        "mmoe": {"model.expert_dims": {"choices": [[8]]}},
        "ple": {"model.expert_dims": {"choices": [[16]]}}}}}),
     "params.model.arch.choices.ple.model.expert_dims: model.expert_dims is sampled differently"),
    (_bad({"model.n_experts": {"optional": {}}}), "params.model.n_experts: optional:"),
    (_bad({"model.arch": {"choices": ["mmoe"], "int": [1, 2]}}), "params.model.arch: give only one"),
    (_bad({"model.arch": "mmoe", "model.n_experts": {"int": [1, 2], "lgo": True}}),
     "params.model.n_experts.lgo: unknown key"),
    (_bad({"model.arch": {"choices": {"mmoe": {"model.arch": "ple"}}}}),
     "params.model.arch.choices.mmoe.model.arch: model.arch is already set"),
    (_bad({"loss.pwiser": {"optional": {"model.n_experts": 3}}}),
     "params.loss.pwiser.optional.model.n_experts: parameters of an optional section"),
    ({"params": {"model.arch": "mmoe"}, "extends": "default"}, "extends: unknown key"),
    ({"name": "x"}, "params: a space needs a non-empty"),
])
def test_invalid_spaces_name_the_yaml_path(doc, where):
    with pytest.raises(ConfigError) as info:
        parse_space(doc, "bad.yaml")
    msg = str(info.value)
    assert msg.startswith("bad.yaml: ") and where in msg, msg
    assert "\n" not in msg


def test_space_files_load_by_path_and_name(tmp_path: Path):
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    assert load_space(str(p)).name == "t"
    with pytest.raises(ConfigError, match="no such file or shipped space .*default"):
        load_space("nonexistent-space")
    (tmp_path / "broken.yaml").write_text("params: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_space(str(tmp_path / "broken.yaml"))


@pytest.mark.parametrize("name", ["default", "mmoe", "ple", "losses"])
def test_shipped_spaces_sample_valid_configs(name):
    assert name in list_spaces()
    space = load_space(name)
    for ctx in (CASCADE, FLAT):
        configs = _samples(space, ctx, n=25, seed=3)
        for cfg, _ in configs:
            assert isinstance(cfg, TrialConfig)
            if "cascade" not in ctx.capabilities:
                assert cfg.model.arch != "aitm" and cfg.model.head == "plain"
                assert cfg.loss.pwiser is None and cfg.loss.calibrator is None
    if name == "default":
        archs = {c.model.arch for c, _ in _samples(space, CASCADE, n=120, seed=1)}
        assert archs >= {"single", "shared_bottom", "mmoe", "ple", "aitm", "apem", "dbmtl", "snr",
                         "fdn"}


def test_presets_load_and_objectives_are_checked_against_the_dataset():
    from automtl.data import load_dataset

    assert {"synthetic", "ali-ccp", "aliexpress-nl", "aliexpress-es", "aliexpress-fr",
            "aliexpress-us", "census-income"} <= set(list_presets())
    for name in list_presets():
        cfg = study_preset(name)
        assert cfg.n_trials > 0 and cfg.epochs > 0
        load_space(cfg.space)  # every preset's space exists
    cfg = study_preset("synthetic")
    ds = load_dataset(cfg.data.__class__("synthetic", options={"rows": 4000}))
    assert resolve_objectives(cfg, ds) == ["ctr_auc", "cvr_auc"]
    assert resolve_objectives(StudyConfig(), ds) == ["ctr_auc", "ctcvr_auc"]  # default: tasks
    with pytest.raises(ConfigError, match="objectives: 'purchase_auc' is not a metric .*ctr_auc"):
        resolve_objectives(StudyConfig(objectives=["ctr_auc", "purchase_auc"]), ds)


def test_study_config_errors_name_the_file_and_key(tmp_path: Path):
    p = tmp_path / "study.yaml"
    p.write_text("name: s\nepochs: two\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="study.yaml: epochs: expected an integer"):
        load_study_config(p)
    p.write_text("name: s\nsampler: cmaes\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="study.yaml: sampler: must be one of tpe"):
        load_study_config(p)
    p.write_text("name: s\ntrain: {batch_sise: 3}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="train.batch_sise: unknown key"):
        load_study_config(p)
    p.write_text("name: s\npruner: {reduction_factor: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="pruner: reduction_factor: must be > 1"):
        load_study_config(p)
    # a relative space path is resolved next to the preset file
    (tmp_path / "sp.yaml").write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    p.write_text("name: s\nspace: sp.yaml\n", encoding="utf-8")
    assert Path(load_study_config(p).space) == tmp_path / "sp.yaml"


def test_extends_overrides_parent_entries_in_place(tmp_path: Path):
    from automtl.search.space import load_space_doc

    parent = tmp_path / "parent.yaml"
    parent.write_text(yaml.safe_dump(SPACE, sort_keys=False), encoding="utf-8")
    child = tmp_path / "child.yaml"
    child.write_text("extends: parent.yaml\nparams:\n  model.head: plain\n"
                     "  model.dropout: {choices: [0.0, 0.1]}\n", encoding="utf-8")
    doc, _ = load_space_doc(str(child))
    assert list(doc["params"])[:3] == ["model.arch", "model.head", "model.embedding_dim"]
    assert doc["params"]["model.head"] == "plain" and list(doc["params"])[-1] == "model.dropout"
    assert "extends" not in doc and doc["name"] == "child"
    space = load_space(str(child))
    for cfg, params in _samples(space, CASCADE, n=10):
        assert cfg.model.head == "plain" and "model.head" not in params
        assert cfg.model.dropout in (0.0, 0.1)
    # the shipped quick space is default without the transformer bottoms
    quick = load_space("quick")
    assert "model.transformer_layers" not in quick.paths()
    assert all(c.model.bottom == "shared" for c, _ in _samples(quick, CASCADE, n=10))
    # cycles and unknown parents are one-line errors
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nparams: {}\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nparams: {model.arch: mmoe}\n",
                                     encoding="utf-8")
    with pytest.raises(ConfigError, match="makes a cycle"):
        load_space(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("extends: nowhere\nparams: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="extends: nowhere: no such file or shipped space"):
        load_space(str(tmp_path / "c.yaml"))
