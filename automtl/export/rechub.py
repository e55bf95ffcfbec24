"""A runnable torch-rechub (0.9) training script for a trial.

The script builds the `torch_rechub.models.multi_task` model (SharedBottom, MMOE, PLE, ESMM, AITM)
with the trial's hyper-parameters and the dataset's feature definitions (`SparseFeature`,
`DenseFeature`, `SequenceFeature` with mean pooling and shared embeddings), and trains it with
`torch_rechub.trainers.MTLTrainer` on CSV files in the processed layout
(`automtl.export.write_processed_csv`). Architectures torch-rechub lacks raise an `AutomtlError`;
terms it cannot express are listed in a "Dropped" comment of the script (and returned).

Mapping: arch shared_bottom / mmoe / ple / aitm -> SharedBottom / MMOE / PLE / AITM; head esmm on
arch single or shared_bottom with a two-step cascade -> ESMM (its towers are
``bottom_dims + tower_dims`` over shared embeddings, with no shared MLP; it reads no dense fields);
head esmm on other archs keeps the arch and drops the ESMM product. Task weighting
``uncertainty`` -> ``adaptive_params={"method": "uwl"}``, ``fixed`` with equal weights ->
torch-rechub's mean of task losses; ``gradnorm`` is dropped (torch-rechub 0.9.0's trainer cannot
run it, see `_CANNOT_TRAIN`), like ``ple_decay`` and uneven fixed weights.
"""

from __future__ import annotations

import pprint
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any, Sequence

from automtl.config import ModelConfig, TrialConfig
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import AutomtlError
from automtl.export._gaps import loss_gaps, model_gaps, require_arch, require_dims, train_gaps

RECHUB_MODELS = {"shared_bottom": "SharedBottom", "mmoe": "MMOE", "ple": "PLE", "aitm": "AITM",
                 "single": "ESMM"}
_ACTIVATIONS = {"relu": '"relu"', "gelu": "torch.nn.GELU", "silu": "torch.nn.SiLU"}
# clippy, lazy_*: see train_gaps (torch-rechub's trainer takes one dense optimizer)
_OPTIMIZERS = {"adam": "torch.optim.Adam", "adamw": "torch.optim.AdamW",
               "clippy": "torch.optim.Adagrad", "lazy_adam": "torch.optim.Adam",
               "lazy_adamw": "torch.optim.AdamW"}
_QUOTES = '"' * 3  # the header goes into the script's docstring
# Weighting schemes torch-rechub names but cannot train: in 0.9.0 `MTLTrainer.train_one_epoch`
# assigns the loss only for ESMM, "uwl" and no method, so "gradnorm" (and "metabalance") end in
# `UnboundLocalError: loss` on the first batch. Dropped, never emitted to crash.
_CANNOT_TRAIN = {"gradnorm": "torch-rechub 0.9.0's MTLTrainer fails on adaptive_params method "
                             "'gradnorm' (UnboundLocalError: loss)"}


@dataclass
class RechubExport:
    """The generated script and what could not be carried over."""

    model: str  # torch-rechub class name
    script: str
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # behavioural differences, not dropped terms


def _fmt(obj: Any, indent: int = 0) -> str:
    text = pprint.pformat(obj, width=96 - indent, sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent)


def _mlp_params(dims: Sequence[int], m: ModelConfig) -> str:
    return (f'{{"dims": {list(dims)}, "dropout": {m.dropout!r}, '
            f'"activation": {_ACTIVATIONS[m.activation]}}}')


def _model_code(cfg: TrialConfig, tasks: Sequence[TaskSpec], dropped: list[str],
                notes: list[str]) -> tuple[str, str, list[str], list[str]]:
    """(class name, constructor code, label columns in output order, output names)."""
    m = cfg.model
    n = len(tasks)
    labels = [t.label for t in tasks]
    names = [t.name for t in tasks]
    tower = _mlp_params(m.tower_dims, m)
    towers = f"[{tower}] * {n}"
    esmm_ok = n == 2 and tasks[1].depends_on == tasks[0].name
    if m.head == "esmm" and m.arch in ("single", "shared_bottom") and esmm_ok:
        dims = list(m.bottom_dims) + list(m.tower_dims)
        if m.arch == "shared_bottom" and m.bottom_dims:
            notes.append(f"ESMM has no shared MLP: the shared bottom {list(m.bottom_dims)} becomes "
                         f"the first layers of each tower ({dims})")
        elif m.arch == "single":
            notes.append("ESMM's two towers share the embedding tables (automtl's single arch "
                         "gives each task its own)")
        cond = tasks[1].cond_name or f"{tasks[1].name}_given_{tasks[0].name}"
        notes.append(f"ESMM outputs [{cond}, {names[0]}, {names[1]}]; the {cond} column is scored "
                     "against the final-step label over all rows, as torch-rechub does")
        # ESMM takes its fields as two groups (user, item); concatenated, so the split is immaterial
        code = (f"ESMM(features[:-1], features[-1:],\n"
                f"                cvr_params={_mlp_params(dims, m)},\n"
                f"                ctr_params={_mlp_params(dims, m)})")
        return "ESMM", code, [labels[1], labels[0], labels[1]], [cond, names[0], names[1]]
    if m.arch == "single":
        raise AutomtlError(
            "--format torch-rechub: torch-rechub has no independent single-task towers except "
            "ESMM (head esmm on a two-step cascade); export this trial with --format yaml")
    multi = {k: v for k, v in RECHUB_MODELS.items() if k != "single"}
    name = require_arch(m, "torch-rechub", multi)
    if m.head == "esmm":
        dropped.append(f"model.head=esmm: torch-rechub's {name} predicts each task directly "
                       "(no ESMM product); ESMM exists only as its own two-tower model")
    layers = require_dims(m, "bottom_dims" if name in ("SharedBottom", "AITM") else "expert_dims",
                          "torch-rechub", name)
    if name == "SharedBottom":
        code = (f"SharedBottom(features, task_types=TASK_TYPES,\n"
                f"                bottom_params={_mlp_params(layers, m)},\n"
                f"                tower_params_list={towers})")
    elif name == "MMOE":
        code = (f"MMOE(features, task_types=TASK_TYPES, n_expert={m.n_experts},\n"
                f"                expert_params={_mlp_params(layers, m)},\n"
                f"                tower_params_list={towers})")
    elif name == "PLE":
        code = (f"PLE(features, task_types=TASK_TYPES, n_level={m.n_levels},\n"
                f"                n_expert_specific={m.n_specific_experts}, "
                f"n_expert_shared={m.n_shared_experts},\n"
                f"                expert_params={_mlp_params(layers, m)},\n"
                f"                tower_params_list={towers})")
    else:  # AITM
        chain = all(t.depends_on == tasks[i - 1].name for i, t in enumerate(tasks) if i)
        if not chain:
            notes.append("torch-rechub's AITM transfers along the task order "
                         f"{' -> '.join(names)}, not along depends_on")
        if m.aitm_dim != layers[-1]:
            dropped.append(f"model.aitm_dim={m.aitm_dim}: torch-rechub's AITM attention works in "
                           f"the bottom output size ({layers[-1]})")
        code = (f"AITM(features, n_task={n},\n"
                f"                bottom_params={_mlp_params(layers, m)},\n"
                f"                tower_params_list={towers})")
    return name, code, labels, names


def rechub_script(cfg: TrialConfig, features: Sequence[FeatureSpec], tasks: Sequence[TaskSpec],
                  header: str = "") -> RechubExport:
    """Generate the torch-rechub training script for `cfg` on a dataset with this schema."""
    m, t, w = cfg.model, cfg.train, cfg.loss.weighting
    dropped: list[str] = model_gaps(m)
    notes: list[str] = []
    name, model_code, labels, out_names = _model_code(cfg, tasks, dropped, notes)
    esmm = name == "ESMM"
    if w.scheme in _CANNOT_TRAIN:
        dropped.append(f"loss.weighting.scheme={w.scheme}: {_CANNOT_TRAIN[w.scheme]}; tasks are "
                       "weighted equally instead")
    dropped += loss_gaps(cfg.loss, weighting={"fixed", "uncertainty", *_CANNOT_TRAIN})
    dropped += train_gaps(t, grad_clip=False)
    adaptive: dict[str, Any] | None = None
    if w.scheme == "uncertainty":
        adaptive = {"method": "uwl"}
    if esmm:
        if adaptive is not None:
            dropped.append(f"loss.weighting.scheme={w.scheme}: MTLTrainer trains ESMM with the "
                           "plain sum of its two losses")
            adaptive = None
        dense_names = [f.name for f in features if f.kind == "dense"]
        if dense_names:
            dropped.append(f"dense fields {', '.join(dense_names)}: torch-rechub's ESMM towers "
                           "read embeddings only")
    else:
        notes.append("the loss is the mean of the task BCEs (automtl: their weighted sum)")
    if esmm and sum(f.kind != "dense" for f in features) < 2:
        raise AutomtlError("--format torch-rechub: torch-rechub's ESMM needs at least two sparse "
                           "or sequence fields")
    stop_task = out_names.index(tasks[0].name)
    notes.append(f"early stopping watches the validation AUC of {tasks[0].name} (automtl: the "
                 "mean task AUC)")
    notes.append("torch-rechub MLPs add BatchNorm1d after every hidden layer")

    sparse_spec = {f.name: f.vocab_size for f in features if f.kind == "sparse"}
    dense_spec = [f.name for f in features if f.kind == "dense"]
    seq_spec = {f.name: {"vocab_size": f.vocab_size, "max_len": f.max_len,
                         "shared_with": f.shares_with}
                for f in features if f.kind == "sequence"}
    hyper = {"lr": t.lr, "weight_decay": t.weight_decay, "batch_size": t.batch_size,
             "epochs": t.epochs, "patience": t.patience, "seed": t.seed}
    text = _TEMPLATE.substitute(
        header=header.replace(_QUOTES, "'" * 3).replace("\\", "/"),
        model=name,
        dropped="\n".join(f"  - {d}" for d in dropped) or "  (nothing)",
        notes="\n".join(f"  - {n}" for n in notes),
        embed_dim=m.embedding_dim,
        sparse=_fmt(sparse_spec, 9),
        dense=_fmt(dense_spec if not esmm else [], 8),
        sequences=_fmt(seq_spec, 12),
        labels=_fmt(labels, 9),
        out_names=_fmt(out_names, 13),
        hyper=_fmt(hyper, 8),
        optimizer=_OPTIMIZERS[t.optimizer],
        adaptive=repr(adaptive),
        stop_task=stop_task,
        model_code=model_code,
    )
    return RechubExport(model=name, script=text, dropped=dropped, notes=notes)


def write_rechub(export: RechubExport, path: str | Path) -> Path:
    """Write the script to `path` (parents created, made executable)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(export.script, encoding="utf-8")
    p.chmod(0o755)
    return p


_TEMPLATE = Template('''\
#!/usr/bin/env python
"""torch-rechub $model training script exported by automtl.

$header

Reads train.csv / val.csv (and test.csv if present) from --data-dir in the processed layout: one
column per label, one per sparse field (integer ids, 0 = unknown), one per dense field, one per
sequence field (space-separated ids). `automtl export --format torch-rechub --write-data DIR`
writes them. Requires torch-rechub==0.9.0 (pip install torch-rechub==0.9.0).

Dropped (torch-rechub has no equivalent):
$dropped
Differences from automtl's training:
$notes
"""

import argparse
import json
import os
import random

import numpy as np
import pandas as pd
import torch
from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature
from torch_rechub.models.multi_task import $model
from torch_rechub.trainers import MTLTrainer
from torch_rechub.utils.data import DataGenerator

EMBED_DIM = $embed_dim
# sparse field -> vocabulary size (ids in [0, size), 0 = unknown)
SPARSE = $sparse
DENSE = $dense
# sequence field -> vocabulary, padded length, sparse field whose embedding it shares
SEQUENCES = $sequences
# label columns in the order of the model outputs
LABELS = $labels
OUTPUT_NAMES = $out_names
TASK_TYPES = ["classification"] * len(LABELS)
HYPER = $hyper


def make_features():
    sparse = [SparseFeature(name, vocab_size=size, embed_dim=EMBED_DIM)
              for name, size in SPARSE.items()]
    sequences = [SequenceFeature(name, vocab_size=spec["vocab_size"], embed_dim=EMBED_DIM,
                                 pooling="mean", shared_with=spec["shared_with"], padding_idx=0)
                 for name, spec in SEQUENCES.items()]
    dense = [DenseFeature(name) for name in DENSE]
    return sparse, sequences, dense


def build_model():
    sparse, sequences, dense = make_features()
    features = sparse + sequences + dense
    return $model_code


def pad(column, max_len):
    out = np.zeros((len(column), max_len), dtype=np.int64)
    for i, text in enumerate(column):
        ids = [int(v) for v in text.split()][:max_len]
        out[i, :len(ids)] = ids
    return out


def load(path):
    df = pd.read_csv(path, dtype={name: str for name in SEQUENCES}, keep_default_na=False)
    x = {name: df[name].to_numpy(np.int64) for name in SPARSE}
    x.update({name: df[name].to_numpy(np.float32) for name in DENSE})
    x.update({name: pad(df[name], spec["max_len"]) for name, spec in SEQUENCES.items()})
    y = df[LABELS].to_numpy(np.float32)
    return x, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True,
                        help="folder with train.csv, val.csv (and test.csv)")
    parser.add_argument("--out-dir", default=".", help="where the weights and metrics.json go")
    parser.add_argument("--epochs", type=int, default=HYPER["epochs"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    random.seed(HYPER["seed"])
    np.random.seed(HYPER["seed"])
    torch.manual_seed(HYPER["seed"])
    os.makedirs(args.out_dir, exist_ok=True)
    x_train, y_train = load(os.path.join(args.data_dir, "train.csv"))
    x_val, y_val = load(os.path.join(args.data_dir, "val.csv"))
    test_path = os.path.join(args.data_dir, "test.csv")
    x_test, y_test = load(test_path) if os.path.exists(test_path) else (x_val, y_val)
    train_dl, val_dl, test_dl = DataGenerator(x_train, y_train).generate_dataloader(
        x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test, batch_size=HYPER["batch_size"])

    model = build_model()
    trainer = MTLTrainer(
        model, task_types=TASK_TYPES, optimizer_fn=$optimizer,
        optimizer_params={"lr": HYPER["lr"], "weight_decay": HYPER["weight_decay"]},
        adaptive_params=$adaptive, n_epoch=args.epochs, earlystop_taskid=$stop_task,
        earlystop_patience=HYPER["patience"], device=args.device, model_path=args.out_dir)
    trainer.fit(train_dl, val_dl)
    metrics = {
        "val_auc": dict(zip(OUTPUT_NAMES, map(float, trainer.evaluate(trainer.model, val_dl)))),
        "test_auc": dict(zip(OUTPUT_NAMES, map(float, trainer.evaluate(trainer.model, test_dl)))),
        "epochs": args.epochs,
    }
    with open(os.path.join(args.out_dir, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=2)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
''')
