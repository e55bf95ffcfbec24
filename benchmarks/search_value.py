"""Search value: does the automtl front beat hand-tuned baselines at comparable compute?

On the same data and splits (synthetic default; the Ali-CCP-schema synthetic; the additive option,
whose step logits are sums of per-id and dense effects), compare test AUC per task of:

- the automtl front: the shipped `synthetic` preset's search as is (space `quick`, TPE, its
  budget of 3 baseline trainings: the MMoE example in full, probes at 10% of epoch 1, the best
  probe no slower per row than the baseline retrained in full; automtl/search/budget.py) on
  this data; reported: the best validation point per objective and the knee of the validation
  front (test values, never selected on),
  compute = all its trials' training rows (`TrialMeta.train_passes`) and the process CPU time;
- automtl's documented examples (studies/examples/{mmoe,ple,esmm}.yaml), each trained alone with
  its own settings (`examples` arm); the MMoE one is the unit of compute ("x base");
- torch-rechub 0.9.0 MMOE / PLE / ESMM with the settings of its examples/ranking/
  run_ali_ccp_multi_task.py (MMOE 8 experts [16], towers [8], embed 4; PLE 1 level, 2 specific +
  1 shared experts [16], towers [8]; ESMM sparse features only, embed 16, towers [16, 8]; Adam
  lr 1e-3, weight decay 1e-4, batch 1024, 1 epoch, seed 2022), trained on ctr / ctcvr labels;
- on the additive option, a scikit-learn logistic regression on one-hot ids + dense values, one
  for p(click) on all rows and one for p(purchase | click) on clicked rows (p_ctcvr = product:
  the well-specified model), C chosen on the validation split.

cvr_auc is the AUC on clicked test rows of p_ctcvr / p_ctr (ESMM: its CVR output). Compute per
arm: training rows x epochs, CPU seconds of the process (1 thread) and wall time (a shared machine
inflates wall time). Arms can run in separate processes into one --out file per process (results
for other arms already in the file are kept).

Seeds: `--data-seed` is the synthetic generator's seed (a new draw of the data's parameters and
rows, hence also a new train/val/test split; default = --seed); `--seed` is the study's seed
(TPE sampler and every trial's training seed), the examples' training seed, and torch-rechub's
seed (2022 + seed; its example's 2022 at seed 0). `--preds DIR` keeps every arm's test scores
(DIR/<data>-<rows>-d<data seed>-s<seed>/<arm>.npz; the search's completed trials as
trial_<n>.npz, read back from their checkpoints and checked against the AUCs the study stored)
for a paired bootstrap of AUC differences on the same test rows (benchmarks/paired_auc.py).

    python benchmarks/search_value.py --rows 200000 --out value.json              # the issue's size
    python benchmarks/search_value.py --rows 200000 --datasets default --arms search --out s.json
    python benchmarks/search_value.py --rows 200000 --datasets default --seed 1 --preds preds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
from automtl.config import TrialConfig, from_dict, load_trial_config
from automtl.search import StudyConfig, open_study, run_search
from automtl.search.budget import trial_cost
from automtl.search.selection import parse_selection, select
from automtl.search.study_config import study_preset
from automtl.train.cache import device_split
from automtl.train.device import resolve_precision
from automtl.train.metrics import predict_logits

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling module, however loaded
import paired_auc  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_NAMES = ("mmoe", "ple", "esmm")
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


def preset_config(ds_opts: dict, args: argparse.Namespace, name: str) -> StudyConfig:
    """The shipped `synthetic` preset (its space, sampler, pruner, budget and baselines) on this
    benchmark's data; --trials / --epochs / --budget override the preset only when given."""
    cfg = study_preset("synthetic")
    cfg.name = name
    cfg.seed = args.seed
    cfg.data = DataConfig("synthetic", options={**cfg.data.options, **ds_opts})
    for key in ("epochs", "budget"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.trials is not None:
        cfg.n_trials = args.trials
    return cfg


def save_model_scores(preds: Path | None, arm: str, model: torch.nn.Module, ds: Dataset,
                      cfg: TrialConfig) -> dict[str, float] | None:
    """Test scores of a trained automtl model into preds/<arm>.npz; returns the AUCs they give
    (benchmark's own computation, to check against the AUCs the trainer reported)."""
    if preds is None:
        return None
    cpu = torch.device("cpu")
    logits = predict_logits(model, device_split(ds, "test", cpu), [t.name for t in ds.tasks],
                            cfg.train.eval_batch_size,
                            resolve_precision(cfg.train.precision, cpu)).numpy()
    scores = paired_auc.logit_scores(logits)
    paired_auc.save_scores(preds, arm, scores["ctr"], scores["ctcvr"], scores["cvr"])
    labels = ds.splits["test"].labels
    return task_aucs(labels, scores["ctr"], scores["ctcvr"], np.exp(scores["cvr"]))


def checkpoint_scores(preds: Path, ds: Dataset, trials: list[optuna.trial.FrozenTrial]) -> dict:
    """Every completed trial's checkpoint -> preds/trial_<n>.npz; the largest |AUC - stored test
    AUC| per trial (0 up to float summation order: the scores are the stored model's)."""
    from automtl.models import build_model

    check = {}
    for t in trials:
        path = t.user_attrs.get("checkpoint")
        if t.state.name != "COMPLETE" or not path:
            continue
        cfg = from_dict(TrialConfig, t.user_attrs["config"], where=f"trial {t.number}")
        model = build_model(cfg.model, ds.features, ds.tasks, cfg.loss.weighting)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        aucs = save_model_scores(preds, f"trial_{t.number}", model, ds, cfg)
        stored = t.user_attrs.get("test_metrics", {})
        check[t.number] = max(abs(aucs[m] - stored[m]) for m in METRICS) if aucs else None
    return check


def automtl_arms(ds: Dataset, cfg: StudyConfig, storage: str,
                 preds: Path | None = None) -> list[dict]:
    """The front picks of one default search, and its enqueued baselines (trials 0..k-1)."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_search(cfg, storage=storage, device="cpu", save_checkpoints=preds is not None)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    n_train = len(ds.splits["train"])
    trials = open_study(storage, cfg.name).get_trials()
    rows = sum(trial_rows(t, n_train) for t in trials)
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    check = checkpoint_scores(preds, ds, trials) if preds is not None else {}
    final = [t.number for t in trials if t.state.name == "COMPLETE"
             and str(t.user_attrs.get("enqueued", "")).startswith("final")]
    out = []
    front = result.front
    picks = {f"front: best val {o}": max(front, key=lambda r, o=o: r.values[o])
             for o in result.objectives}
    picks["front: knee"] = select(front, result.objectives, parse_selection(pick="knee"))
    for label, row in picks.items():
        cfg_row = next(t for t in trials if t.number == row.trial_number).user_attrs
        out.append({"arm": label, "trial": row.trial_number,
                    "test": {m: row.test.get(m) for m in METRICS}, "val": row.values,
                    "rows_x_epochs": rows, "seconds": seconds, "cpu_seconds": cpu,
                    "load": os.getloadavg(),
                    "config": cfg_row.get("config"), "final": final, "preds_check": check,
                    "front_trials": sorted({r.trial_number for r in front}),
                    "note": f"whole search: {len(trials)} trials {states}"})
    for t in trials:
        a = t.user_attrs
        if not a.get("enqueued") or t.state.name != "COMPLETE":  # probes stop at the rows rung
            continue
        out.append({"arm": f"automtl {a['enqueued'].removeprefix('baseline ')} (trial {t.number})",
                    "trial": t.number,
                    "test": {m: a.get("test_metrics", {}).get(m) for m in METRICS},
                    "val": dict(zip(result.objectives, t.values or [])),
                    "rows_x_epochs": trial_rows(t, n_train), "seconds": a.get("seconds"),
                    "cpu_seconds": None, "note": t.state.name})
    return out


def trial_rows(trial: optuna.trial.FrozenTrial, n_train: int) -> int:
    """Training rows one trial of the study consumed (`automtl.search.budget`)."""
    return int(round(trial_cost(trial) * n_train))


def example_arm(ds: Dataset, ds_opts: dict, name: str, seed: int = 0,
                preds: Path | None = None) -> dict:
    """One documented example (studies/examples/NAME.yaml) trained alone with its own settings
    (training seed `seed`: the search's seed, so the MMoE one is the search's trial 0)."""
    from automtl.train import fit

    cfg = load_trial_config(ROOT / "studies" / "examples" / f"{name}.yaml")
    cfg.data = DataConfig("synthetic", options={**cfg.data.options, **ds_opts})
    cfg.train.seed = seed
    t0, c0 = time.perf_counter(), time.process_time()
    result = fit(cfg, ds, device="cpu")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    aucs = save_model_scores(preds, f"example_{name}", result.model, ds, cfg)
    return {"preds_check": None if aucs is None else
            max(abs(aucs[m] - result.test[m]) for m in METRICS),
            "arm": f"automtl examples/{name}.yaml (alone)", "test": {m: result.test.get(m)
                                                                     for m in METRICS},
            "val": result.val, "seconds": seconds, "cpu_seconds": cpu,
            "rows_x_epochs": len(ds.splits["train"]) * result.epochs_run,
            "note": f"{result.epochs_run} epochs, best {result.best_epoch}"}


def rechub_arm(ds: Dataset, model_name: str, epochs: int, seed: int = 0,
               preds: Path | None = None) -> dict:
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import ESMM, MMOE, PLE
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator

    torch.manual_seed(2022 + seed)
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
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = MTLTrainer(model, task_types=types,
                             optimizer_params={"lr": 1e-3, "weight_decay": 1e-4}, n_epoch=epochs,
                             earlystop_patience=30, device="cpu", model_path=tmp)
        for _ in range(epochs):
            trainer.train_one_epoch(train_dl)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    model.eval()
    with torch.no_grad():
        p = torch.cat([model(xb).float() for xb, _ in test_dl]).numpy()
    labels = ds.splits["test"].labels
    p = p.astype(np.float64)
    test = task_aucs(labels, p[:, 1], p[:, 2], p[:, 0]) if model_name == "ESMM" else \
        task_aucs(labels, p[:, 0], p[:, 1])
    if preds is not None:  # cvr: ESMM's own output, else p_ctcvr / p_ctr (as task_aucs ranks)
        ctr, ctcvr = (p[:, 1], p[:, 2]) if model_name == "ESMM" else (p[:, 0], p[:, 1])
        cvr = p[:, 0] if model_name == "ESMM" else ctcvr / np.maximum(ctr, 1e-12)
        paired_auc.save_scores(preds, f"rechub_{model_name}", ctr, ctcvr, cvr)
    return {"arm": f"torch-rechub {model_name}", "test": test, "seconds": seconds,
            "cpu_seconds": cpu, "rows_x_epochs": len(y_tr) * epochs, "note": "examples' settings"}


def logistic_arm(ds: Dataset, preds: Path | None = None) -> dict:
    from scipy import sparse as sp
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    splits = {k: ds.splits[k] for k in ("train", "val", "test")}
    enc = OneHotEncoder(handle_unknown="ignore").fit(splits["train"].sparse)

    def design(s) -> sp.csr_matrix:
        return sp.hstack([enc.transform(s.sparse), sp.csr_matrix(s.dense)]).tocsr()

    x = {k: design(s) for k, s in splits.items()}
    y = {k: s.labels for k, s in splits.items()}
    t0, c0 = time.perf_counter(), time.process_time()
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
            if preds is not None:
                pc, pv = ctr.predict_proba(x["test"])[:, 1], cvr.predict_proba(x["test"])[:, 1]
                paired_auc.save_scores(preds, "logistic", pc, pc * pv, pv)
    assert best is not None
    return {"arm": f"logistic regression (C={best[1]:g} on val)", "test": best[2],
            "val": best[3], "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0,
            "rows_x_epochs": len(y["train"]), "note": "lbfgs, 6 C values"}


def dominated(point: dict, fronts: list[dict]) -> bool:
    """Whether some front pick is >= `point` on test ctr and cvr AUC (1e-9: the same model
    trained twice may differ in the last bit of its AUC's summation)."""
    return any(all((f["test"][m] or 0) >= (point["test"][m] or 0) - 1e-9
                   for m in ("ctr_auc", "cvr_auc")) for f in fronts)


ARMS = ("examples", "rechub", "logistic", "search")
UNIT_ARM = "automtl examples/mmoe.yaml (alone)"  # one baseline training: the unit of compute


def print_table(name: str, ds: Dataset, arms: list[dict], unit: dict) -> dict[str, float]:
    """The arms of one data set as a table (ratios against one baseline training); returns the
    Hanley-McNeil standard error of each test AUC at the best front pick's values."""
    fronts = [a for a in arms if a["arm"].startswith("front")]
    print(f"\n{name}: {len(ds.splits['train'])} training rows; one baseline training = "
          f"{unit['rows_x_epochs']:,} rows x epochs, {unit['cpu_seconds']:.0f} CPU-s "
          f"({unit['arm']})")
    print(f"{'arm':44s} {'ctr':>7s} {'cvr':>7s} {'ctcvr':>7s} {'rows x ep':>10s} {'x base':>6s}"
          f" {'CPU s':>7s} {'x CPU':>5s} {'wall s':>7s}  dominated by front")
    for a in arms:
        t = a["test"]
        dom = "" if a in fronts or not fronts else ("yes" if dominated(a, fronts) else "NO")
        cpu = a.get("cpu_seconds")
        print(f"{a['arm'][:44]:44s} {t['ctr_auc']:7.4f} {t['cvr_auc']:7.4f} "
              f"{t['ctcvr_auc']:7.4f} {a['rows_x_epochs']:10d} "
              f"{a['rows_x_epochs'] / unit['rows_x_epochs']:6.2f} "
              f"{cpu if cpu is not None else float('nan'):7.0f} "
              f"{(cpu or float('nan')) / unit['cpu_seconds']:5.2f} {a['seconds'] or 0:7.0f}  {dom}",
              flush=True)
    ref = max(fronts or arms, key=lambda a: a["test"]["ctr_auc"] or 0)["test"]
    se = test_se(ds, {m: v for m, v in ref.items() if v is not None})
    print("standard error of a test AUC (Hanley-McNeil, at the best arm's values): " +
          ", ".join(f"{m} +-{v:.4f}" for m, v in se.items()), flush=True)
    return se


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=None, help="default: the preset's")
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument("--budget", type=float, default=None,
                        help="baseline trainings (default: the preset's)")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--arms", default=",".join(ARMS),
                        help=f"comma list of {', '.join(ARMS)}; results already in --out for "
                             "other arms are kept, so arms can run in separate processes")
    parser.add_argument("--seed", type=int, default=0,
                        help="study seed (sampler, every trial's and the examples' training "
                             "seed; torch-rechub's is 2022 + seed)")
    parser.add_argument("--data-seed", type=int, default=None,
                        help="synthetic data seed (data and split; default: --seed)")
    parser.add_argument("--preds", type=Path, default=None,
                        help="folder for every arm's test scores (paired bootstrap)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--storage", default=None, help="study storage (default: a temp SQLite)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    wanted = args.arms.split(",")
    if args.data_seed is None:
        args.data_seed = args.seed
    report = json.loads(args.out.read_text())["results"] if args.out and args.out.exists() else {}

    def save(name: str, arms: list[dict], ds: Dataset, unit: dict | None) -> None:
        merged = [a for a in report.get(name, {}).get("arms", [])
                  if not any(a["arm"] == b["arm"] for b in arms)] + arms
        report[name] = {"arms": merged, "rows": args.rows, "load": os.getloadavg()}
        if args.out:  # after every arm: a stopped run keeps what finished
            args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                            "results": report}, indent=2, default=str))
        if unit:
            print_table(name, ds, merged, unit)

    with tempfile.TemporaryDirectory() as tmp:
        storage = args.storage or f"sqlite:///{Path(tmp) / 'value.db'}"
        for name in args.datasets.split(","):
            opts = {"rows": args.rows, "seed": args.data_seed, **DATASETS[name]}
            tag = f"{name}-{args.rows}-d{args.data_seed}-s{args.seed}"
            cfg = preset_config(opts, args, f"value-{tag}")
            ds = load_dataset(cfg.data)
            preds = args.preds / tag if args.preds else None
            if preds is not None:
                preds.mkdir(parents=True, exist_ok=True)
                np.savez(preds / "labels.npz", labels=np.asarray(ds.splits["test"].labels))
            for arm in wanted:
                if arm == "examples":
                    new = [example_arm(ds, cfg.data.options, n, args.seed, preds)
                           for n in EXAMPLE_NAMES]
                elif arm == "rechub":
                    new = [rechub_arm(ds, m, 1, args.seed, preds) for m in ("MMOE", "PLE", "ESMM")]
                elif arm == "logistic":
                    if not DATASETS[name].get("additive"):
                        continue
                    new = [logistic_arm(ds, preds)]
                elif arm == "search":
                    new = automtl_arms(ds, cfg, storage, preds)
                else:
                    raise SystemExit(f"--arms: unknown arm {arm!r}; use {', '.join(ARMS)}")
                have = report.get(name, {}).get("arms", []) + new
                unit = next((a for a in have if a["arm"] == UNIT_ARM), None)
                save(name, new, ds, unit)


if __name__ == "__main__":
    main()
