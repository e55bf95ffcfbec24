"""ONNX and TorchScript export of a trained trial: from the search's checkpoint and retrained
from the config, compared with the torch model on a validation batch (onnxruntime, torch.jit)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import optuna
import onnxruntime as ort
import torch

from automtl.cli import main
from automtl.config import DataConfig, ModelConfig, TrialConfig, from_dict
from automtl.data import load_dataset
from automtl.export import TensorModel, example_inputs, export_onnx, input_names, load_weights
from automtl.models import build_model


def _checkpoint_trial(s):
    trial = max(s.complete(), key=lambda t: t.values[0])
    assert Path(trial.user_attrs["checkpoint"]).is_file()
    cfg = from_dict(TrialConfig, trial.user_attrs["config"])
    data = load_dataset(cfg.data)
    model = load_weights(build_model(cfg.model, data.features, data.tasks),
                         trial.user_attrs["checkpoint"]).eval()
    return s, trial, data, model


def _reference(model: torch.nn.Module, data, inputs) -> np.ndarray:
    with torch.no_grad():
        out = model(_batch(data, inputs))
    return np.stack([torch.sigmoid(out[t.name]).numpy() for t in data.tasks])


def _batch(data, inputs):
    from automtl.data import Batch

    names = input_names(data.features)
    by = dict(zip(names, inputs))
    return Batch(sparse=by["sparse"], dense=by["dense"],
                 sequences={f.name: by[f.name] for f in data.sequence_features},
                 labels=torch.zeros(len(inputs[0]), len(data.tasks)))


def test_onnx_from_checkpoint_matches_torch(tmp_path: Path, capsys, searched_study) -> None:
    s, trial, data, model = _checkpoint_trial(searched_study)
    path = tmp_path / "m.onnx"
    assert main(["export", "--study", s.name, "--storage", s.url, "--trial", str(trial.number),
                 "-f", "onnx", "-o", str(path)]) == 0
    out = capsys.readouterr().out
    assert "model: the trial's checkpoint" in out
    sess = ort.InferenceSession(str(path))
    names = [i.name for i in sess.get_inputs()]
    assert names == input_names(data.features) == ["sparse", "dense", "hist_item_ids",
                                                   "hist_categories"]
    assert [o.name for o in sess.get_outputs()] == ["ctr", "ctcvr"]
    # a batch size other than the one traced: the batch axis is dynamic
    inputs = example_inputs(data.splits["val"], data.features, rows=300, start=17)
    got = np.stack(sess.run(None, {n: t.numpy() for n, t in zip(names, inputs)}))
    ref = _reference(model, data, inputs)
    assert got.shape == (2, 300)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["automtl.outputs"]) == ["ctr", "ctcvr"]
    assert meta["automtl.model_source"] == "checkpoint"
    assert meta["automtl.trial"] == str(trial.number)
    assert json.loads(meta["automtl.config"]) == trial.user_attrs["config"]


def test_torchscript_retrained_matches_checkpoint_model(tmp_path: Path, capsys,
                                                       searched_study) -> None:
    # Retraining the config on CPU with its seed gives the search's weights again, so the
    # TorchScript module built from the retrained model matches the checkpoint's torch model.
    s, trial, data, model = _checkpoint_trial(searched_study)
    path = tmp_path / "m.pt"
    assert main(["export", "--study", s.name, "--storage", s.url, "--trial", str(trial.number),
                 "-f", "torchscript", "-o", str(path), "--retrain", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "model: retrained from the config: val ctr_auc " \
           f"{trial.user_attrs['val_metrics']['ctr_auc']:.4f}" in out
    extra = {"automtl.json": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra["automtl.json"])
    assert meta["automtl.model_source"] == "retrained"
    assert json.loads(meta["automtl.inputs"]) == input_names(data.features)
    inputs = example_inputs(data.splits["val"], data.features, rows=200, start=5)
    with torch.no_grad():
        got = np.stack([t.numpy() for t in loaded(*inputs)])
    np.testing.assert_allclose(got, _reference(model, data, inputs), atol=1e-5, rtol=0)


def test_esmm_head_exports_to_onnx(tmp_path: Path) -> None:
    # ONNX has no Expm1 (used by the ESMM head's log1mexp): the exporter's decomposition must keep
    # probabilities within 1e-5 even where logits are extreme.
    data = load_dataset(DataConfig(options={"rows": 2000, "n_tasks": 3}))
    torch.manual_seed(0)
    cfg = ModelConfig(arch="mmoe", head="esmm", embedding_dim=4, expert_dims=[8],
                      tower_dims=[4], n_experts=2)
    model = build_model(cfg, data.features, data.tasks).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(6.0)  # saturate the logits
    example = example_inputs(data.splits["val"], data.features, rows=16)
    path = export_onnx(model, data.features, data.tasks, example, tmp_path / "e.onnx")
    sess = ort.InferenceSession(str(path))
    inputs = example_inputs(data.splits["val"], data.features, rows=150, start=20)
    got = np.stack(sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}))
    with torch.no_grad():
        ref = np.stack([t.numpy() for t in TensorModel(model, data.features)(*inputs)])
    # the stress reached both regimes of the decomposition: log p near 0 and far below it
    assert ref.min() < 1e-6 and ref.max() > 0.9
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    # cascade: p(ctcvr) <= p(ctcart) <= p(ctr) holds in the exported model too
    assert (got[2] <= got[1] + 1e-6).all() and (got[1] <= got[0] + 1e-6).all()


def test_missing_checkpoint_falls_back_to_retraining(tmp_path: Path, capsys) -> None:
    from automtl.config import TrainConfig
    from export_study import SMALL_DATA, constructed_study

    cfg = TrialConfig(data=SMALL_DATA,
                      model=ModelConfig(arch="shared_bottom", embedding_dim=4, bottom_dims=[8],
                                        tower_dims=[4]),
                      train=TrainConfig(epochs=1, batch_size=512, device="cpu"))
    url = constructed_study(tmp_path / "made.db", [((0.6, 0.5), cfg)])
    study = optuna.load_study(study_name="made", storage=url)
    assert study.trials[0].user_attrs.get("checkpoint") is None
    path = tmp_path / "m.pt"
    assert main(["export", "--study", "made", "--storage", url, "--trial", "0",
                 "-f", "torchscript", "-o", str(path)]) == 0
    cap = capsys.readouterr()
    assert "note: the search saved no checkpoint (--save-checkpoints); retrained" in cap.err
    assert "model: retrained from the config" in cap.out
    data = load_dataset(SMALL_DATA)
    inputs = example_inputs(data.splits["val"], data.features, rows=50)
    ctr, ctcvr = torch.jit.load(str(path))(*inputs)
    assert ctr.shape == (50,) and bool(((ctcvr >= 0) & (ctcvr <= 1)).all())
