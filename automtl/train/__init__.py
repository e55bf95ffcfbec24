"""automtl.train: the one training loop (`fit`), metrics, device/precision choice."""

from automtl.train.cache import clear_device_cache, device_split
from automtl.train.clippy import Clippy
from automtl.train.cost import LATENCY_ROWS, inference_latency_ms
from automtl.train.checkpoint import load_trained, save_trained
from automtl.train.device import autocast, resolve_device, resolve_precision, tune_cpu_allocator
from automtl.train.loop import (
    Callback,
    EarlyStopping,
    EpochRecord,
    TrainResult,
    fit,
    seed_everything,
)
from automtl.train.step import TrainStep, build_train_step, make_optimizer
from automtl.train.metrics import compute_metrics, evaluate, predict_logits
from automtl.train.sweep import SweepPoint, knee_index, pick_point, sweep_eval

__all__ = [
    "Callback", "Clippy", "EarlyStopping", "EpochRecord", "LATENCY_ROWS", "inference_latency_ms",
    "TrainResult", "autocast", "clear_device_cache", "compute_metrics",
    "device_split", "evaluate", "fit", "load_trained", "make_optimizer", "predict_logits", "resolve_device",
    "resolve_precision", "save_trained", "seed_everything", "tune_cpu_allocator",
    "SweepPoint", "knee_index", "pick_point", "sweep_eval", "TrainStep", "build_train_step",
]

# `automtl.train(...)` calls automtl.api.train (this subpackage shares the name)
from automtl.api import call_through  # noqa: E402

call_through(__name__, "train")
