"""Every torch-rechub script the exporter claims to support trains inside the real torch-rechub.

The matrix is each architecture `RECHUB_MODELS` maps x plain / ESMM head (single and
shared_bottom with an ESMM head become torch-rechub's ESMM; single is exported only so) x every
task-weighting scheme `WeightingConfig` knows.
Each generated script runs one epoch (7 steps of 256 rows) of torch-rechub 0.9.0's `MTLTrainer`
on the `--write-data` CSVs of a 2000-row synthetic dataset, in this process (runpy, so the
imports are paid once). A scheme torch-rechub cannot train (GradNorm) must appear in the script's
"Dropped" header and not in its `adaptive_params`: emitting it would crash inside torch-rechub.
"""

from __future__ import annotations

import json
import runpy
import sys
import typing
from pathlib import Path

import pytest
import torch

from automtl.config import LossConfig, ModelConfig, TrainConfig, TrialConfig, WeightingConfig
from automtl.data import load_dataset
from automtl.export import RECHUB_MODELS, rechub_script, write_processed_csv, write_rechub
from export_study import SMALL_DATA

SMALL = dict(embedding_dim=4, bottom_dims=[8], expert_dims=[8], tower_dims=[4], n_experts=2,
             n_levels=2, n_shared_experts=1, n_specific_experts=1, aitm_dim=8)
SCHEMES = typing.get_args(typing.get_type_hints(WeightingConfig)["scheme"])
ARCHS = [(arch, head) for arch in RECHUB_MODELS if arch != "single"
         for head in ("plain", "esmm")] + [("single", "esmm")]
EXPECTED_CLASS = {"shared_bottom": "SharedBottom", "mmoe": "MMOE", "ple": "PLE", "aitm": "AITM"}
# what each scheme becomes in the script's MTLTrainer(adaptive_params=...) on a non-ESMM model
ADAPTIVE = {"uncertainty": "{'method': 'uwl'}"}
NOT_TRAINABLE = {"gradnorm"}  # torch-rechub 0.9.0: UnboundLocalError in train_one_epoch


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rechub-matrix-data")
    write_processed_csv(load_dataset(SMALL_DATA), folder)
    return folder


def _cfg(arch: str, head: str, scheme: str) -> TrialConfig:
    model = ModelConfig(**{**SMALL, "arch": arch, "head": head})  # type: ignore[arg-type]
    weights = {"ctr": 1.0, "ctcvr": 1.0}
    return TrialConfig(data=SMALL_DATA, model=model,
                       loss=LossConfig(weighting=WeightingConfig(scheme=scheme, weights=weights)),
                       train=TrainConfig(batch_size=256, epochs=1, lr=0.005, seed=1))


def _run(script: Path, data: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    ns = runpy.run_path(str(script), run_name="automtl_rechub_matrix")
    monkeypatch.setattr(sys, "argv", [str(script), "--data-dir", str(data), "--out-dir", str(out),
                                      "--epochs", "1"])
    ns["main"]()
    return json.loads((out / "metrics.json").read_text())


def test_matrix_covers_the_claims() -> None:
    assert set(SCHEMES) >= {"fixed", "ple_decay", "uncertainty", "gradnorm"}
    assert {a for a, _ in ARCHS} == set(RECHUB_MODELS)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("arch, head", ARCHS, ids=[f"{a}-{h}" for a, h in ARCHS])
def test_exported_script_trains_in_torch_rechub(arch: str, head: str, scheme: str,
                                                data_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_dataset(SMALL_DATA)
    export = rechub_script(_cfg(arch, head, scheme), data.features, data.tasks,
                           header=f"matrix {arch} {head} {scheme}")
    esmm = head == "esmm" and arch in ("single", "shared_bottom")
    assert export.model == ("ESMM" if esmm else EXPECTED_CLASS[arch])
    text = export.script
    header = text.split('"""')[1]
    dropped = " | ".join(export.dropped)
    if esmm or scheme not in ADAPTIVE:
        assert "adaptive_params=None" in text
    else:
        assert f"adaptive_params={ADAPTIVE[scheme]}" in text
    if scheme in NOT_TRAINABLE:
        assert f"loss.weighting.scheme={scheme}" in dropped
        assert "'gradnorm'" not in text.split("adaptive_params=")[1].split(",")[0]
    if scheme not in ("fixed", "uncertainty") or (esmm and scheme != "fixed"):
        assert f"loss.weighting.scheme={scheme}" in dropped  # said, not silently changed
    if head == "esmm" and not esmm:
        assert "model.head=esmm" in dropped
    for line in export.dropped:
        assert f"  - {line}" in header  # every dropped term is listed in the script header

    out = tmp_path / "run"
    metrics = _run(write_rechub(export, tmp_path / "train_rechub.py"), data_dir, out,
                   monkeypatch)
    names = ["cvr", "ctr", "ctcvr"] if esmm else ["ctr", "ctcvr"]
    assert list(metrics["val_auc"]) == names == list(metrics["test_auc"])
    for value in [*metrics["val_auc"].values(), *metrics["test_auc"].values()]:
        assert 0.0 <= value <= 1.0
    assert (out / "model_base_0.pth").is_file()  # MTLTrainer saved the best epoch's weights
