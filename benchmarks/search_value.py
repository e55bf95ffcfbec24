"""Search value: does the automtl front beat hand-tuned baselines at comparable compute?

On the same data and splits (synthetic default; the Ali-CCP-schema synthetic; the additive option,
whose step logits are sums of per-id and dense effects), compare test AUC per task of:

- the automtl front: the synthetic preset's search (space `quick`, TPE, Pareto pruning, the
  preset's baselines enqueued first) with --trials/--epochs; reported: the best validation point
  per objective and the knee of the validation front (test values, never selected on);
- automtl's documented examples (studies/examples/{mmoe,ple,esmm}.yaml): trials 0..2 of that same
  study (enqueued, never pruned, same seed and data), so no second training is needed;
- torch-rechub 0.9.0 MMOE / PLE / ESMM with the settings of its examples/ranking/
  run_ali_ccp_multi_task.py (MMOE 8 experts [16], towers [8], embed 4; PLE 1 level, 2 specific +
  1 shared experts [16], towers [8]; ESMM sparse features only, embed 16, towers [16, 8]; Adam
  lr 1e-3, weight decay 1e-4, batch 1024, 1 epoch, seed 2022), trained on ctr / ctcvr labels;
- on the additive option, a scikit-learn logistic regression on one-hot ids + dense values, one
  for p(click) on all rows and one for p(purchase | click) on clicked rows (p_ctcvr = product:
  the well-specified model), C chosen on the validation split.

cvr_auc is the AUC on clicked test rows of p_ctcvr / p_ctr (ESMM: its CVR output). Compute per
arm: training rows x epochs and wall time (shared 2-core machine: timings are noisy).

    python benchmarks/search_value.py --rows 200000 --trials 20 --epochs 3     # the issue's size
    python benchmarks/search_value.py --rows 20000 --trials 8 --epochs 2 --out /tmp/value.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from sklearn.metrics import roc_auc_score

from automtl.config import DataConfig
from automtl.data import load_dataset
from automtl.data.schema import Dataset
from automtl.search import Store, StudyConfig, open_study, run_search
from automtl.search.selection import parse_selection, select
from automtl.search.study_config import PrunerConfig

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [str(ROOT / "studies" / "examples" / f"{n}.yaml") for n in ("mmoe", "ple", "esmm")]
DATASETS = {"default": {}, "ali-ccp-schema": {"schema": "ali-ccp"}, "additive": {"additive": True}}
METRICS = ("ctr_auc", "cvr_auc", "ctcvr_auc")


def task_aucs(labels: np.ndarray, p_ctr: np.ndarray, p_ctcvr: np.ndarray,
              p_cvr: np.ndarray | None = None) -> dict[str, float]:
    """ctr/ctcvr AUC on all rows, cvr AUC on clicked rows (p_cvr, else p_ctcvr / p_ctr)."""
    clicked = labels[:, 0] > 0.5
    cvr = p_cvr[clicked] if p_cvr is not None else p_ctcvr[clicked] / np.maximum(p_ctr[clicked],
                                                                                   1e-12)
    return {"ctr_auc": float(roc_auc_score(labels[:, 0], p_ctr)),
            "ctcvr_auc": float(roc_auc_score(labels[:, 1], p_ctcvr)),
            "cvr_auc": float(roc_auc_score(labels[clicked, 1], cvr))}


def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC estimated on n_pos positives and n_neg negatives (Hanley &
    McNeil, Radiology 1982, eq. 2): how far apart two arms must be to differ on this test set."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) \
        / max(n_pos * n_neg, 1)
    return float(np.sqrt(max(var, 0.0)))


def test_se(ds: Dataset, aucs: dict[str, float]) -> dict[str, float]:
    """`auc_se` of each task AUC of the test split at the given AUC values."""
    y = ds.splits["test"].labels
    clicked = y[:, 0] > 0.5
    positives = {"ctr_auc": y[:, 0] > 0.5, "ctcvr_auc": y[:, 1] > 0.5,
                 "cvr_auc": y[clicked, 1] > 0.5}
    return {m: auc_se(aucs[m], int(pos.sum()), int((~pos).sum()))
            for m, pos in positives.items() if aucs.get(m) is not None}


def automtl_arms(ds_opts: dict, args: argparse.Namespace, storage: str, name: str) -> list[dict]:
    cfg = StudyConfig(name=name, data=DataConfig("synthetic", options=ds_opts),
                      objectives=["ctr_auc", "cvr_auc"], space="quick", epochs=args.epochs,
                      n_trials=args.trials, sampler="tpe", seed=0,
                      pruner=PrunerConfig(kind="pareto", min_epoch=1, warmup_trials=5),
                      train={"patience": 1}, enqueue=list(EXAMPLES))
    t0 = time.perf_counter()
    result = run_search(cfg, storage=storage, device="cpu")
    seconds = time.perf_counter() - t0
    n_train = int(round(0.8 * ds_opts["rows"]))
    epochs = sum(len(h) for h in Store(storage).epoch_history(name).values())
    out = []
    front = result.front
    picks = {f"front: best val {o}": max(front, key=lambda r, o=o: r.values[o])
             for o in result.objectives}
    picks["front: knee"] = select(front, result.objectives, parse_selection(pick="knee"))
    for label, row in picks.items():
        out.append({"arm": label, "trial": row.trial_number, "test": {m: row.test.get(m)
                                                                      for m in METRICS},
                    "val": row.values, "rows_x_epochs": n_train * epochs, "seconds": seconds,
                    "note": f"whole search: {len(open_study(storage, name).get_trials())} trials,"
                            f" {epochs} epochs"})
    for t in open_study(storage, name).get_trials()[:len(EXAMPLES)]:
        a = t.user_attrs
        out.append({"arm": f"automtl {a['enqueued'].split()[-1]}", "trial": t.number,
                    "test": {m: a.get("test_metrics", {}).get(m) for m in METRICS},
                    "val": dict(zip(result.objectives, t.values or [])),
                    "rows_x_epochs": n_train * a.get("epochs_run", 0),
                    "seconds": a.get("seconds"), "note": t.state.name})
    return out


def rechub_arm(ds: Dataset, model_name: str, epochs: int) -> dict:
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import ESMM, MMOE, PLE
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator

    torch.manual_seed(2022)
    sparse = [f for f in ds.features if f.kind == "sparse"]
    dense = [f for f in ds.features if f.kind == "dense"]

    def inputs(split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        s = ds.splits[split]
        x = {f.name: s.sparse[:, i].astype(np.int64) for i, f in enumerate(sparse)}
        if model_name != "ESMM":
            x.update({f.name: s.dense[:, i].astype(np.float32) for i, f in enumerate(dense)})
        y = s.labels.astype(np.float32)  # [ctr, ctcvr]
        if model_name == "ESMM":  # its label order: cvr (= purchase), ctr, ctcvr
            y = np.column_stack([y[:, 1], y[:, 0], y[:, 1]])
        return x, y

    if model_name == "ESMM":
        item = {"item_id", "category", "shop", "brand", "205", "206", "207", "210", "216", "129"}
        user_f = [SparseFeature(f.name, f.vocab_size, embed_dim=16) for f in sparse
                  if f.name not in item]
        item_f = [SparseFeature(f.name, f.vocab_size, embed_dim=16) for f in sparse
                  if f.name in item]
        model = ESMM(user_f, item_f, cvr_params={"dims": [16, 8]}, ctr_params={"dims": [16, 8]})
        types = ["classification"] * 3
    else:
        feats = [SparseFeature(f.name, f.vocab_size, embed_dim=4) for f in sparse] + \
            [DenseFeature(f.name) for f in dense]
        types = ["classification"] * 2
        towers = [{"dims": [8]}, {"dims": [8]}]
        model = MMOE(feats, types, 8, expert_params={"dims": [16]}, tower_params_list=towers) \
            if model_name == "MMOE" else \
            PLE(feats, types, n_level=1, n_expert_specific=2, n_expert_shared=1,
                expert_params={"dims": [16]}, tower_params_list=towers)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (inputs(s) for s in ("train", "val", "test"))
    train_dl, _, test_dl = DataGenerator(x_tr, y_tr).generate_dataloader(
        x_val=x_va, y_val=y_va, x_test=x_te, y_test=y_te, batch_size=1024)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = MTLTrainer(model, task_types=types,
                             optimizer_params={"lr": 1e-3, "weight_decay": 1e-4}, n_epoch=epochs,
                             earlystop_patience=30, device="cpu", model_path=tmp)
        for _ in range(epochs):
            trainer.train_one_epoch(train_dl)
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        p = torch.cat([model(xb).float() for xb, _ in test_dl]).numpy()
    labels = ds.splits["test"].labels
    test = task_aucs(labels, p[:, 1], p[:, 2], p[:, 0]) if model_name == "ESMM" else \
        task_aucs(labels, p[:, 0], p[:, 1])
    return {"arm": f"torch-rechub {model_name}", "test": test, "seconds": seconds,
            "rows_x_epochs": len(y_tr) * epochs, "note": "examples' settings"}


def logistic_arm(ds: Dataset) -> dict:
    from scipy import sparse as sp
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    splits = {k: ds.splits[k] for k in ("train", "val", "test")}
    enc = OneHotEncoder(handle_unknown="ignore").fit(splits["train"].sparse)

    def design(s) -> sp.csr_matrix:
        return sp.hstack([enc.transform(s.sparse), sp.csr_matrix(s.dense)]).tocsr()

    x = {k: design(s) for k, s in splits.items()}
    y = {k: s.labels for k, s in splits.items()}
    t0 = time.perf_counter()
    best = None
    for c in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
        ctr = LogisticRegression(C=c, max_iter=2000).fit(x["train"], y["train"][:, 0])
        clicked = y["train"][:, 0] > 0.5
        cvr = LogisticRegression(C=c, max_iter=2000).fit(x["train"][clicked],
                                                         y["train"][clicked, 1])

        def predict(k: str):
            pc, pv = ctr.predict_proba(x[k])[:, 1], cvr.predict_proba(x[k])[:, 1]
            return task_aucs(y[k], pc, pc * pv, pv)

        val = predict("val")
        score = (val["ctr_auc"] + val["cvr_auc"]) / 2
        if best is None or score > best[0]:
            best = (score, c, predict("test"), val)
    assert best is not None
    return {"arm": f"logistic regression (C={best[1]:g} on val)", "test": best[2],
            "val": best[3], "seconds": time.perf_counter() - t0,
            "rows_x_epochs": len(y["train"]), "note": "lbfgs, 6 C values"}


def dominated(point: dict, fronts: list[dict]) -> bool:
    """Whether some front pick is >= `point` on test ctr and cvr AUC."""
    return any(all((f["test"][m] or 0) >= (point["test"][m] or 0) for m in ("ctr_auc", "cvr_auc"))
               for f in fronts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--skip-rechub", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{Path(tmp) / 'value.db'}"
        for name in args.datasets.split(","):
            opts = {"rows": args.rows, **DATASETS[name]}
            ds = load_dataset(DataConfig("synthetic", options=opts))
            arms = automtl_arms(opts, args, storage, f"value-{name}")
            if not args.skip_rechub:
                arms += [rechub_arm(ds, m, 1) for m in ("MMOE", "PLE", "ESMM")]
            if DATASETS[name].get("additive"):
                arms.append(logistic_arm(ds))
            fronts = [a for a in arms if a["arm"].startswith("front")]
            base = [a for a in arms if not a["arm"].startswith("front")]
            one = max((a["rows_x_epochs"] for a in base), default=1)
            print(f"\n{name}: {args.rows} rows, {args.trials} trials x <= {args.epochs} epochs")
            print(f"{'arm':36s} {'ctr':>7s} {'cvr':>7s} {'ctcvr':>7s} {'rows x ep':>10s} "
                  f"{'x base':>6s} {'s':>7s}  dominated by front")
            for a in arms:
                t = a["test"]
                dom = "" if a in fronts else ("yes" if dominated(a, fronts) else "NO")
                print(f"{a['arm']:36s} {t['ctr_auc']:7.4f} {t['cvr_auc']:7.4f} "
                      f"{t['ctcvr_auc']:7.4f} {a['rows_x_epochs']:10d} "
                      f"{a['rows_x_epochs'] / one:6.1f} {a['seconds'] or 0:7.1f}  {dom}",
                      flush=True)
            ref = max(fronts, key=lambda a: a["test"]["ctr_auc"] or 0)["test"] if fronts else {}
            se = test_se(ds, {m: v for m, v in ref.items() if v is not None})
            print("standard error of a test AUC at the front's values (Hanley-McNeil): " +
                  ", ".join(f"{m} +-{v:.4f}" for m, v in se.items()), flush=True)
            report[name] = {"arms": arms, "test_se": se}
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "results": report}, indent=2, default=str))


if __name__ == "__main__":
    main()
