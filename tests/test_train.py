"""The training loop on tiny synthetic data: determinism, early stopping with best-weight
restore, NaN -> TrialFailedError naming step and term, callbacks, metrics, device choice."""

from __future__ import annotations

import dataclasses

import numpy as np
import optuna
import pytest
import torch

from automtl.config import (
    CalibratorConfig,
    DataConfig,
    DependencyConfig,
    LossConfig,
    ModelConfig,
    PWiseRConfig,
    TrainConfig,
    TrialConfig,
    WeightingConfig,
)
from automtl.data import load_dataset
from automtl.data.schema import TaskSpec
from automtl.errors import ConfigError, TrialFailedError
from automtl.train import (
    Callback,
    compute_metrics,
    device_split,
    evaluate,
    fit,
    resolve_device,
    resolve_precision,
)

DATA = DataConfig(options={"rows": 8000, "seed": 1})
DATA3 = DataConfig(options={"rows": 8000, "n_tasks": 3, "seed": 1})


def small_cfg(data: DataConfig = DATA, **train: object) -> TrialConfig:
    opts = {"epochs": 2, "batch_size": 512, "lr": 1e-2, "seed": 0, "device": "cpu"}
    opts.update(train)
    model = ModelConfig(arch="shared_bottom", embedding_dim=4, bottom_dims=[16], tower_dims=[8])
    return TrialConfig(data=data, model=model, train=TrainConfig(**opts))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ds():
    return load_dataset(DATA)


class _Recorder(Callback):
    def __init__(self, prune_at: int | None = None) -> None:
        self.epochs: list[int] = []
        self.started = False
        self.batches = 0
        self.prune_at = prune_at

    def on_train_start(self, model: torch.nn.Module) -> None:
        self.started = isinstance(model, torch.nn.Module)

    def on_batch_end(self, epoch: int, step: int, n_steps: int) -> None:
        self.batches += 1

    def on_epoch_end(self, epoch: int, record) -> None:
        self.epochs.append(record.epoch)
        if self.prune_at == epoch:
            raise optuna.TrialPruned(f"pruned at {epoch}")


def test_fit_reports_metrics_for_every_task_and_calls_callbacks(ds) -> None:
    rec = _Recorder()
    result = fit(small_cfg(patience=5), ds, callbacks=[rec])
    assert rec.started and rec.epochs == [1, 2]
    assert rec.batches == 2 * -(-len(ds.splits["train"]) // 512)
    names = {"ctr_auc", "ctr_logloss", "ctcvr_auc", "ctcvr_logloss", "cvr_auc", "mean_auc"}
    assert names <= set(result.val) and names <= set(result.test)
    assert result.val["mean_auc"] == pytest.approx((result.val["ctr_auc"] + result.val["ctcvr_auc"]) / 2)
    assert result.val["ctr_auc"] > 0.55
    assert result.epochs_run == len(result.history) == 2
    assert result.samples_per_s > 0 and result.n_params > 0 and result.device == "cpu"
    assert result.precision == "fp32" and result.loss_terms == ["bce_ctr", "bce_ctcvr"]


def test_same_seed_same_result_on_cpu(ds) -> None:
    a = fit(small_cfg(epochs=1), ds)
    b = fit(small_cfg(epochs=1), ds)
    c = fit(small_cfg(epochs=1, seed=5), ds)
    assert a.val == b.val and a.test == b.test
    assert a.history[0].train_loss == b.history[0].train_loss
    assert a.val != c.val


def test_early_stopping_restores_the_best_epoch(ds) -> None:
    # a large lr on 6400 rows overfits after the first epochs: the mean AUC drops, training stops
    cfg = small_cfg(epochs=12, patience=1, lr=0.05)
    result = fit(cfg, ds)
    scores = [h.val["mean_auc"] for h in result.history]
    assert result.epochs_run < 12
    assert result.best_epoch == int(np.argmax(scores)) + 1
    assert result.epochs_run == result.best_epoch + 2  # patience 1: two epochs without improvement
    assert result.val == result.history[result.best_epoch - 1].val
    # the returned model carries the best epoch's weights
    again = evaluate(result.model, device_split(ds, "val", torch.device("cpu")), ds.tasks, 4096)
    assert again["mean_auc"] == pytest.approx(result.val["mean_auc"], abs=1e-9)


def test_nan_loss_raises_trial_failed_naming_step_and_term(ds) -> None:
    train = ds.splits["train"]
    dense = train.dense.copy()
    row = 1234
    dense[row, 0] = np.nan
    bad = dataclasses.replace(ds, splits={**ds.splits, "train": dataclasses.replace(train, dense=dense)})
    cfg = small_cfg(epochs=1)
    # the loop's first permutation decides which step holds the NaN row
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.train.seed))
    step = int((perm == row).nonzero()) // cfg.train.batch_size + 1
    with pytest.raises(TrialFailedError, match=rf"epoch 1, step {step} of the epoch .*bce_ctr"):
        fit(cfg, bad)


def test_pruning_propagates(ds) -> None:
    pruner = _Recorder(prune_at=1)
    with pytest.raises(optuna.TrialPruned):
        fit(small_cfg(epochs=3), ds, callbacks=[pruner])
    assert pruner.epochs == [1]


def test_cascade_terms_and_learned_weighting_train() -> None:
    data = load_dataset(DATA3)
    cfg = small_cfg(DATA3, epochs=2)
    cfg.loss = LossConfig(pwiser=PWiseRConfig(), dependency=DependencyConfig(tau=[0.1, 0.2]),
                          calibrator=CalibratorConfig(), weighting=WeightingConfig(scheme="uncertainty"))
    result = fit(cfg, data)
    assert result.loss_terms[-3:] == ["pwiser", "dependency", "calibrator"]
    assert {"cart_auc", "cvr_auc"} <= set(result.test)
    assert result.val["ctr_auc"] > 0.55


def test_gradnorm_learns_weights_on_a_shared_layer(ds) -> None:
    cfg = small_cfg(epochs=1, grad_clip=1.0, optimizer="adamw", weight_decay=1e-4)
    cfg.loss = LossConfig(weighting=WeightingConfig(scheme="gradnorm"))
    result = fit(cfg, ds)
    w = list(result.task_weights.values())
    assert np.isfinite(result.history[0].train_loss)
    assert sum(w) == pytest.approx(2.0, abs=1e-4) and abs(w[0] - w[1]) > 1e-3
    # the single-task baseline shares no layer: GradNorm falls back to the fixed weights
    cfg.model.arch = "single"
    assert fit(cfg, ds).task_weights == {"ctr": 1.0, "ctcvr": 1.0}


def test_ple_decay_weights_after_training(ds) -> None:
    cfg = small_cfg(epochs=2, patience=5)
    cfg.loss = LossConfig(weighting=WeightingConfig(scheme="ple_decay", gamma=0.5,
                                                    weights={"ctr": 2.0}))
    result = fit(cfg, ds)
    assert result.task_weights == {"ctr": 1.0, "ctcvr": 0.5}  # w0 * 0.5^1 at the second epoch


def test_compute_metrics_by_hand() -> None:
    tasks = [TaskSpec("ctr", "click"), TaskSpec("ctcvr", "buy", depends_on="ctr", cond_name="cvr")]
    labels = np.array([[1, 1], [1, 0], [0, 0], [1, 0], [0, 0]], dtype=np.float32)
    logits = np.array([[2.0, 0.0], [0.0, -0.5], [-1.0, -3.0], [3.0, -2.0], [0.5, -1.0]])
    m = compute_metrics(logits, labels, tasks)
    assert m["ctr_auc"] == pytest.approx(5 / 6)  # positives 2,0,3 vs negatives -1,0.5: 5 of 6 pairs
    assert m["ctcvr_auc"] == 1.0
    # cvr on clicked rows ranks by log p_ctcvr - log p_ctr (not by the ctcvr logit, which would
    # give 1.0): row 0 scores -0.566, row 1 -0.281, row 3 -2.08 -> the positive wins 1 of 2 pairs
    assert m["cvr_auc"] == pytest.approx(0.5)
    p = 1 / (1 + np.exp(-logits[:, 0]))
    ll = -np.mean(labels[:, 0] * np.log(p) + (1 - labels[:, 0]) * np.log(1 - p))
    assert m["ctr_logloss"] == pytest.approx(ll)
    assert m["mean_auc"] == pytest.approx((5 / 6 + 1) / 2)


def test_device_and_precision_choice() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(ConfigError, match="train.device: unknown device 'tpu0'"):
        resolve_device("tpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_device_split_is_built_once(ds) -> None:
    cpu = torch.device("cpu")
    assert device_split(ds, "val", cpu) is device_split(ds, "val", cpu)
    assert len(device_split(ds, "val", cpu)) == len(ds.splits["val"])


def test_bf16_on_cpu_trains(ds) -> None:
    result = fit(small_cfg(epochs=1, precision="bf16"), ds)
    assert result.precision == "bf16" and result.val["ctr_auc"] > 0.5
