"""FuxiCTR (v2, `model_zoo/multitask`) configs for a trial: model_config.yaml + dataset_config.yaml.

FuxiCTR's multi-task zoo has ShareBottom (its spelling of SharedBottom), MMoE and PLE; other
architectures raise an `AutomtlError` naming what is missing. Terms FuxiCTR cannot express
(extra loss terms, task weighting other than equal, ESMM heads, task-specific bottoms) are listed
in a ``# dropped:`` comment at the top of the model config.

The keys are those the zoo's ``config/model_config.yaml`` templates and model READMEs list, plus
two that FuxiCTR's `MultiTaskModel` reads with defaults automtl does not share:
``reduce_lr_on_plateau`` (FuxiCTR: True; automtl keeps the lr) and ``max_gradient_norm``
(`BaseModel.fit` clips at 10 by default; automtl clips only with ``train.grad_clip``, so ``.inf``
= no clipping). Mapping notes:

- our gates are linear softmax gates -> ``gate_hidden_units: []``; our MLPs have no batch norm;
- ``weight_decay`` (coupled, Adam) equals an L2 penalty of the same weight on every parameter,
  which is FuxiCTR's ``embedding_regularizer`` / ``net_regularizer``;
- early stopping: FuxiCTR's ``monitor: AUC`` on a multi-task model is the mean task AUC, like
  automtl's early stopping on ``mean_auc``;
- sequences: ``feature_encoder: layers.MaskedAveragePooling()`` (FuxiCTR evaluates the string),
  automtl's mean pooling over non-padding ids.

The dataset config is a stub for CSV files in the processed layout (see
`automtl.export.write_processed_csv`): categorical ids, numeric columns, sequences as
space-separated ids sharing the embedding of their sparse field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from automtl.config import TrialConfig
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import AutomtlError
from automtl.export._gaps import loss_gaps, model_gaps, require_arch, require_dims, train_gaps

FUXICTR_MODELS = {"shared_bottom": "ShareBottom", "mmoe": "MMoE", "ple": "PLE"}
_ACTIVATIONS = {"relu": "relu", "gelu": "GELU", "silu": "SiLU"}  # FuxiCTR: getattr(nn, name)
# clippy, lazy_*: see train_gaps
_OPTIMIZERS = {"adam": "adam", "adamw": "AdamW", "clippy": "Adagrad", "lazy_adam": "adam",
               "lazy_adamw": "AdamW"}


@dataclass
class FuxiCTRExport:
    """The two FuxiCTR config documents of one trial and what was dropped on the way."""

    expid: str
    dataset_id: str
    model_config: dict[str, Any]  # {"Base": {...}, expid: {...}}
    dataset_config: dict[str, Any]  # {dataset_id: {...}}
    dropped: list[str] = field(default_factory=list)

    def model_yaml(self, header: str = "") -> str:
        """model_config.yaml text, with the header and the dropped terms as comments."""
        return _comment_block(header, self.dropped) + _dump(self.model_config)

    def dataset_yaml(self, header: str = "") -> str:
        """dataset_config.yaml text."""
        return _comment_block(header, []) + _dump(self.dataset_config)


def _dump(doc: dict[str, Any]) -> str:
    # One top-level block per key; inner lists/mappings of scalars in flow style, like FuxiCTR's
    # own config files.
    return "\n".join(
        yaml.safe_dump({k: v}, sort_keys=False, default_flow_style=False if k == "Base" else None,
                       width=100)
        for k, v in doc.items())


def _comment_block(header: str, dropped: Sequence[str]) -> str:
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    if dropped:
        lines.append("# dropped (FuxiCTR has no equivalent):")
        lines += [f"#   - {d}" for d in dropped]
    return "\n".join(lines) + ("\n" if lines else "")


def fuxictr_config(cfg: TrialConfig, features: Sequence[FeatureSpec], tasks: Sequence[TaskSpec],
                   *, dataset_id: str | None = None, expid: str | None = None,
                   data_root: str = "./data/") -> FuxiCTRExport:
    """Translate `cfg` (and the dataset schema) into FuxiCTR model and dataset configs."""
    m, t = cfg.model, cfg.train
    model_name = require_arch(m, "fuxictr", FUXICTR_MODELS)
    dataset_id = dataset_id or cfg.data.name.replace("-", "_")
    expid = expid or f"{model_name}_automtl"
    dropped = model_gaps(m)
    if m.head == "esmm":
        dropped.append("model.head=esmm: each tower predicts its task directly (no ESMM product)")
    dropped += loss_gaps(cfg.loss, weighting={"fixed"})
    if t.optimizer in ("adamw", "lazy_adamw") and t.weight_decay:
        dropped.append(f"train.weight_decay={t.weight_decay:g} with adamw: FuxiCTR applies it as "
                       "an L2 penalty (coupled), not decoupled decay")

    n = len(tasks)
    exp: dict[str, Any] = {
        "model": model_name,
        "dataset_id": dataset_id,
        "loss": ["binary_crossentropy"] * n,
        "metrics": ["logloss", "AUC"],
        "task": ["binary_classification"] * n,
        "num_tasks": n,
        "optimizer": _OPTIMIZERS[t.optimizer],
        "learning_rate": t.lr,
    }
    layers = require_dims(m, "bottom_dims" if m.arch == "shared_bottom" else "expert_dims",
                          "fuxictr", model_name)
    if m.arch == "shared_bottom":
        exp["bottom_hidden_units"] = layers
    elif m.arch == "mmoe":
        exp["num_experts"] = m.n_experts
        exp["expert_hidden_units"] = layers
        exp["gate_hidden_units"] = []
    else:  # ple
        exp["num_layers"] = m.n_levels
        exp["num_shared_experts"] = m.n_shared_experts
        exp["num_specific_experts"] = m.n_specific_experts
        exp["expert_hidden_units"] = layers
        exp["gate_hidden_units"] = []
    exp.update({
        "tower_hidden_units": list(m.tower_dims),
        "hidden_activations": _ACTIVATIONS[m.activation],
        "net_regularizer": t.weight_decay,
        "embedding_regularizer": t.weight_decay,
        "batch_norm": False,
        "net_dropout": m.dropout,
        "batch_size": t.batch_size,
        "embedding_dim": m.embedding_dim,
        "epochs": t.epochs,
        "shuffle": True,
        "seed": t.seed,
        "monitor": "AUC",
        "monitor_mode": "max",
        "reduce_lr_on_plateau": False,
    })
    base: dict[str, Any] = {
        "model_root": "./checkpoints/",
        "num_workers": 3,
        "verbose": 1,
        "early_stop_patience": t.patience,
        "pickle_feature_encoder": True,
        "save_best_only": True,
        "eval_steps": None,
        "debug_mode": False,
        "group_id": None,
        "use_features": None,
        "feature_specs": None,
        "feature_config": None,
        "max_gradient_norm": t.grad_clip if t.grad_clip is not None else float("inf"),
    }
    dropped += train_gaps(t, grad_clip=True)

    root = data_root.rstrip("/") + "/"
    ds: dict[str, Any] = {
        "data_root": root,
        "data_format": "csv",
        "train_data": f"{root}{dataset_id}/train.csv",
        "valid_data": f"{root}{dataset_id}/val.csv",
        "test_data": f"{root}{dataset_id}/test.csv",
        "min_categr_count": 1,
        "feature_cols": _feature_cols(features),
        "label_col": [{"name": task.label, "dtype": "float"} for task in tasks],
    }
    return FuxiCTRExport(expid=expid, dataset_id=dataset_id,
                         model_config={"Base": base, expid: exp},
                         dataset_config={dataset_id: ds}, dropped=dropped)


def _feature_cols(features: Sequence[FeatureSpec]) -> list[dict[str, Any]]:
    cols: list[dict[str, Any]] = []
    sparse = [f.name for f in features if f.kind == "sparse"]
    dense = [f.name for f in features if f.kind == "dense"]
    if sparse:
        cols.append({"name": sparse, "active": True, "dtype": "str", "type": "categorical"})
    if dense:
        cols.append({"name": dense, "active": True, "dtype": "float", "type": "numeric"})
    for f in features:
        if f.kind != "sequence":
            continue
        col: dict[str, Any] = {"name": f.name, "active": True, "dtype": "str", "type": "sequence",
                               "splitter": " ", "max_len": f.max_len, "padding": "post",
                               "feature_encoder": "layers.MaskedAveragePooling()"}
        if f.shares_with:
            col["share_embedding"] = f.shares_with
        cols.append(col)
    return cols


def write_fuxictr(export: FuxiCTRExport, out_dir: str | Path, header: str = "") -> list[Path]:
    """Write ``model_config.yaml`` and ``dataset_config.yaml`` into `out_dir` (created)."""
    out = Path(out_dir)
    model_path, data_path = out / "model_config.yaml", out / "dataset_config.yaml"
    try:  # -o naming a file, or a folder that cannot be written: one line, not a traceback
        out.mkdir(parents=True, exist_ok=True)
        model_path.write_text(export.model_yaml(header), encoding="utf-8")
        data_path.write_text(export.dataset_yaml(header), encoding="utf-8")
    except OSError as exc:
        raise AutomtlError(f"{out}: cannot write the FuxiCTR folder ({exc.strerror}); choose "
                           "another -o folder") from None
    return [model_path, data_path]
