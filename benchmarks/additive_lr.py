"""Additive option at large row counts: the space's wide models vs the well-specified logistic
regression (issue 15: "the best front model is within 0.005 AUC of the LR on every task").

The synthetic `additive=true` data has step logits that are sums of per-id and dense effects, so
one logistic regression per cascade step on one-hot ids + dense values is the well-specified
model. At 20k rows the test AUCs have standard errors of 0.02-0.04, so the target can only be
checked at ~1M rows; this benchmark runs there, one arm per process (single-threaded), and pairs
arms on the same test rows (bootstrap standard error of each AUC difference).

Arms (each writes OUT/<arm>.json and OUT/<arm>.npz with its test predictions, so a run that is
stopped keeps the arms it finished):
- `lr`: scikit-learn LogisticRegression, one for p(click) on all rows and one for
  p(purchase | click) on clicked rows (p_ctcvr = product), C chosen on val per model; the solver
  is an option (its fit time is measured first on a subsample);
- any name in `CONFIGS`: one `automtl.train.fit` of that configuration (every value is a choice
  of the default space, so a search could sample it; they are this benchmark's own wide-first
  run configuration, not a preset's `enqueue:`).

    python benchmarks/additive_lr.py --rows 1000000 --arms lr --out /tmp/add1m
    python benchmarks/additive_lr.py --rows 1000000 --arms wide_esmm,wide_plain --out /tmp/add1m
    python benchmarks/additive_lr.py --rows 1000000 --summary --out /tmp/add1m
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from automtl.config import DataConfig, TrialConfig, from_dict
from automtl.data import bayes_auc, load_dataset
from automtl.data.schema import Dataset
from automtl.train import Callback, EpochRecord, fit
from automtl.train.cache import device_split
from automtl.train.metrics import predict_logits

METRICS = ("ctr_auc", "cvr_auc", "ctcvr_auc")

# Wide-first configurations: the smallest body the default space offers (shared_bottom with no
# bottom layers, towers [32], embedding 8) plus the wide term, at the step size that fitted the
# wide term at 10k-50k rows (second session: batch 256-1024, lr 1e-2, L2 1e-4). `esmm` makes
# the raw logits the cascade's step logits, i.e. exactly the additive data's form.
_BASE = {"arch": "shared_bottom", "bottom_dims": [], "tower_dims": [32], "embedding_dim": 8,
         "wide": True}
_TRAIN = {"optimizer": "adam", "lr": 1e-2, "weight_decay": 1e-4, "batch_size": 1024,
          "epochs": 4, "patience": 1}
CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "wide_esmm": {"model": {**_BASE, "head": "esmm"}, "train": _TRAIN},
    "wide_plain": {"model": {**_BASE, "head": "plain"}, "train": _TRAIN},
    "wide_esmm_lr3e-3": {"model": {**_BASE, "head": "esmm"}, "train": {**_TRAIN, "lr": 3e-3}},
    "wide_esmm_wd0": {"model": {**_BASE, "head": "esmm"}, "train": {**_TRAIN, "weight_decay": 0.0}},
    "wide_esmm_wd1e-5": {"model": {**_BASE, "head": "esmm"},
                         "train": {**_TRAIN, "weight_decay": 1e-5}},
    "wide_esmm_adamw": {"model": {**_BASE, "head": "esmm"},
                        "train": {**_TRAIN, "optimizer": "adamw"}},
    "wide_esmm_b4096": {"model": {**_BASE, "head": "esmm"},
                        "train": {**_TRAIN, "batch_size": 4096}},
    "nowide_esmm": {"model": {**_BASE, "head": "esmm", "wide": False}, "train": _TRAIN},
    # L2 at the LR's optimum: Adam's coupled L2 minimises mean loss + wd/2 |w|^2, i.e. the LR
    # objective with C = 1 / (wd * n_train); C = 0.1 at 800k rows is wd ~1.25e-5 (1e-4 at 50k)
    "wide_esmm_wd1e-6": {"model": {**_BASE, "head": "esmm"},
                         "train": {**_TRAIN, "weight_decay": 1e-6}},
    "wide_esmm_wd1e-5_lr3e-3": {"model": {**_BASE, "head": "esmm"},
                                "train": {**_TRAIN, "weight_decay": 1e-5, "lr": 3e-3}},
    "wide_esmm_wd1e-5_lr1e-3": {"model": {**_BASE, "head": "esmm"},
                                "train": {**_TRAIN, "weight_decay": 1e-5, "lr": 1e-3}},
    "wide_esmm_wd1e-5_b4096": {"model": {**_BASE, "head": "esmm"},
                               "train": {**_TRAIN, "weight_decay": 1e-5, "batch_size": 4096}},
    "wide_plain_wd1e-5": {"model": {**_BASE, "head": "plain"},
                          "train": {**_TRAIN, "weight_decay": 1e-5}},
    "nowide_esmm_wd1e-5": {"model": {**_BASE, "head": "esmm", "wide": False},
                           "train": {**_TRAIN, "weight_decay": 1e-5}},
}


def task_aucs(labels: np.ndarray, p_ctr: np.ndarray, p_cvr: np.ndarray,
              p_ctcvr: np.ndarray) -> dict[str, float]:
    """ctr/ctcvr AUC on all rows, cvr AUC (p_cvr) on clicked rows."""
    clicked = labels[:, 0] > 0.5
    return {"ctr_auc": float(roc_auc_score(labels[:, 0], p_ctr)),
            "ctcvr_auc": float(roc_auc_score(labels[:, 1], p_ctcvr)),
            "cvr_auc": float(roc_auc_score(labels[clicked, 1], p_cvr[clicked]))}


def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (Radiology 1982, eq. 2) standard error of one AUC."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) \
        / max(n_pos * n_neg, 1)
    return float(np.sqrt(max(var, 0.0)))


def load(rows: int) -> Dataset:
    return load_dataset(DataConfig("synthetic", options={"rows": rows, "additive": True}))


def design(ds: Dataset):
    """One-hot ids (vocabulary = the train split's ids) + dense values, per split (CSR)."""
    from scipy import sparse as sp
    from sklearn.preprocessing import OneHotEncoder

    enc = OneHotEncoder(handle_unknown="ignore").fit(np.asarray(ds.splits["train"].sparse))
    return {k: sp.hstack([enc.transform(np.asarray(s.sparse)),
                          sp.csr_matrix(np.asarray(s.dense))]).tocsr()
            for k, s in ds.splits.items()}


def lr_arm(ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    t_cpu = time.process_time()
    x = design(ds)
    y = {k: np.asarray(s.labels) for k, s in ds.splits.items()}
    clicked = {k: v[:, 0] > 0.5 for k, v in y.items()}
    design_cpu = time.process_time() - t_cpu
    fits: list[dict[str, Any]] = []

    def one(c: float, step: str, rows: slice | np.ndarray | None = None):
        xs, ys = (x["train"], y["train"][:, 0]) if step == "ctr" else \
            (x["train"][clicked["train"]], y["train"][clicked["train"], 1])
        if rows is not None:
            xs, ys = xs[rows], ys[rows]
        t0, w0 = time.process_time(), time.perf_counter()
        model = LogisticRegression(C=c, solver=args.solver, max_iter=args.max_iter, tol=args.tol)
        model.fit(xs, ys)
        rec = {"step": step, "C": c, "rows": int(xs.shape[0]), "cpu_s": time.process_time() - t0,
               "wall_s": time.perf_counter() - w0, "n_iter": int(np.max(model.n_iter_))}
        return model, rec

    # fit time first, on a subsample: says whether the grid fits the time left
    probe = min(args.probe_rows, x["train"].shape[0])
    _, rec = one(float(args.C.split(",")[0]), "ctr", slice(0, probe))
    rec["probe"] = True
    fits.append(rec)
    print(f"lr probe ({args.solver}): {rec}", flush=True)
    best: dict[str, tuple[float, Any, float]] = {}
    for step, metric in (("ctr", "ctr_auc"), ("cvr", "cvr_auc")):
        for c in (float(v) for v in args.C.split(",")):
            model, rec = one(c, step)
            if step == "ctr":
                val = float(roc_auc_score(y["val"][:, 0], model.predict_proba(x["val"])[:, 1]))
            else:
                m = clicked["val"]
                val = float(roc_auc_score(y["val"][m, 1], model.predict_proba(x["val"][m])[:, 1]))
            rec["val_" + metric] = val
            fits.append(rec)
            print(f"lr {step}: {rec}", flush=True)
            if step not in best or val > best[step][0]:
                best[step] = (val, model, c)
    p = {k: best[k][1].predict_proba(x["test"])[:, 1] for k in ("ctr", "cvr")}
    preds = {"p_ctr": p["ctr"], "p_cvr": p["cvr"], "p_ctcvr": p["ctr"] * p["cvr"]}
    fit_cpu = sum(f["cpu_s"] for f in fits)
    return {"arm": "lr", "C": {k: best[k][2] for k in best}, "fits": fits,
            "design_cpu_s": design_cpu, "cpu_s": fit_cpu + design_cpu,
            "rows_x_epochs": int(x["train"].shape[0]),
            "note": f"{args.solver}, C grid {args.C} per step, one-hot of the train split's ids",
            "preds": preds}


class _Progress(Callback):
    """One line per epoch (val AUCs, CPU seconds so far): a stopped run still says how far it got."""

    def __init__(self, name: str, cpu0: float) -> None:
        self.name, self.cpu0 = name, cpu0

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> None:
        vals = " ".join(f"{m} {record.val.get(m, float('nan')):.4f}" for m in METRICS)
        print(f"{self.name} epoch {epoch}: val {vals}, cpu {time.process_time() - self.cpu0:.0f}s",
              flush=True)


def nn_arm(ds: Dataset, name: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = CONFIGS[name]
    train = {**spec["train"], "seed": args.seed}
    if args.epochs is not None:
        train["epochs"] = args.epochs
    cfg = from_dict(TrialConfig, {"data": {"name": "synthetic",
                                           "options": {"rows": args.rows, "additive": True}},
                                  "model": spec["model"], "train": train}, where=name)
    t0 = time.process_time()
    result = fit(cfg, ds, callbacks=[_Progress(name, t0)], device="cpu")
    cpu = time.process_time() - t0
    test = device_split(ds, "test", torch.device("cpu"))
    logits = predict_logits(result.model, test, ds.task_names, 8192).numpy().astype(np.float64)
    p_ctr, p_ctcvr = 1 / (1 + np.exp(-logits[:, 0])), 1 / (1 + np.exp(-logits[:, 1]))
    # cvr as the metrics compute it: sigmoid-space ratio (= the ESMM head's CVR output)
    p_cvr = np.exp(-np.logaddexp(0, -logits[:, 1]) + np.logaddexp(0, -logits[:, 0]))
    n_train = len(ds.splits["train"].labels)
    return {"arm": name, "config": {"model": spec["model"], "train": train},
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "val": {m: result.val.get(m) for m in METRICS},
            "fit_test": {m: result.test.get(m) for m in METRICS},
            "val_curve": [{m: r.val.get(m) for m in METRICS} for r in result.history],
            "cpu_s": cpu, "wall_s": result.seconds, "samples_per_s": result.samples_per_s,
            "n_params": result.n_params, "rows_x_epochs": n_train * result.epochs_run,
            "note": "fit(); test at the best val epoch (mean of ctr/ctcvr val AUC)",
            "preds": {"p_ctr": p_ctr, "p_cvr": p_cvr, "p_ctcvr": p_ctcvr}}


def save(out: Path, rec: dict[str, Any], labels: np.ndarray) -> None:
    preds = rec.pop("preds")
    rec["test"] = task_aucs(labels, preds["p_ctr"], preds["p_cvr"], preds["p_ctcvr"])
    np.savez(out / f"{rec['arm']}.npz", **preds)
    (out / f"{rec['arm']}.json").write_text(json.dumps(rec, indent=1, default=float))
    print(json.dumps({k: rec[k] for k in ("arm", "test", "cpu_s", "rows_x_epochs")}), flush=True)


def summary(ds: Dataset, out: Path, reps: int, seed: int = 0) -> None:
    y = np.asarray(ds.splits["test"].labels)
    clicked = y[:, 0] > 0.5
    n_pos = {"ctr_auc": int(y[:, 0].sum()), "ctcvr_auc": int(y[:, 1].sum()),
             "cvr_auc": int(y[clicked, 1].sum())}
    n_all = {"ctr_auc": len(y), "ctcvr_auc": len(y), "cvr_auc": int(clicked.sum())}
    bayes = bayes_auc(ds, "test")
    arms = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
    preds = {k: dict(np.load(out / f"{k}.npz")) for k in arms}
    print(f"test rows {len(y):,}; positives ctr {n_pos['ctr_auc']:,}, ctcvr {n_pos['ctcvr_auc']:,},"
          f" cvr {n_pos['cvr_auc']:,} of {n_all['cvr_auc']:,} clicked")
    print("Bayes: " + ", ".join(f"{m} {bayes[m]:.4f}" for m in METRICS))
    rng = np.random.default_rng(seed)
    boots = [rng.integers(0, len(y), len(y)) for _ in range(reps)]

    def boot_aucs(p: dict[str, np.ndarray]) -> np.ndarray:
        rows = []
        for idx in boots:
            yy = y[idx]
            rows.append([roc_auc_score(yy[:, 0], p["p_ctr"][idx]),
                         roc_auc_score(yy[yy[:, 0] > .5, 1], p["p_cvr"][idx][yy[:, 0] > .5]),
                         roc_auc_score(yy[:, 1], p["p_ctcvr"][idx])])
        return np.array(rows)

    ref = boot_aucs(preds["lr"]) if "lr" in preds else None
    for name, rec in arms.items():
        t = rec["test"]
        se = {m: auc_se(t[m], n_pos[m], n_all[m] - n_pos[m]) for m in METRICS}
        line = f"{name:18s} " + " ".join(f"{m.split('_')[0]} {t[m]:.4f}+-{se[m]:.4f}"
                                         for m in METRICS)
        if ref is not None and name != "lr":
            diff = boot_aucs(preds[name]) - ref
            lr_t = arms["lr"]["test"]
            gaps = [lr_t[m] - t[m] for m in ("ctr_auc", "cvr_auc", "ctcvr_auc")]
            line += " | gap to lr " + " ".join(f"{g:+.4f}+-{s:.4f}"
                                              for g, s in zip(gaps, diff.std(axis=0)))
        line += f" | rows x ep {rec['rows_x_epochs']:,} cpu {rec['cpu_s']:.0f}s"
        if "best_epoch" in rec:
            line += f" best ep {rec['best_epoch']}/{rec['epochs_run']}"
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--arms", default="lr,wide_esmm",
                    help=f"comma list of lr and {', '.join(CONFIGS)}")
    ap.add_argument("--out", type=Path, required=True, help="folder for <arm>.json/.npz")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="training seed (the data seed stays 0)")
    ap.add_argument("--suffix", default="", help="appended to the arms' file names, e.g. _s1")
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    ap.add_argument("--solver", default="lbfgs", choices=["lbfgs", "saga", "liblinear",
                                                          "newton-cholesky", "sag"])
    ap.add_argument("--C", default="0.1,0.3,1.0,3.0", help="comma list of C values")
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--probe-rows", type=int, default=100_000)
    ap.add_argument("--summary", action="store_true", help="only print the table of OUT")
    ap.add_argument("--boot", type=int, default=200, help="bootstrap resamples for paired SEs")
    args = ap.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a != "lr" and a not in CONFIGS]
    if unknown:
        raise SystemExit(f"--arms: unknown {', '.join(unknown)}; use lr or {', '.join(CONFIGS)}")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    ds = load(args.rows)
    if args.summary:
        summary(ds, args.out, args.boot)
        return 0
    labels = np.asarray(ds.splits["test"].labels)
    for arm in arms:
        rec = lr_arm(ds, args) if arm == "lr" else nn_arm(ds, arm, args)
        rec["rows"], rec["arm"] = args.rows, rec["arm"] + args.suffix
        save(args.out, rec, labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
