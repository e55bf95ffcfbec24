"""torch-rechub export: the generated script trains one epoch (subprocess, torch-rechub 0.9 from
the test extra), every mapped model builds with the trial's hyper-parameters and predicts on the
processed CSVs, and what torch-rechub lacks is an error or a "Dropped" line."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from automtl.cli import main
from automtl.config import (
    LossConfig,
    ModelConfig,
    PWiseRConfig,
    TrainConfig,
    TrialConfig,
    WeightingConfig,
)
from automtl.data import load_dataset
from automtl.errors import AutomtlError
from automtl.export import rechub_script, write_processed_csv, write_rechub
from export_study import SMALL_DATA, constructed_study

SMALL = dict(embedding_dim=4, bottom_dims=[8], expert_dims=[8], tower_dims=[4], n_experts=3)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rechub-data")
    write_processed_csv(load_dataset(SMALL_DATA), folder)
    return folder


def _cfg(**model: object) -> TrialConfig:
    m = ModelConfig(**{**SMALL, **model})  # type: ignore[arg-type]
    return TrialConfig(data=SMALL_DATA, model=m,
                       train=TrainConfig(batch_size=256, epochs=3, lr=0.005, seed=3))


def test_cli_script_trains_one_epoch(tmp_path: Path, capsys) -> None:
    cfg = _cfg(arch="mmoe", activation="gelu")
    cfg.loss = LossConfig(pwiser=PWiseRConfig(lam=0.2),
                          weighting=WeightingConfig(scheme="uncertainty"))
    url = constructed_study(tmp_path / "made.db", [((0.7, 0.6), cfg)])
    script, data = tmp_path / "train_rechub.py", tmp_path / "data"
    assert main(["export", "--study", "made", "--storage", url, "--trial", "0", "-f",
                 "torch-rechub", "-o", str(script), "--write-data", str(data)]) == 0
    err = capsys.readouterr().err
    assert "dropped: loss.pwiser (PWiseR ranking term, lam=0.2" in err
    text = script.read_text()
    assert "Dropped (torch-rechub has no equivalent):\n  - loss.pwiser" in text
    assert "adaptive_params={'method': 'uwl'}" in text  # uncertainty weighting carried over
    assert sorted(p.name for p in data.iterdir()) == ["test.csv", "train.csv", "val.csv"]

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(script), "--data-dir", str(data), "--out-dir",
                           str(out), "--epochs", "1"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 1
    assert set(metrics["val_auc"]) == {"ctr", "ctcvr"} == set(metrics["test_auc"])
    assert all(0.0 <= v <= 1.0 for v in metrics["val_auc"].values())
    assert "epoch: 0 validation scores" in proc.stdout and "epoch: 1" not in proc.stdout
    state = torch.load(out / "model_base_0.pth", weights_only=True)
    assert len(state["experts.0.mlp.0.weight"]) == 8  # the expert width of the trial


def _module(script: Path) -> dict:
    return runpy.run_path(str(script), run_name="automtl_rechub_test")


@pytest.mark.parametrize("model, cls, outputs", [
    (dict(arch="shared_bottom"), "SharedBottom", ["ctr", "ctcvr"]),
    (dict(arch="mmoe"), "MMOE", ["ctr", "ctcvr"]),
    (dict(arch="ple", n_levels=2, n_shared_experts=2, n_specific_experts=1), "PLE",
     ["ctr", "ctcvr"]),
    (dict(arch="aitm", aitm_dim=8), "AITM", ["ctr", "ctcvr"]),
    (dict(arch="single", head="esmm"), "ESMM", ["cvr", "ctr", "ctcvr"]),
])
def test_every_model_builds_and_predicts(tmp_path: Path, data_dir: Path, model, cls,
                                         outputs) -> None:
    data = load_dataset(SMALL_DATA)
    cfg = _cfg(**model)
    export = rechub_script(cfg, data.features, data.tasks, header="test")
    assert export.model == cls
    ns = _module(write_rechub(export, tmp_path / "s.py"))
    torch.manual_seed(0)
    net = ns["build_model"]().eval()
    assert type(net).__name__ == cls and ns["OUTPUT_NAMES"] == outputs
    x, y = ns["load"](data_dir / "val.csv")
    n = len(data.splits["val"])
    assert y.shape == (n, len(outputs))
    seq = data.sequence_features[0]
    np.testing.assert_array_equal(x[seq.name], data.splits["val"].sequences[seq.name])
    with torch.no_grad():
        p = net({k: torch.as_tensor(v[:32]) for k, v in x.items()})
    assert p.shape == (32, len(outputs)) and bool(((p >= 0) & (p <= 1)).all())
    widths = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert 8 in widths and 4 in widths  # bottom/expert and tower widths of the trial
    if cls == "MMOE":
        assert net.n_expert == 3
    if cls == "PLE":
        assert net.n_level == 2 and len(net.cgc_layers[0].experts_shared) == 2
    if cls == "ESMM":
        assert any("dense fields" in d for d in export.dropped)
        # towers are bottom_dims + tower_dims, as in automtl's single-task towers
        assert [m.out_features for m in net.tower_ctr.modules()
                if isinstance(m, torch.nn.Linear)] == [8, 4, 1]


def test_missing_terms_are_dropped_or_errors() -> None:
    data = load_dataset(SMALL_DATA)
    cfg = _cfg(arch="ple", head="esmm", bottom="dtrn", seq_pooling="target_attention")
    cfg.loss = LossConfig(weighting=WeightingConfig(scheme="ple_decay"))
    cfg.train.grad_clip = 5.0
    dropped = " | ".join(rechub_script(cfg, data.features, data.tasks).dropped)
    for term in ("model.bottom=dtrn", "seq_pooling=target_attention", "model.head=esmm",
                 "scheme=ple_decay", "grad_clip=5"):
        assert term in dropped
    with pytest.raises(AutomtlError, match="torch-rechub has no 'apem' architecture"):
        rechub_script(_cfg(arch="apem"), data.features, data.tasks)
    with pytest.raises(AutomtlError, match="no independent single-task towers"):
        rechub_script(_cfg(arch="single"), data.features, data.tasks)


def test_empty_bottom_maps_to_esmm_or_errors() -> None:
    data = load_dataset(SMALL_DATA)
    # shared_bottom without a bottom MLP and an ESMM head is exactly torch-rechub's ESMM
    esmm = rechub_script(_cfg(arch="shared_bottom", head="esmm", bottom_dims=[]),
                         data.features, data.tasks)
    assert esmm.model == "ESMM" and 'cvr_params={"dims": [4]' in esmm.script
    with pytest.raises(AutomtlError, match="torch-rechub's SharedBottom needs at least one layer "
                                           "in model.bottom_dims"):
        rechub_script(_cfg(arch="shared_bottom", bottom_dims=[]), data.features, data.tasks)
