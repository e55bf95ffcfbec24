"""Bottoms benchmark: the shared bottom vs the task-specific / adaptive bottoms (issue 8) under
the same MMoE body on the default synthetic data, trained by the one trainer `automtl.train.fit`.

For each variant and seed: val and test AUC of every metric, training samples/s and parameter
count; the table gives mean ± std over seeds and samples/s as a ratio to the shared bottom run in
the same process. Variants: ``shared`` (mean-pooled sequences: the "same body with mean-pooled
sequences" DTRN must beat), ``shared-ta`` (target-attention pooling), ``dtrn-<injection>`` for
ln / qkv / ffn1 / ffn2, ``apem`` (ASRG bottom), ``stem``.

    python benchmarks/bottoms.py                                   # 200k rows, 3 seeds (slow on CPU)
    python benchmarks/bottoms.py --rows 4000 --epochs 1 --seeds 0  # smoke run
    python benchmarks/bottoms.py --markdown table.md               # also write the table

Body and training settings: `studies/examples/mmoe.yaml` when present, else the `ModelConfig` /
`TrainConfig` defaults with arch mmoe (see `benchmarks/quality.py`).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch

from automtl.config import DataConfig, TrialConfig
from automtl.data import bayes_auc, load_dataset
from automtl.models.bottoms import INJECTIONS
from automtl.train import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import example_config  # noqa: E402  (shared helper of the benchmark scripts)

VARIANTS: dict[str, dict[str, object]] = {
    "shared": {"bottom": "shared", "seq_pooling": "mean"},
    "shared-ta": {"bottom": "shared", "seq_pooling": "target_attention"},
    **{f"dtrn-{inj}": {"bottom": "dtrn", "injection": inj} for inj in INJECTIONS},
    "apem": {"bottom": "apem"},
    "stem": {"bottom": "stem"},
}


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--n-tasks", type=int, default=2)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    ap.add_argument("--batch-size", type=int, default=None, help="override train.batch_size")
    ap.add_argument("--lr", type=float, default=None, help="override train.lr")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument("--markdown", default=None, help="write the result table to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant {unknown[0]!r}; use {', '.join(VARIANTS)}")

    data_cfg = DataConfig(name="synthetic", options={"rows": args.rows, "n_tasks": args.n_tasks})
    ds = load_dataset(data_cfg)
    metrics = ds.metric_names()
    base, source = example_config("mmoe")
    base.data = data_cfg
    for key in ("epochs", "batch_size", "lr"):
        if getattr(args, key) is not None:
            setattr(base.train, key, getattr(args, key))
    print(f"data: synthetic (default schema), {args.rows:,} rows, {args.n_tasks} tasks; "
          f"MMoE from {source}; seeds {seeds}; {args.threads} threads", flush=True)

    results: dict[str, dict[str, list[float]]] = {}
    for name in names:
        acc: dict[str, list[float]] = {"samples_per_s": [], "n_params": []}
        for seed in seeds:
            cfg: TrialConfig = copy.deepcopy(base)
            for key, value in VARIANTS[name].items():
                setattr(cfg.model, key, value)
            cfg.model.validate()
            cfg.train.seed = seed
            r = fit(cfg, ds, device=args.device)
            for m in metrics:
                acc.setdefault(f"val:{m}", []).append(r.val[m])
                acc.setdefault(f"test:{m}", []).append(r.test[m])
            acc["samples_per_s"].append(r.samples_per_s)
            acc["n_params"].append(float(r.n_params))
            print(f"  {name:10} seed {seed}: " + " ".join(f"{m}={r.test[m]:.4f}" for m in metrics)
                  + f" | {r.samples_per_s:,.0f} samples/s | best epoch {r.best_epoch}", flush=True)
        results[name] = acc

    bayes = bayes_auc(ds, "test")
    ref = statistics.mean(results[names[0]]["samples_per_s"])
    head = (["bottom"] + [f"val {m}" for m in metrics] + [f"test {m}" for m in metrics]
            + ["samples/s", f"speed vs {names[0]}", "params"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        acc = results[name]
        sps = statistics.mean(acc["samples_per_s"])
        row = ([name] + [_ms(acc[f"val:{m}"]) for m in metrics]
               + [_ms(acc[f"test:{m}"]) for m in metrics]
               + [f"{sps:,.0f}", f"{sps / ref:.2f}x", f"{int(acc['n_params'][0]):,}"])
        lines.append("| " + " | ".join(row) + " |")
    lines.append("| Bayes (truth) | " + " | ".join([""] * len(metrics))
                 + " | " + " | ".join(f"{bayes[m]:.4f}" for m in metrics) + " | | | |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
