"""The typed config loader: YAML 1.1 exponent floats, strict types, path-precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from automtl.config import load_trial_config
from automtl.errors import ConfigError


def test_exponent_without_dot_is_a_number(tmp_path: Path) -> None:
    # PyYAML reads `1e-5` as the string "1e-5"; users mean the number
    p = tmp_path / "t.yaml"
    p.write_text("train: {lr: 1e-5, weight_decay: 3E-4}\n")
    cfg = load_trial_config(p)
    assert cfg.train.lr == pytest.approx(1e-5)
    assert cfg.train.weight_decay == pytest.approx(3e-4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: {lr: e-5}\n", "train.lr: expected a number, got 'e-5'"),
        ("model: {n_experts: 1e3}\n", "model.n_experts: expected an integer"),
        ("train: {lr: -1.0e-3}\n", "train: lr: must be > 0"),
    ],
)
def test_non_numbers_are_still_rejected_with_the_path(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "t.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_trial_config(p)
    assert message in str(err.value) and str(p) in str(err.value)


def test_yaml_merge_keys_are_plain_yaml_and_explicit_keys_win(tmp_path: Path):
    """`<<: *anchor` is ordinary YAML (it was refused as an unknown tag by the strict loader);
    a key given twice is still refused."""
    from automtl.yamlio import parse_yaml

    text = "base: &b {lr: 0.01, epochs: 2}\ntrain: {<<: *b, epochs: 3}\n"
    assert parse_yaml(text, "t.yaml")["train"] == {"lr": 0.01, "epochs": 3}
    with pytest.raises(ConfigError, match="appears twice"):
        parse_yaml("train: {<<: {lr: 1}, epochs: 2, epochs: 3}\n", "t.yaml")
