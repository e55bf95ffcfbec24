"""`automtl train` end to end on tiny synthetic data, saved weights, config round trip and
path-precise config errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from automtl.cli import main
from automtl.config import (
    LossConfig,
    ModelConfig,
    PWiseRConfig,
    TrialConfig,
    WeightingConfig,
    load_trial_config,
    save_trial_config,
)
from automtl.data import load_dataset
from automtl.errors import ConfigError
from automtl.train import device_split, evaluate, load_trained

TRIAL_YAML = """\
data:
  name: synthetic
  options: {rows: 8000, seed: 2}
model:
  arch: shared_bottom
  embedding_dim: 4
  bottom_dims: [16]
  tower_dims: [8]
loss:
  pwiser: {lam: 0.1, m1: 0.3, m2: 0.3}
train:
  epochs: 2
  batch_size: 512
  lr: 0.01
  device: cpu
"""


def test_train_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = tmp_path / "trial.yaml"
    cfg_path.write_text(TRIAL_YAML)
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg_path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "epoch 1:" in text and "epoch 2:" in text and "samples/s" in text
    for name in ("ctr", "ctcvr", "cvr"):
        assert re.search(rf"\b{name}\b", text)
    assert (out / "model.pt").is_file() and (out / "config.yaml").is_file()
    cfg, model = load_trained(out)
    assert cfg.loss.pwiser == PWiseRConfig(lam=0.1, m1=0.3, m2=0.3)
    data = load_dataset(cfg.data)
    test = evaluate(model, device_split(data, "test", torch.device("cpu")), data.tasks, 4096)
    # the printed table shows the test AUC of exactly these saved weights
    assert f"{test['ctr_auc']:.4f}" in text and f"{test['ctcvr_auc']:.4f}" in text
    assert test["ctr_auc"] > 0.55
    # weights are plain tensors readable without unpickling code
    state = torch.load(out / "model.pt", weights_only=True)
    assert set(state) == set(model.state_dict())


def test_train_cli_bad_config_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  arch: mmoe\n  n_experts: four\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{bad}: model.n_experts: expected an integer, got 'four'" in err.replace("\n", "")


def test_train_cli_unknown_loss_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a loss naming a task the dataset lacks: one line, exit 2, before any training
    cfg_path = tmp_path / "t.yaml"
    cfg_path.write_text(TRIAL_YAML.replace("pwiser: {lam: 0.1, m1: 0.3, m2: 0.3}",
                                           "pwiser: {task: cvr}"))
    assert main(["train", "--config", str(cfg_path)]) == 2
    assert "loss.pwiser.task: unknown task 'cvr'" in capsys.readouterr().err


def test_train_cli_non_finite_loss_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a task weight beyond float32 range makes the first step's total loss infinite
    cfg_path = tmp_path / "t.yaml"
    cfg_path.write_text(TRIAL_YAML.replace("pwiser: {lam: 0.1, m1: 0.3, m2: 0.3}",
                                           "weighting: {weights: {ctr: 1.0e+39}}"))
    assert main(["train", "--config", str(cfg_path)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "training failed: non-finite loss at epoch 1, step 1 of the epoch" in err
    assert "in term total" in err


def test_train_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_trial_config_yaml_round_trip(tmp_path: Path) -> None:
    cfg = TrialConfig(model=ModelConfig(arch="ple", n_levels=3, expert_dims=[64, 32]),
                      loss=LossConfig(pwiser=PWiseRConfig(lam=0.2, task="ctr"),
                                      weighting=WeightingConfig(scheme="ple_decay", gamma=0.8,
                                                                weights={"ctr": 2.0})))
    cfg.train.grad_clip = 5.0
    path = tmp_path / "c.yaml"
    save_trial_config(cfg, path)
    assert load_trial_config(path) == cfg


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("loss:\n  pwiser:\n    margin: 0.3\n", "loss.pwiser.margin: unknown key"),
    ("loss:\n  weighting:\n    scheme: softmax\n", "loss.weighting.scheme: must be one of fixed"),
    ("loss:\n  weighting:\n    gamma: 1.5\n", "loss.weighting: gamma: must be in (0, 1]"),
    ("loss:\n  dependency:\n    tau: [0.1, x]\n", "loss.dependency.tau[1]: expected a number"),
    ("loss:\n  calibrator:\n    alpha: -1\n", "loss.calibrator: alpha: must be >= 0"),
    ("train:\n  optimizer: sgd\n", "train.optimizer: must be one of adam, adamw"),
    ("train:\n  grad_clip: 0\n", "train: grad_clip: must be > 0"),
    ("train:\n  precision: fp16\n", "train.precision: must be one of auto, fp32, bf16"),
])
def test_bad_configs_name_the_path(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_trial_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
