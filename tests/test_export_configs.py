"""`automtl export` to yaml/json (reproduced by `automtl train --config`) and fuxictr, plus the
selection rules and their errors through the CLI, on a real `automtl search` study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from automtl.cli import main
from automtl.config import (
    LossConfig,
    ModelConfig,
    PWiseRConfig,
    TrainConfig,
    TrialConfig,
    load_trial_config,
    to_dict,
)
from automtl.data import load_dataset
from automtl.errors import AutomtlError
from automtl.export import fuxictr_config
from automtl.search.selection import Selection, select
from automtl.search.store import Store
from automtl.train import device_split, evaluate, fit, load_trained
from export_study import SMALL_DATA, constructed_study
from report_study import make_study


def _export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["export", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_yaml_export_reproduces_val_auc_with_automtl_train(tmp_path: Path, capsys,
                                                          searched_study) -> None:
    s = searched_study
    trials = s.complete()
    assert len(trials) == 2
    best = max(trials, key=lambda t: t.values[0])
    path = tmp_path / "best.yaml"
    rc, out, _ = _export(capsys, "--study", s.name, "--storage", s.url, "--trial",
                         str(best.number), "-f", "yaml", "-o", str(path))
    assert rc == 0 and f"trial {best.number}" in out
    assert path.read_text().startswith("# automtl export: study 'exp'")
    cfg = load_trial_config(path)
    assert to_dict(cfg) == best.user_attrs["config"]

    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(run)]) == 0
    capsys.readouterr()
    _, model = load_trained(run)
    data = load_dataset(cfg.data)
    val = evaluate(model, device_split(data, "val", torch.device("cpu")), data.tasks, 4096)
    stored = best.user_attrs["val_metrics"]
    for name in ("ctr_auc", "cvr_auc", "ctcvr_auc"):
        assert val[name] == pytest.approx(stored[name], abs=1e-4), name
    # the objective values Optuna optimised are the same numbers
    assert val["ctr_auc"] == pytest.approx(best.values[0], abs=1e-4)
    assert val["cvr_auc"] == pytest.approx(best.values[1], abs=1e-4)


def test_json_export_by_weights_reproduces_val_auc(tmp_path: Path, capsys,
                                                   searched_study) -> None:
    s = searched_study
    front = Store(s.url).front(s.name)
    expected = select(front, ["ctr_auc", "cvr_auc"], Selection(weights={"cvr": 1.0}))
    path = tmp_path / "w.json"
    rc, out, _ = _export(capsys, "--study", s.name, "--storage", s.url, "--weights", "cvr=1",
                         "-f", "json", "-o", str(path))
    assert rc == 0 and f"trial {expected.trial_number} (max 1*cvr)" in out
    doc = json.loads(path.read_text())
    assert doc == expected.config
    cfg = load_trial_config(path)  # JSON is what `automtl train --config` reads too
    result = fit(cfg, load_dataset(cfg.data), device="cpu")
    assert result.val["cvr_auc"] == pytest.approx(expected.values["cvr_auc"], abs=1e-4)
    assert result.val["ctr_auc"] == pytest.approx(expected.values["ctr_auc"], abs=1e-4)


def test_cli_pick_knee_matches_pareto_mark(tmp_path: Path, capsys) -> None:
    url, _ = make_study(tmp_path / "known.db")
    assert main(["pareto", "--study", "known", "--storage", url, "--pick", "knee",
                 "-f", "json"]) == 0
    marked = json.loads(capsys.readouterr().out)["selected"]
    rc, out, _ = _export(capsys, "--study", "known", "--storage", url, "--pick", "knee",
                         "-f", "yaml", "-o", str(tmp_path / "k.yaml"))
    assert rc == 0 and f"trial {marked} (knee" in out
    # known front {0: (.70, .60), 1: (.72, .58), 3: (.65, .65)} normalises to (5/7, 2/7), (1, 0),
    # (0, 1): all on the line through the extremes, so the point nearest utopia (trial 0) wins.
    assert marked == 0
    rc, out, _ = _export(capsys, "--study", "known", "--storage", url, "--min", "ctr=0.66",
                         "--maximize", "cvr", "-f", "yaml", "-o", str(tmp_path / "c.yaml"))
    assert rc == 0 and "trial 0 (ctr >= 0.66, then max cvr)" in out


@pytest.mark.parametrize("args, message", [
    (["--weights", "ctcvr=1"], "--weights: unknown objective 'ctcvr'; the study's objectives "
                               "are ctr_auc, cvr_auc (or ctr, cvr)"),
    (["--min", "ctr=0.9", "--maximize", "cvr"], "no front trial satisfies ctr_auc >= 0.9"),
    ([], "choose a trial: --trial N, --pick knee"),
    (["--trial", "5"], "--trial 5: the trial is PRUNED, only completed trials can be exported"),
    (["--pick", "knee", "--weights", "ctr=1"], "choose one selection rule, got --pick and "
                                                "--weights"),
    (["--trial", "0", "--pick", "knee"], "--trial 0: the trial is not preference-conditioned"),
    (["--trial", "0", "-f", "xml"], "--format xml: unknown format"),
])
def test_cli_selection_errors_are_one_line(tmp_path: Path, capsys, args, message) -> None:
    url, _ = make_study(tmp_path / "known.db")
    fmt = [] if "-f" in args else ["-f", "yaml"]
    rc, out, err = _export(capsys, "--study", "known", "--storage", url, *args, *fmt,
                           "-o", str(tmp_path / "x.yaml"))
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.yaml").exists()


def test_cli_unknown_study_lists_available(tmp_path: Path, capsys) -> None:
    url, _ = make_study(tmp_path / "known.db")
    rc, _, err = _export(capsys, "--study", "nope", "--storage", url, "--trial", "0", "-f",
                         "yaml", "-o", str(tmp_path / "x.yaml"))
    assert rc == 2 and "available: known" in err


def test_fuxictr_export_parses_with_expected_keys(tmp_path: Path, capsys) -> None:
    ple = TrialConfig(data=SMALL_DATA, model=ModelConfig(arch="ple", n_levels=2, expert_dims=[32],
                                                         embedding_dim=8, activation="gelu"),
                      loss=LossConfig(pwiser=PWiseRConfig()),
                      train=TrainConfig(lr=0.004, patience=3, weight_decay=1e-6, seed=7))
    url = constructed_study(tmp_path / "made.db", [((0.7, 0.6), ple)])
    out = tmp_path / "fx"
    rc, _, err = _export(capsys, "--study", "made", "--storage", url, "--trial", "0",
                         "-f", "fuxictr", "-o", str(out),
                         "--write-data", str(tmp_path / "d" / "syn"))
    assert rc == 0
    assert "dropped: loss.pwiser" in err
    text = (out / "model_config.yaml").read_text()
    assert "# dropped (FuxiCTR has no equivalent):" in text and "PWiseR" in text
    model_doc = yaml.safe_load(text)
    data_doc = yaml.safe_load((out / "dataset_config.yaml").read_text())
    assert set(model_doc) == {"Base", "PLE_automtl"}
    exp = model_doc["PLE_automtl"]
    assert exp["model"] == "PLE" and exp["dataset_id"] == "syn"
    for key in ("loss", "metrics", "task", "num_tasks", "optimizer", "learning_rate", "num_layers",
                "num_shared_experts", "num_specific_experts", "expert_hidden_units",
                "gate_hidden_units", "tower_hidden_units", "hidden_activations", "net_dropout",
                "batch_size", "embedding_dim", "epochs", "seed", "monitor", "monitor_mode"):
        assert key in exp, key
    assert exp["learning_rate"] == 0.004 and exp["seed"] == 7 and exp["embedding_dim"] == 8
    assert exp["num_layers"] == 2 and exp["expert_hidden_units"] == [32]
    assert exp["hidden_activations"] == "GELU" and exp["net_regularizer"] == 1e-6
    assert exp["num_tasks"] == 2 and exp["loss"] == ["binary_crossentropy"] * 2
    assert model_doc["Base"]["early_stop_patience"] == 3
    ds = data_doc["syn"]
    assert ds["train_data"] == f"{tmp_path / 'd'}/syn/train.csv"
    assert Path(ds["train_data"]).is_file() and Path(ds["test_data"]).is_file()
    data = load_dataset(SMALL_DATA)
    named = []
    for col in ds["feature_cols"]:
        named += col["name"] if isinstance(col["name"], list) else [col["name"]]
    assert named == [f.name for f in data.sparse_features + data.dense_features
                     + data.sequence_features]
    seq = [c for c in ds["feature_cols"] if c["type"] == "sequence"]
    assert {c["share_embedding"] for c in seq} == {f.shares_with for f in data.sequence_features}
    assert [c["name"] for c in ds["label_col"]] == [t.label for t in data.tasks]
    header = Path(ds["valid_data"]).read_text().splitlines()[0].replace('"', "").split(",")
    assert set(named) | {c["name"] for c in ds["label_col"]} == set(header)


def test_fuxictr_other_architectures_are_a_clear_error() -> None:
    data = load_dataset(SMALL_DATA)
    for arch in ("aitm", "single", "apem"):
        cfg = TrialConfig(model=ModelConfig(arch=arch))  # type: ignore[arg-type]
        with pytest.raises(AutomtlError, match=rf"--format fuxictr: fuxictr has no '{arch}' "
                                               r"architecture \(it has ShareBottom, MMoE, PLE\)"):
            fuxictr_config(cfg, data.features, data.tasks)
    sb = fuxictr_config(TrialConfig(model=ModelConfig(arch="shared_bottom", head="esmm",
                                                      bottom="dtrn")), data.features, data.tasks)
    assert sb.model_config["ShareBottom_automtl"]["bottom_hidden_units"] == [256, 128]
    assert any("head=esmm" in d for d in sb.dropped) and any("bottom=dtrn" in d for d in sb.dropped)


def test_foreign_formats_from_a_searched_study(tmp_path: Path, capsys,
                                               searched_study) -> None:
    s = searched_study
    front = Store(s.url).front(s.name)
    knee = select(front, ["ctr_auc", "cvr_auc"], Selection(pick="knee"))
    rc, out, _ = _export(capsys, "--study", s.name, "--storage", s.url, "--pick", "knee",
                         "-f", "fuxictr", "-o", str(tmp_path / "fx"))
    assert rc == 0 and f"trial {knee.trial_number} (knee" in out
    exp = yaml.safe_load((tmp_path / "fx" / "model_config.yaml").read_text())
    (expid,) = [k for k in exp if k != "Base"]
    assert exp[expid]["learning_rate"] == knee.config["train"]["lr"]
    assert exp[expid]["model"] == {"mmoe": "MMoE", "shared_bottom": "ShareBottom"}[
        knee.config["model"]["arch"]]
    script = tmp_path / "rh.py"
    rc, _, _ = _export(capsys, "--study", s.name, "--storage", s.url, "--pick", "knee",
                       "-f", "torch-rechub", "-o", str(script))
    assert rc == 0
    compile(script.read_text(), str(script), "exec")  # valid Python
    assert f"'lr': {knee.config['train']['lr']!r}" in script.read_text()


def test_trial_off_the_front_can_be_exported(tmp_path: Path, capsys) -> None:
    url, study = make_study(tmp_path / "known.db")
    # trial 4 (0.69, 0.59) is dominated by trial 0 (0.70, 0.60) but completed
    assert 4 not in {r.trial_number for r in Store(url).front("known")}
    rc, out, _ = _export(capsys, "--study", "known", "--storage", url, "--trial", "4",
                         "-f", "yaml", "-o", str(tmp_path / "t4.yaml"))
    assert rc == 0 and "trial 4 (trial 4): val ctr_auc 0.6900, cvr_auc 0.5900" in out
    assert to_dict(load_trial_config(tmp_path / "t4.yaml")) == study.trials[4].user_attrs["config"]


def test_fuxictr_needs_a_bottom_layer() -> None:
    data = load_dataset(SMALL_DATA)
    with pytest.raises(AutomtlError, match="fuxictr's ShareBottom needs at least one layer in "
                                           "model.bottom_dims"):
        fuxictr_config(TrialConfig(model=ModelConfig(arch="shared_bottom", bottom_dims=[])),
                       data.features, data.tasks)
