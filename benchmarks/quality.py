"""Quality check: MMoE and PLE at their example configs on the default synthetic data, against
the Bayes-optimal AUC (the AUC of the true probabilities the generator keeps).

Target (models/trainer issue): every task within 0.02 of the Bayes AUC on the test split.

    python benchmarks/quality.py                         # 200k rows (the default data), 2 threads
    python benchmarks/quality.py --rows 20000 --epochs 1 # smoke run

Configs: `studies/examples/<arch>.yaml` when present (its data section is replaced by the
benchmark's), else the built-in defaults of `ModelConfig` with that arch.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import yaml

import torch

from automtl.config import DataConfig, ModelConfig, TrialConfig, load_trial_config
from automtl.data import bayes_auc, load_dataset
from automtl.resources import resource_dir
from automtl.data.schema import Dataset
from automtl.train import fit
from automtl.train.cache import device_split
from automtl.train.metrics import predict_logits


def example_config(arch: str) -> tuple[TrialConfig, str]:
    """The shipped example config of `arch`, or the built-in default; plus where it came from."""
    path = resource_dir("studies/examples") / f"{arch}.yaml"
    if path.is_file():
        return load_trial_config(path), str(path)
    return TrialConfig(model=ModelConfig(arch=arch)), "built-in defaults"  # type: ignore[arg-type]


def apply_override(cfg: TrialConfig, assignment: str) -> None:
    """Set one `section.field=value` (value parsed as YAML) on `cfg`, e.g. `train.epochs=8`."""
    key, _, raw = assignment.partition("=")
    section, _, name = key.strip().partition(".")
    target = getattr(cfg, section, None)
    if target is None or not name or not hasattr(target, name):
        raise SystemExit(f"--set {assignment}: unknown key {key!r}; use section.field=value")
    value = yaml.safe_load(raw)
    if isinstance(getattr(target, name), float) and isinstance(value, (int, str)):
        value = float(value)  # YAML 1.1 reads "1e-5" as a string
    setattr(target, name, value)


def save_test_logits(model: torch.nn.Module, ds: Dataset, path: str) -> None:
    """The test split's logits [N, T] and labels, so two runs can be compared row by row."""
    split = device_split(ds, "test", next(model.parameters()).device)
    logits = predict_logits(model, split, ds.task_names, 8192).cpu().numpy()
    np.savez(path, logits=logits, labels=np.asarray(ds.splits["test"].labels))


def _hanley_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of one AUC (Hanley & McNeil, Radiology 1982, eq. 2)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) \
        / max(n_pos * n_neg, 1)
    return float(np.sqrt(max(var, 0.0)))


def compare(ds: Dataset, bayes: dict[str, float], paths: list[str], reps: int = 200) -> None:
    """Test AUCs of saved logits with their SEs, and paired differences against the first file
    (bootstrap over test rows: both models see the same resampled rows)."""
    from automtl.train.metrics import compute_metrics

    runs = {p: np.load(p) for p in paths}
    labels = runs[paths[0]]["labels"]
    names = [f"{t.name}_auc" for t in ds.tasks] + \
        [f"{t.cond_name}_auc" for t in ds.tasks if t.cond_name]
    n_pos = {f"{t.name}_auc": int(labels[:, k].sum()) for k, t in enumerate(ds.tasks)}
    n_all = {f"{t.name}_auc": len(labels) for t in ds.tasks}
    for k, t in enumerate(ds.tasks):
        if t.cond_name and t.depends_on:
            rows = labels[:, ds.task_names.index(t.depends_on)] > 0.5
            n_pos[f"{t.cond_name}_auc"], n_all[f"{t.cond_name}_auc"] = \
                int(labels[rows, k].sum()), int(rows.sum())
    rng = np.random.default_rng(0)
    boots = [rng.integers(0, len(labels), len(labels)) for _ in range(reps)]
    draws = {}
    for p, run in runs.items():
        point = compute_metrics(run["logits"], labels, ds.tasks)
        draws[p] = np.array([[compute_metrics(run["logits"][i], labels[i], ds.tasks)[m]
                              for m in names] for i in boots])
        cells = []
        for j, m in enumerate(names):
            cell = (f"{m} {point[m]:.4f}+-{_hanley_se(point[m], n_pos[m], n_all[m] - n_pos[m]):.4f}"
                    f" (gap {bayes[m] - point[m]:.4f})")
            if p != paths[0]:
                base = compute_metrics(runs[paths[0]]["logits"], labels, ds.tasks)[m]
                diff = draws[p][:, j] - draws[paths[0]][:, j]
                cell += f" diff {point[m] - base:+.4f}+-{np.nanstd(diff):.4f}"
            cells.append(cell)
        print(f"{p}: " + "; ".join(cells), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--n-tasks", type=int, default=2)
    ap.add_argument("--archs", default="mmoe,ple")
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' train.epochs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0, help="training seed (the data seed stays 0)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override a config field of every arch, e.g. train.weight_decay=1e-5")
    ap.add_argument("--save-test", default=None, metavar="PREFIX",
                    help="write each arch's test logits to PREFIX<arch>.npz (paired comparisons)")
    ap.add_argument("--compare", default=None, metavar="A.npz,B.npz,...",
                    help="only compare saved test logits (same --rows): AUC +- SE, gap to "
                         "Bayes, and each file minus the first with a paired bootstrap SE")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_cfg = DataConfig(name="synthetic", options={"rows": args.rows, "n_tasks": args.n_tasks})
    ds = load_dataset(data_cfg)
    bayes = bayes_auc(ds, "test")
    if args.compare:
        compare(ds, bayes, args.compare.split(","))
        return 0
    metrics = [m for m in ds.metric_names()]
    print(f"data: synthetic (default schema), {args.rows:,} rows, {args.n_tasks} tasks")
    print(f"{'arch':6} {'metric':10} {'val AUC':>8} {'test AUC':>9} {'Bayes':>7} {'gap':>7} {'ok':>3}")
    worst = 0.0
    for arch in args.archs.split(","):
        cfg, source = example_config(arch)
        cfg.data = data_cfg
        cfg.train.seed = args.seed
        if args.epochs is not None:
            cfg.train.epochs = args.epochs
        for assignment in args.set:
            apply_override(cfg, assignment)
        result = fit(cfg, ds, device=args.device)
        if args.save_test:
            save_test_logits(result.model, ds, f"{args.save_test}{arch}.npz")
        for m in metrics:
            gap = bayes[m] - result.test[m]
            worst = max(worst, gap)
            print(f"{arch:6} {m:10} {result.val[m]:8.4f} {result.test[m]:9.4f} {bayes[m]:7.4f} "
                  f"{gap:7.4f} {'yes' if gap <= 0.02 else 'no':>3}")
        curve = " ".join(f"{r.epoch}:{r.val.get('mean_auc', float('nan')):.4f}"
                         for r in result.history)
        print(f"{arch:6} val mean_auc per epoch: {curve}")
        print(f"{arch:6} ({source}; best epoch {result.best_epoch}/{result.epochs_run}, "
              f"{result.samples_per_s:,.0f} samples/s, {result.n_params:,} params)")
    print(f"largest gap to Bayes AUC: {worst:.4f} (target <= 0.02)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
