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

import yaml

import torch

from automtl.config import DataConfig, ModelConfig, TrialConfig, load_trial_config
from automtl.data import bayes_auc, load_dataset
from automtl.resources import resource_dir
from automtl.train import fit


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
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_cfg = DataConfig(name="synthetic", options={"rows": args.rows, "n_tasks": args.n_tasks})
    ds = load_dataset(data_cfg)
    bayes = bayes_auc(ds, "test")
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
