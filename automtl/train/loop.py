"""The one training loop of automtl: `fit(TrialConfig, Dataset) -> TrainResult`.

Data lives on the device (built once per process, `cache.device_split`) or, where the memory
plan says it does not fit (`memory.plan_run`), on the host, streamed batch by batch; each epoch
draws a permutation and gathers batches by index. Inside a step nothing is read back to the host: the
epoch's loss is accumulated on the device and read once per epoch, and non-finite losses are
tracked on the device and checked every few steps (every step on CPU, where a read is free), then
reported with the step and the loss term that failed. Validation AUC/logloss (binary_metrics) after each
epoch; early stopping on the mean validation AUC; test metrics at the best epoch with its weights.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from automtl.config import TrainConfig, TrialConfig
from automtl.data.batching import iter_batches
from automtl.data.schema import Dataset
from automtl.train.cache import device_split
from automtl.train.device import resolve_device, resolve_precision, synchronize, tune_cpu_allocator
from automtl.train.memory import place_splits, plan_run
from automtl.train.metrics import evaluate
# make_optimizer: re-exported here, where it lived before the step got its own module
from automtl.train.step import TrainStep, build_train_step, make_optimizer  # noqa: F401
from automtl.train.sweep import SweepPoint, Sweeper


@dataclass
class EpochRecord:
    """Validation metrics and training figures of one epoch (1-based)."""

    epoch: int
    val: dict[str, float]
    train_loss: float
    samples_per_s: float
    seconds: float
    sweep: list[SweepPoint] = field(default_factory=list)  # conditioned: the coarse sweep


@dataclass
class TrainResult:
    """Outcome of `fit`: metrics at the best epoch and the model with its best weights."""

    history: list[EpochRecord]
    best_epoch: int
    val: dict[str, float]
    test: dict[str, float]
    model: nn.Module
    n_params: int
    samples_per_s: float
    epochs_run: int
    seconds: float
    device: str
    precision: str = "fp32"
    loss_terms: list[str] = field(default_factory=list)
    task_weights: dict[str, float] = field(default_factory=dict)  # effective, at the last epoch
    # conditioned weighting: the full sweep at the best epoch (val and test per weight vector)
    # and the index of the point `val`/`test` report (chosen among all K; the epochs' records
    # hold only the coarse sweep, so `val` may be another point than that epoch's record)
    sweep: list[SweepPoint] = field(default_factory=list)
    sweep_index: int = 0
    memory_plan: str = ""  # the data plan's line: which split was resident, which streamed


class Callback:
    """Listens to `fit`; subclass it and override the hooks you need (the others do nothing).
    `on_epoch_end` may raise `optuna.TrialPruned`, which `fit` propagates."""

    def on_train_start(self, model: nn.Module) -> None:
        """Called once, after the model is built and moved to its device."""

    def on_batch_end(self, epoch: int, step: int, n_steps: int) -> None:
        """Called after each optimizer step (`step` counts from 1 within the epoch)."""

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> None:
        """Called after each epoch's validation."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU runs are then bit-for-bit repeatable)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class EarlyStopping:
    """Tracks the best epoch by mean validation AUC and its weights; `stop` once the score has not
    improved for more than `patience` epochs. A non-finite score never counts as an improvement,
    but the first epoch is always kept so that there are weights to return."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_score = float("-inf")
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale = 0

    def update(self, epoch: int, score: float, model: nn.Module) -> bool:
        """Record epoch `epoch`'s score; keep a copy of the weights when it is the best so far
        (then return True)."""
        finite = bool(np.isfinite(score))
        if (finite and score > self.best_score) or self.best_state is None:
            self.best_score = score if finite else self.best_score
            self.best_epoch = epoch
            self.best_state = copy.deepcopy(model.state_dict())
            self.stale = 0
            return True
        self.stale += 1
        return False

    @property
    def stop(self) -> bool:
        """True once more than `patience` epochs in a row did not improve."""
        return self.stale > self.patience


@dataclass
class _Run:
    """What one `fit` call trains with; built once, used by every epoch."""

    cfg: TrainConfig
    dev: torch.device
    step: TrainStep  # model, loss, optimizer and the step itself (`automtl.train.step`)
    generator: torch.Generator
    batch_hooks: list[Callback]
    steps_done: int = 0


def _check_callbacks(callbacks: Sequence[Callback]) -> list[Callback]:
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"fit callbacks must subclass automtl.train.Callback, got {type(cb).__name__}")
    return list(callbacks)


def _train_epoch(run: _Run, train: Any, epoch: int) -> tuple[float, float]:
    """One pass over the shuffled training split; returns (mean train loss, seconds)."""
    tc, step_fn, guard = run.cfg, run.step, run.step.guard
    step_fn.model.train()
    synchronize(run.dev)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=run.dev)
    epoch_start = run.steps_done
    n_steps = -(-len(train) // tc.batch_size)
    for step, batch in enumerate(iter_batches(train, tc.batch_size, shuffle=True,
                                              generator=run.generator)):
        total = step_fn.forward_backward(batch, epoch)
        run.steps_done += 1
        if run.steps_done % guard.every == 0:
            guard.check(epoch, epoch_start)  # before the step: a bad step is never applied
        step_fn.apply()
        loss_sum += total
        for cb in run.batch_hooks:
            cb.on_batch_end(epoch, step + 1, n_steps)
    guard.check(epoch, epoch_start)
    train_loss = float(loss_sum) / max(run.steps_done - epoch_start, 1)
    synchronize(run.dev)
    return train_loss, time.perf_counter() - t0


def validate(model: nn.Module, val: Any, tasks: Sequence[Any], batch_size: int, precision: str,
             sweeper: Sweeper | None, full: bool = False,
             known: Sequence[SweepPoint] = ()) -> tuple[dict[str, float], float, list[SweepPoint]]:
    """(reported metrics, early-stopping score, sweep points) of `model` on the split `val`:
    what every epoch of `fit` records, also used by callbacks that validate mid-epoch (a
    budget's rows rung). A conditioned model reports its sweep (`Sweeper`): the coarse vectors,
    or (`full`, once, on the selected weights) every vector, re-using the `known` points of
    those weights; others one point."""
    if sweeper is not None:
        return sweeper.validate(model, val, full=full, known=known)
    metrics = evaluate(model, val, tasks, batch_size, precision)
    return metrics, metrics.get("mean_auc", float("nan")), []


def fit(
    cfg: TrialConfig,
    dataset: Dataset,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = None,
    data_on: str | None = None,
) -> TrainResult:
    """Train one model of `cfg` on `dataset`; raises `TrialFailedError` on a non-finite loss.
    `data_on` (auto | device | host; default `$AUTOMTL_DATA_ON`, else auto) overrides the
    memory plan's placement of the splits (`automtl.train.memory`)."""
    from automtl.memory_guard import check_model_fits
    from automtl.models import count_parameters  # models import data/config only

    callbacks = _check_callbacks(callbacks)
    started = time.perf_counter()
    tc = cfg.train
    dev = resolve_device(device if device is not None else tc.device)
    precision = resolve_precision(tc.precision, dev)
    if dev.type == "cpu":
        tune_cpu_allocator()
    seed_everything(tc.seed)
    check_model_fits(cfg, dataset, dev)  # a size that cannot fit: one line, before allocating
    step_fn = build_train_step(cfg, dataset, dev)
    model, loss_fn = step_fn.model, step_fn.loss_fn
    task_names = [t.name for t in dataset.tasks]
    plan = plan_run(dataset, dev, model, tc.batch_size, tc.eval_batch_size, data_on)
    splits = place_splits(dataset, plan)
    for name in ("train", "val"):
        if name not in splits:  # device_split raises the one-line error
            device_split(dataset, name, dev)
    train, val, test = splits["train"], splits["val"], splits.get("test")
    run = _Run(
        cfg=tc, dev=dev, step=step_fn,
        generator=torch.Generator().manual_seed(tc.seed),
        # per-batch calls only to callbacks that override the hook: no-op calls cost per step
        batch_hooks=[cb for cb in callbacks if type(cb).on_batch_end is not Callback.on_batch_end],
    )
    sweeper = Sweeper.of(cfg.loss.weighting, dataset.tasks, tc.eval_batch_size, precision)
    for cb in callbacks:
        cb.on_train_start(model)

    history: list[EpochRecord] = []
    stopper = EarlyStopping(tc.patience)
    train_seconds = 0.0
    for epoch in range(1, tc.epochs + 1):
        train_loss, seconds = _train_epoch(run, train, epoch)
        train_seconds += seconds
        train.release_pages()  # memory-mapped data: keep RSS to one split at a time
        metrics, score, points = validate(model, val, dataset.tasks, tc.eval_batch_size,
                                          precision, sweeper)
        val.release_pages()
        record = EpochRecord(epoch=epoch, val=metrics, train_loss=train_loss,
                             samples_per_s=len(train) / max(seconds, 1e-9), seconds=seconds,
                             sweep=points)
        history.append(record)
        stopper.update(epoch, score, model)
        for cb in callbacks:
            cb.on_epoch_end(epoch, record)
        if stopper.stop:
            break

    assert stopper.best_state is not None  # epochs >= 1 (validated)
    model.load_state_dict(stopper.best_state)
    model.eval()
    best_epoch = stopper.best_epoch
    best_val: dict[str, float] = dict(history[best_epoch - 1].val)
    sweep: list[SweepPoint] = []
    best_index = 0
    if sweeper is not None:  # the whole curve, once, on the selected weights
        best_val, _, sweep = validate(model, val, dataset.tasks, tc.eval_batch_size, precision,
                                      sweeper, full=True, known=history[best_epoch - 1].sweep)
        best_index = sweeper.index
        val.release_pages()
    if sweeper is not None and test is not None:
        test_metrics = sweeper.test(model, test, sweep, best_index)
    else:
        test_metrics = evaluate(model, test, dataset.tasks, tc.eval_batch_size, precision) \
            if test else {}
    if test is not None:
        test.release_pages()
    total_rows = len(train) * len(history)
    return TrainResult(
        history=history,
        best_epoch=best_epoch,
        val=best_val,
        test=test_metrics,
        model=model,
        n_params=int(count_parameters(model)),
        samples_per_s=total_rows / max(train_seconds, 1e-9),
        epochs_run=len(history),
        seconds=time.perf_counter() - started,
        device=str(dev),
        precision=precision,
        loss_terms=list(loss_fn.term_names),
        memory_plan=plan.line(),
        task_weights=dict(zip(task_names,
                              loss_fn.weighting.current_weights(len(history) - 1).tolist())),
        sweep=sweep,
        sweep_index=best_index,
    )
