"""The FuxiCTR export inside real FuxiCTR 2.3.10 (the pip package, from the test extra).

The wheel ships FuxiCTR's config loader, data pipeline (Ray + polars), `FeatureMap`,
`FeatureEmbedding` and the `MultiTaskModel` base, but not the model-zoo sources of ShareBottom,
MMoE and PLE (those live in the repository's ``model_zoo/multitask``). So the test runs the
zoo's ``run_expid.py`` steps up to the model class on the exported files (`fuxictr_build.py`, in
a subprocess), and checks the model config's keys against the ones the zoo documents.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fuxictr.utils import load_config

from automtl.cli import main
from automtl.config import ModelConfig, TrainConfig, TrialConfig
from automtl.data import load_dataset
from automtl.export import FUXICTR_MODELS, fuxictr_config, write_fuxictr
from export_study import SMALL_DATA, constructed_study

SMALL = dict(embedding_dim=4, bottom_dims=[8], expert_dims=[8], tower_dims=[4], n_experts=3,
             n_levels=2, n_shared_experts=2, n_specific_experts=1)

# The keys FuxiCTR's multi-task models read, as its repository documents them: the parameter
# table of model_zoo/multitask/{ShareBottom,MMoE,PLE}/README.md and the `<Model>_default` entry
# of each model's config/model_config.yaml (which add the expert/layer counts the tables omit),
# plus `reduce_lr_on_plateau`, an argument of the wheel's `MultiTaskModel`.
_COMMON = {"model", "dataset_id", "loss", "metrics", "task", "num_tasks", "optimizer",
           "learning_rate", "embedding_regularizer", "net_regularizer", "batch_size",
           "embedding_dim", "tower_hidden_units", "hidden_activations", "net_dropout",
           "batch_norm", "epochs", "shuffle", "seed", "monitor", "monitor_mode",
           "reduce_lr_on_plateau"}
MODEL_KEYS = {
    "ShareBottom": _COMMON | {"bottom_hidden_units"},
    "MMoE": _COMMON | {"num_experts", "expert_hidden_units", "gate_hidden_units"},
    "PLE": _COMMON | {"num_layers", "num_shared_experts", "num_specific_experts",
                      "expert_hidden_units", "gate_hidden_units"},
}
# the `Base:` block of those config files, plus `max_gradient_norm` (read by `BaseModel.fit`)
BASE_KEYS = {"model_root", "num_workers", "verbose", "early_stop_patience",
             "pickle_feature_encoder", "save_best_only", "eval_steps", "debug_mode", "group_id",
             "use_features", "feature_specs", "feature_config", "max_gradient_norm"}


def _cfg(arch: str, **train: object) -> TrialConfig:
    return TrialConfig(data=SMALL_DATA, model=ModelConfig(arch=arch, **SMALL),  # type: ignore
                       train=TrainConfig(batch_size=256, epochs=1, lr=0.002, seed=4,
                                         **train))  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", list(FUXICTR_MODELS))
def test_model_config_has_exactly_the_keys_fuxictr_reads(arch: str, tmp_path: Path) -> None:
    data = load_dataset(SMALL_DATA)
    fx = fuxictr_config(_cfg(arch), data.features, data.tasks)
    write_fuxictr(fx, tmp_path)
    name = FUXICTR_MODELS[arch]
    assert set(fx.model_config) == {"Base", f"{name}_automtl"}
    assert set(fx.model_config["Base"]) == BASE_KEYS
    assert set(fx.model_config[f"{name}_automtl"]) == MODEL_KEYS[name]
    # FuxiCTR's own loader merges Base, the experiment and the dataset config
    params = load_config(str(tmp_path), f"{name}_automtl")
    assert params["model"] == name and params["model_id"] == f"{name}_automtl"
    assert params["num_tasks"] == len(params["label_col"]) == len(params["task"]) == 2
    assert params["embedding_dim"] == 4 and params["learning_rate"] == 0.002
    assert params["max_gradient_norm"] == math.inf  # automtl does not clip: FuxiCTR's default is 10
    assert params["reduce_lr_on_plateau"] is False  # automtl keeps the lr
    hidden = "bottom_hidden_units" if name == "ShareBottom" else "expert_hidden_units"
    assert params[hidden] == [8] and params["tower_hidden_units"] == [4]
    if name == "PLE":
        assert (params["num_layers"], params["num_shared_experts"],
                params["num_specific_experts"]) == (2, 2, 1)
    clipped = fuxictr_config(_cfg(arch, grad_clip=5.0), data.features, data.tasks)
    assert clipped.model_config["Base"]["max_gradient_norm"] == 5.0


def _rows(path: Path) -> int:
    with path.open(newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


@pytest.mark.timeout(600)
def test_fuxictr_builds_feature_map_and_data_from_the_export(tmp_path: Path, capsys) -> None:
    url = constructed_study(tmp_path / "made.db", [((0.7, 0.6), _cfg("mmoe"))])
    config_dir, data = tmp_path / "fuxictr_config", tmp_path / "data" / "synthetic"
    assert main(["export", "--study", "made", "--storage", url, "--trial", "0", "-f", "fuxictr",
                 "-o", str(config_dir), "--write-data", str(data)]) == 0
    capsys.readouterr()
    ray_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are limited
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).with_name("fuxictr_build.py")),
                               str(config_dir), "MMoE_automtl", ray_dir],
                              capture_output=True, text=True, timeout=580, cwd=tmp_path,
                              env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("FUXICTR_RESULT ")][-1]
    out = json.loads(line.split(" ", 1)[1])

    # FuxiCTR's feature processor wrote the feature map and one parquet file per split
    assert (data / "feature_map.json").is_file() and (data / "feature_processor.pkl").is_file()
    for split, parquet in zip(("train", "val", "test"), out["data"]):
        table = pq.read_table(tmp_path / parquet)
        assert table.num_rows == _rows(data / f"{split}.csv")
    dataset = load_dataset(SMALL_DATA)
    features = out["features"]
    assert list(features) == [f.name for f in dataset.sparse_features + dataset.dense_features
                              + dataset.sequence_features]
    assert out["labels"] == [t.label for t in dataset.tasks] == ["click", "purchase"]
    assert out["num_fields"] == len(features)
    for f in dataset.sparse_features:
        assert features[f.name]["type"] == "categorical"
    for f in dataset.dense_features:
        assert features[f.name]["type"] == "numeric"
    with (data / "train.csv").open(newline="") as fh:
        users = {row["user_id"] for row in csv.DictReader(fh)}
    assert features["user_id"]["vocab_size"] == len(users) + 2  # + padding and OOV ids
    for f in dataset.sequence_features:
        spec = features[f.name]
        assert spec["type"] == "sequence" and spec["max_len"] == f.max_len
        assert spec["share_embedding"] == f.shares_with
        assert spec["vocab_size"] == features[f.shares_with]["vocab_size"]
        assert spec["feature_encoder"] == "layers.MaskedAveragePooling()"

    # FuxiCTR's data loader reads those files; the zoo's shared embedding layer takes the batch
    assert (out["train_samples"], out["valid_samples"]) == (_rows(data / "train.csv"),
                                                            _rows(data / "val.csv"))
    assert out["batch"]["click"] == [256]  # the exported batch size
    assert out["batch"][dataset.sequence_features[0].name] == [256, dataset.sequence_features[0]
                                                                .max_len]
    assert out["embedding"] == [256, len(features), 4]  # [batch, fields, embedding_dim]
    assert out["optimizer"] == "Adam" and out["activation"] == "ReLU"
    assert out["losses"] == ["binary_cross_entropy"] * 2
