"""Training throughput: automtl vs torch-rechub 0.9 (MTLTrainer) on the same data and threads.

Same Ali-CCP-schema synthetic data (sparse fields, 4 behaviour sequences mean-pooled over shared
tables, 8 dense values; labels ctr and ctcvr), same model sizes: MMoE (8 experts [256, 128],
embedding 16, towers [64], batch 2048) and PLE (2 levels, 2 shared + 2 specific experts per task).
One epoch each, Adam lr 1e-3. Prints training samples/s, the ratio, test AUCs, and the pure
forward/backward/step rate of each model on one pre-built batch (so the data-path overhead shows),
plus the achieved fraction of this machine's matmul peak.

    python benchmarks/throughput.py                    # full size (1M rows), 2 threads, CPU,
                                                       # automtl in fp32 and bf16, the peer in fp32
    python benchmarks/throughput.py --rows 20000 --model-steps 3   # smoke run
    python benchmarks/throughput.py --device cuda      # GPU figures (when one is present)

Differences the peer imposes: torch-rechub's MLP puts BatchNorm1d after every Linear (experts,
gates, towers) and its model outputs probabilities (BCELoss); automtl outputs logits
(BCE-with-logits). Its DataLoader collates a dict of per-row tensors every batch; automtl gathers
batches from device-resident columns.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

os.environ.setdefault("TQDM_DISABLE", "1")  # torch-rechub's progress bars would flood the output

import numpy as np
import torch

from automtl.config import DataConfig, ModelConfig, TrainConfig, TrialConfig
from automtl.data import DeviceSplit, load_dataset
from automtl.data.schema import Dataset
from automtl.losses import task_bce
from automtl.models import build_model
from automtl.train import fit, make_optimizer, resolve_device, resolve_precision


@dataclass
class Row:
    framework: str
    model: str
    precision: str
    samples_per_s: float
    model_only_per_s: float
    test_auc: dict[str, float]
    gflop_per_sample: float
    cpu_s_per_sample: float = 0.0  # process CPU seconds of the training epochs per sample
    ran_on: str = ""  # the device the model's parameters were on while it trained


def model_config(name: str) -> ModelConfig:
    """The benchmark's MMoE or PLE."""
    common = {"embedding_dim": 16, "expert_dims": [256, 128], "tower_dims": [64],
              "seq_pooling": "mean"}
    if name == "mmoe":
        return ModelConfig(arch="mmoe", n_experts=8, **common)  # type: ignore[arg-type]
    return ModelConfig(arch="ple", n_levels=2, n_shared_experts=2, n_specific_experts=2,
                       **common)  # type: ignore[arg-type]


def timed_steps(step: Callable[[], torch.Tensor], n: int, device: torch.device) -> float:
    """Seconds per call of `step`, after 2 warm-up calls."""
    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def flops_per_step(step: Callable[[], torch.Tensor]) -> float:
    """Matmul FLOPs (mm, addmm, bmm, baddbmm: forward and backward) of one training step, as
    counted by torch's FlopCounterMode (it counts only matmul-like ops; elementwise ops, the
    embedding gather and the optimizer are not FLOPs of this count)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, tries: int = 5) -> float:
    """Measured GFLOP/s of a 2048 x 2048 matmul on this device and thread count: the best of
    `tries` timings (other processes on a shared machine only ever make it slower)."""
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    b = torch.randn(2048, 2048, device=device, dtype=dtype)
    n = 3 if device.type == "cpu" else 50
    sec = min(timed_steps(lambda: a @ b, n, device) for _ in range(tries))
    return 2 * 2048**3 / sec / 1e9


def matmul_peak_cpu_time(dtype: torch.dtype, tries: int = 5) -> float:
    """GFLOP per CPU-second of the same matmul on ONE thread (process CPU time, so other load
    on the machine does not enter, except through shared caches): the per-core peak that
    CPU-time rates are compared with."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(tries):
            c0 = time.process_time()
            for _ in range(3):
                a @ b
            best = min(best, (time.process_time() - c0) / 3)
        return 2 * 2048**3 / best / 1e9
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- automtl


def run_automtl(ds: Dataset, name: str, args: argparse.Namespace, device: torch.device,
                precision: str) -> Row:
    cfg = TrialConfig(data=DataConfig(name="synthetic"), model=model_config(name),
                      train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3,
                                        patience=args.epochs, seed=0, device=str(device),
                                        precision=precision,  # type: ignore[arg-type]
                                        optimizer=getattr(args, "optimizer", "adam")))
    cpu0 = time.process_time()
    result = fit(cfg, ds)
    cpu_fit = time.process_time() - cpu0
    train_s = sum(h.seconds for h in result.history)
    # the epochs' share of fit's CPU time (validation and test passes excluded), by wall share
    cpu_train = cpu_fit * train_s / max(result.seconds, 1e-9)
    # model-only: forward + backward + Adam step on one pre-built batch already on the device
    torch.manual_seed(0)
    model = build_model(cfg.model, ds.features, ds.tasks).to(device)
    opt = make_optimizer(cfg.train, model, torch.nn.Module())  # lazy_*: sparse table gradients
    train = ds.splits["train"]
    first = dataclasses.replace(train, sparse=train.sparse[: args.batch_size],
                                dense=train.dense[: args.batch_size],
                                sequences={k: v[: args.batch_size] for k, v in train.sequences.items()},
                                labels=train.labels[: args.batch_size], truth=None)
    batch = DeviceSplit.from_split(first, device).slice(0, args.batch_size)  # one batch copied
    precision = result.precision
    amp = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if precision == "bf16"
           else None)

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        if amp is not None:
            with amp:
                logits = model.forward_tensor(batch).t()
        else:
            logits = model.forward_tensor(batch).t()
        loss = task_bce(logits.float(), batch.labels).sum()
        loss.backward()
        opt.step()
        return loss

    sec = timed_steps(step, args.model_steps, device)
    flops = flops_per_step(step)
    rows = len(ds.splits["train"]) * result.epochs_run
    return Row("automtl", name, precision, result.samples_per_s, args.batch_size / sec,
               {k: result.test[f"{k}_auc"] for k in ("ctr", "ctcvr")}, flops / args.batch_size / 1e9,
               cpu_train / rows, str(next(model.parameters()).device))


# ---------------------------------------------------------------- torch-rechub


def rechub_inputs(ds: Dataset, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    s = ds.splits[split]
    x: dict[str, np.ndarray] = {}
    for i, f in enumerate(ds.sparse_features):
        x[f.name] = s.sparse[:, i].astype(np.int64)
    for i, f in enumerate(ds.dense_features):
        x[f.name] = s.dense[:, i].astype(np.float32)
    for f in ds.sequence_features:
        x[f.name] = s.sequences[f.name].astype(np.int64)
    return x, s.labels.astype(np.float32)


def rechub_features(ds: Dataset, emb: int) -> list[object]:
    from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature

    feats: list[object] = [SparseFeature(f.name, f.vocab_size, emb) for f in ds.sparse_features]
    feats += [SequenceFeature(f.name, f.vocab_size, emb, pooling="mean", shared_with=f.shares_with,
                              padding_idx=0) for f in ds.sequence_features]
    feats += [DenseFeature(f.name) for f in ds.dense_features]
    return feats


def run_rechub(ds: Dataset, name: str, args: argparse.Namespace, device: torch.device) -> Row:
    from sklearn.metrics import roc_auc_score
    from torch_rechub.models.multi_task import MMOE, PLE
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator

    torch.manual_seed(0)
    feats = rechub_features(ds, 16)
    towers = [{"dims": [64]} for _ in ds.tasks]
    types = ["classification"] * len(ds.tasks)
    if name == "mmoe":
        model = MMOE(feats, types, n_expert=8, expert_params={"dims": [256, 128]},
                     tower_params_list=towers)
    else:
        model = PLE(feats, types, n_level=2, n_expert_specific=2, n_expert_shared=2,
                    expert_params={"dims": [256, 128]}, tower_params_list=towers)
    x_tr, y_tr = rechub_inputs(ds, "train")
    x_va, y_va = rechub_inputs(ds, "val")
    x_te, y_te = rechub_inputs(ds, "test")
    train_dl, _, test_dl = DataGenerator(x_tr, y_tr).generate_dataloader(
        x_va, y_va, x_te, y_te, batch_size=args.batch_size)
    steps = getattr(args, "peer_steps", None)  # None: whole epochs; N: N timed steps
    with tempfile.TemporaryDirectory() as tmp:
        trainer = MTLTrainer(model, task_types=types, optimizer_params={"lr": 1e-3, "weight_decay": 0.0},
                             n_epoch=args.epochs, earlystop_patience=args.epochs, device=str(device),
                             model_path=tmp)
        ran_on = str(next(model.parameters()).device)
        if steps:
            # its own loop on its own DataLoader, N batches after 3 warm-up batches (the rate is
            # steady: per-row collation bounds it, so a whole 800k-row epoch adds only minutes)
            batches = iter(train_dl)
            trainer.train_one_epoch(itertools.islice(batches, 3))
            seen = [0]

            def counted() -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
                for b in itertools.islice(batches, steps):
                    seen[0] += len(b[1])
                    yield b

            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, cpu0 = time.perf_counter(), time.process_time()
            trainer.train_one_epoch(counted())
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            cpu_train = time.process_time() - cpu0
            trained = seen[0]
            auc = {t.name: math.nan for t in ds.tasks}  # a partial epoch: no test AUC
        else:
            t0, cpu0 = time.perf_counter(), time.process_time()
            for _ in range(args.epochs):
                trainer.train_one_epoch(train_dl)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            cpu_train = time.process_time() - cpu0
            trained = len(y_tr) * args.epochs
            model.eval()
            preds = []
            with torch.no_grad():
                for xb, _ in test_dl:
                    preds.append(model({k: v.to(device) for k, v in xb.items()}).float().cpu())
            p = torch.cat(preds).numpy()
            auc = {t.name: float(roc_auc_score(y_te[:, k], p[:, k])) for k, t in enumerate(ds.tasks)}

    # model-only on one pre-built batch
    model.train()
    xb = {k: torch.from_numpy(v[: args.batch_size]).to(device) for k, v in x_tr.items()}
    yb = torch.from_numpy(y_tr[: args.batch_size]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    bce = torch.nn.BCELoss()

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        out = model(xb)
        loss = sum(bce(out[:, k], yb[:, k]) for k in range(yb.shape[1]))
        loss.backward()
        opt.step()
        return loss

    sec = timed_steps(step, args.model_steps, device)
    flops = flops_per_step(step)
    return Row("torch-rechub", name, "fp32", trained / seconds, args.batch_size / sec, auc,
               flops / args.batch_size / 1e9, cpu_train / trained, ran_on)


# ---------------------------------------------------------------- main


def machine() -> str:
    """CPU model name and logical CPU count (lscpu / /proc/cpuinfo)."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs"



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="synthetic rows (80%% train)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--models", default="mmoe,ple")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", default="fp32,bf16",
                    help="automtl runs, comma-separated (fp32, bf16, auto); the peer runs fp32")
    ap.add_argument("--model-steps", type=int, default=20, help="timed steps of the model-only rate")
    ap.add_argument("--skip-rechub", action="store_true")
    ap.add_argument("--peer-steps", type=int, default=None,
                    help="time the peer on N batches (after 3 warm-up ones) instead of whole "
                         "epochs; its test AUC is then not measured")
    ap.add_argument("--optimizer", default="adam",
                    help="automtl's train.optimizer (adam, adamw, lazy_adam, lazy_adamw)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    ds = load_dataset(DataConfig(name="synthetic", options={"rows": args.rows, "schema": "ali-ccp",
                                                           "n_tasks": 2}))
    peaks = {"fp32": matmul_peak(device), "bf16": matmul_peak(device, torch.bfloat16)}
    core_peaks = ({"fp32": matmul_peak_cpu_time(torch.float32),
                   "bf16": matmul_peak_cpu_time(torch.bfloat16)} if device.type == "cpu" else {})
    print(f"machine: {machine()}; device {device}, {args.threads} threads, torch {torch.__version__}, "
          f"optimizer {args.optimizer}")
    print(f"data: synthetic ali-ccp schema, {len(ds.splits['train']):,} train rows; measured matmul "
          f"peak (2048^3) fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    precisions = [resolve_precision(p.strip(), device) for p in args.precisions.split(",")]
    rows: list[Row] = []
    for name in args.models.split(","):
        for precision in precisions:
            rows.append(run_automtl(ds, name, args, device, precision))
            print(f"  done: {rows[-1]}", flush=True)
        if not args.skip_rechub:
            rows.append(run_rechub(ds, name, args, device))
            print(f"  done: {rows[-1]}", flush=True)
    # measured again at the end: the higher reading is the one least disturbed by other load
    peaks = {k: max(v, matmul_peak(device, torch.float32 if k == "fp32" else torch.bfloat16))
             for k, v in peaks.items()}
    print(f"matmul peak (best of start and end): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 "
          f"{peaks['bf16']:.0f} GFLOP/s")
    print()
    head = (f"{'model':6} {'framework':13} {'prec':4} {'train samples/s':>15} {'model-only/s':>13} "
            f"{'data-path overhead':>18} {'MFLOP/sample':>12} {'% matmul peak':>13} "
            f"{'test ctr AUC':>12} {'test ctcvr AUC':>14}")
    print(head)
    print("-" * len(head))
    for r in rows:
        overhead = 1 - r.samples_per_s / r.model_only_per_s
        frac = r.gflop_per_sample * r.samples_per_s / peaks[r.precision]
        print(f"{r.model:6} {r.framework:13} {r.precision:4} {r.samples_per_s:15,.0f} "
              f"{r.model_only_per_s:13,.0f} {overhead:18.1%} {r.gflop_per_sample * 1e3:12.2f} "
              f"{frac:13.1%} {r.test_auc['ctr']:12.4f} {r.test_auc['ctcvr']:14.4f}")
    print("(% matmul peak: matmul FLOPs per sample x training samples/s / this precision's measured "
          "peak; a model-only rate below the training rate is timing noise on a shared machine)")
    if core_peaks:
        print()
        print(f"CPU time (load-robust; exact at --threads 1, OMP spin-waits inflate it at more "
              f"threads): one-thread matmul peak fp32 {core_peaks['fp32']:.0f}, bf16 "
              f"{core_peaks['bf16']:.0f} GFLOP per CPU-second; load average now "
              f"{os.getloadavg()[0]:.1f}")
        for r in rows:
            rate = 1 / max(r.cpu_s_per_sample, 1e-12)
            frac = r.gflop_per_sample * rate / core_peaks[r.precision]
            print(f"  {r.model:6} {r.framework:13} {r.precision:4} {r.cpu_s_per_sample * 1e6:8.1f} "
                  f"CPU-us/sample = {rate:9,.0f} samples per CPU-second, {frac:6.1%} of the "
                  f"one-thread {r.precision} peak")
    if not args.skip_rechub:
        print()
        for name in args.models.split(","):
            peer = next(r for r in rows if r.model == name and r.framework == "torch-rechub")
            for ours in (r for r in rows if r.model == name and r.framework == "automtl"):
                print(f"{name} {ours.precision}: automtl / torch-rechub = "
                      f"{ours.samples_per_s / peer.samples_per_s:.2f}x training samples/s "
                      f"(model-only {ours.model_only_per_s / peer.model_only_per_s:.2f}x; CPU time "
                      f"per sample {peer.cpu_s_per_sample / max(ours.cpu_s_per_sample, 1e-12):.2f}x"
                      f"); test AUC "
                      f"ctr {ours.test_auc['ctr'] - peer.test_auc['ctr']:+.4f}, ctcvr "
                      f"{ours.test_auc['ctcvr'] - peer.test_auc['ctcvr']:+.4f} vs the peer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
