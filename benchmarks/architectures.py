"""Every architecture on the same synthetic data, same sizes, epochs and optimiser, over seeds.

Data: synthetic with 2 and 4 tasks (cascades ctr -> ctcvr; ctr -> ctcart -> ctcvr -> ctreview)
and task correlation rho 0.2 and 0.8 (the MMoE paper's dial). Each architecture gets the same
embedding, layer widths, towers, Adam (lr 2e-3, L2 3e-4), batch size and epochs; its own
structural knobs are set to comparable sizes (see `ARCHS`). Prints, per data set and arch, the
test AUC per task (mean ± std over training seeds), the parameter count and training samples/s,
as a Markdown table (the one in benchmarks/RESULTS.md), and writes the raw runs as JSON.

    python benchmarks/architectures.py                       # 12k rows, 2 epochs, 3 seeds
    python benchmarks/architectures.py --rows 200000 --epochs 3 --out runs.json   # full size
    python benchmarks/architectures.py --position-bias      # MMoE +- YouTube's shallow tower

`--position-bias` compares MMoE with and without the shallow tower on synthetic clicks with a
known position effect (`run_position_bias`): the shallow tower cannot be scored on data without a
position field, and its benefit is measured against the position-free relevance.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch

from automtl.config import (DataConfig, DeepMCPConfig, ModelConfig, ShallowTowerConfig,
                            TrainConfig, TrialConfig)
from automtl.data import DeviceSplit, load_dataset, position_free
from automtl.train import fit

# (row label, model config overrides, train config overrides); shared sizes come from `base_model`
ARCHS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("single", {"arch": "single"}, {}),
    ("shared_bottom", {"arch": "shared_bottom"}, {}),
    ("mmoe", {"arch": "mmoe"}, {}),
    ("ple (2 levels)", {"arch": "ple"}, {}),
    ("aitm", {"arch": "aitm"}, {}),
    ("apem", {"arch": "apem", "transformer_heads": 2}, {}),
    ("dbmtl", {"arch": "dbmtl"}, {}),
    ("snr-trans", {"arch": "snr", "snr_variant": "trans"}, {}),
    ("snr-aver", {"arch": "snr", "snr_variant": "aver"}, {}),
    ("fdn", {"arch": "fdn"}, {}),
    ("mfh", {"arch": "mfh"}, {}),
    # MMoE whose pooled history keeps the item count (MoSE's LSTM and STAN's activity input see
    # the history length; mean pooling normalises it away)
    ("mmoe (sum pooling)", {"arch": "mmoe", "seq_pooling": "sum"}, {}),
    ("mose", {"arch": "mose", "lstm_dim": 32}, {}),
    ("stan", {"arch": "stan"}, {}),
    ("stan - adaptive loss", {"arch": "stan", "stan_adaptive_loss": False}, {}),
    ("mmoe + clippy", {"arch": "mmoe"}, {"optimizer": "clippy", "lr": 0.05}),
    ("mmoe + deepmcp", {"arch": "mmoe", "deepmcp": DeepMCPConfig(dims=[32, 16])}, {}),
]


def base_model(**kw: Any) -> ModelConfig:
    """Sizes every architecture shares (the same budget for each)."""
    base: dict[str, Any] = dict(embedding_dim=8, bottom_dims=[64], expert_dims=[64],
                                tower_dims=[32], n_experts=4, n_levels=2, n_shared_experts=1,
                                n_specific_experts=1, aitm_dim=16, inducing_points=4,
                                ps_layers=1)
    base.update(kw)
    return ModelConfig(**base)


def run(rows: int, epochs: int, seeds: int, archs: list[str] | None,
        device: str = "cpu") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n_tasks in (2, 4):
        for rho in (0.2, 0.8):
            data_cfg = DataConfig(options={"rows": rows, "n_tasks": n_tasks, "rho": rho, "seed": 0})
            data = load_dataset(data_cfg)
            for label, model_kw, train_kw in ARCHS:
                if archs and label.split(" ")[0] not in archs:
                    continue
                for seed in range(seeds):
                    tc = TrainConfig(epochs=epochs, batch_size=512, lr=2e-3, weight_decay=3e-4,
                                     patience=epochs, seed=seed, device=device)
                    for k, v in train_kw.items():
                        setattr(tc, k, v)
                    cfg = TrialConfig(data=data_cfg, model=base_model(**model_kw), train=tc)
                    t0 = time.perf_counter()
                    res = fit(cfg, data)
                    rec = {"n_tasks": n_tasks, "rho": rho, "arch": label, "seed": seed,
                           "test": {t.name: res.test[f"{t.name}_auc"] for t in data.tasks},
                           "params": res.n_params, "samples_per_s": res.samples_per_s,
                           "seconds": time.perf_counter() - t0}
                    out.append(rec)
                    print(json.dumps(rec), file=sys.stderr, flush=True)
    return out


def run_position_bias(rows: int, epochs: int, seeds: int,
                      device: str = "cpu") -> list[dict[str, Any]]:
    """MMoE with and without YouTube's shallow tower on synthetic clicks with a known position
    effect (2 tasks, rho 0.5, option position_bias 1.0). Besides the test AUC against the logged
    (position-biased) labels, the ctr score's AUC against the position-free relevance: the true
    position-free p(click) above its median ("relevance") and the clicks the same impressions get
    without the bias ("free clicks", `position_free`)."""
    from sklearn.metrics import roc_auc_score

    from automtl.train.metrics import predict_logits

    data_cfg = DataConfig(options={"rows": rows, "n_tasks": 2, "rho": 0.5, "seed": 0,
                                   "position_bias": 1.0})
    data = load_dataset(data_cfg)
    free = position_free(data).splits["test"]
    relevant = free.truth[:, 0] > float(sorted(free.truth[:, 0])[len(free.truth) // 2])
    out: list[dict[str, Any]] = []
    for label, tower in (("mmoe", None), ("mmoe + shallow tower", ShallowTowerConfig())):
        for seed in range(seeds):
            tc = TrainConfig(epochs=epochs, batch_size=512, lr=2e-3, weight_decay=3e-4,
                             patience=epochs, seed=seed, device=device)
            cfg = TrialConfig(data=data_cfg, model=base_model(arch="mmoe", shallow_tower=tower),
                              train=tc)
            res = fit(cfg, data)
            on = next(res.model.parameters()).device
            score = predict_logits(res.model, DeviceSplit.from_split(data.splits["test"], on),
                                   data.task_names, 4096)[:, 0].cpu().numpy()
            rec = {"arch": label, "seed": seed,
                   "test": {t.name: res.test[f"{t.name}_auc"] for t in data.tasks},
                   "relevance": float(roc_auc_score(relevant, score)),
                   "free_clicks": float(roc_auc_score(free.labels[:, 0], score)),
                   "params": res.n_params, "samples_per_s": res.samples_per_s}
            out.append(rec)
            print(json.dumps(rec), file=sys.stderr, flush=True)
    return out


def position_table(runs: list[dict[str, Any]]) -> str:
    """Markdown: the shallow-tower comparison, mean ± std over seeds."""
    def cell(v: list[float]) -> str:
        return f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.4f}"

    lines = ["\n**position bias** (2 tasks, rho 0.5, position_bias 1.0; test AUC of the served "
             "model: logged labels, and ctr against the position-free relevance)\n",
             "| model | ctr (logged) | ctcvr (logged) | ctr vs relevance | ctr vs free clicks "
             "| params |", "|---|---|---|---|---|---|"]
    for label in dict.fromkeys(r["arch"] for r in runs):
        rs = [r for r in runs if r["arch"] == label]
        lines.append(f"| {label} | " + " | ".join(cell(v) for v in (
            [r["test"]["ctr"] for r in rs], [r["test"]["ctcvr"] for r in rs],
            [r["relevance"] for r in rs], [r["free_clicks"] for r in rs]))
            + f" | {rs[0]['params']:,} |")
    return "\n".join(lines)


def table(runs: list[dict[str, Any]]) -> str:
    """Markdown: one block per data set, one row per arch, AUC mean ± std per task."""
    lines = []
    keys = sorted({(r["n_tasks"], r["rho"]) for r in runs})
    for n_tasks, rho in keys:
        block = [r for r in runs if (r["n_tasks"], r["rho"]) == (n_tasks, rho)]
        tasks = list(block[0]["test"])
        lines += [f"\n**{n_tasks} tasks, rho {rho}** (test AUC, mean ± std over "
                  f"{len({r['seed'] for r in block})} seeds)\n",
                  "| arch | " + " | ".join(tasks) + " | mean | params | samples/s |",
                  "|---|" + "---|" * (len(tasks) + 3)]
        for label in dict.fromkeys(r["arch"] for r in block):
            rs = [r for r in block if r["arch"] == label]
            cells = []
            for t in tasks:
                v = [r["test"][t] for r in rs]
                sd = statistics.stdev(v) if len(v) > 1 else 0.0
                cells.append(f"{statistics.mean(v):.4f} ± {sd:.4f}")
            mean = statistics.mean(statistics.mean(r["test"].values()) for r in rs)
            sps = statistics.median(r["samples_per_s"] for r in rs)
            lines.append(f"| {label} | " + " | ".join(cells)
                         + f" | {mean:.4f} | {rs[0]['params']:,} | {sps:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=12_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--archs", default="", help="comma-separated subset of row labels' first word")
    ap.add_argument("--out", default="", help="write the raw runs as JSON here")
    ap.add_argument("--from-json", default="", help="only print the table of a saved run")
    ap.add_argument("--position-bias", action="store_true",
                    help="only the shallow-tower comparison on position-biased clicks")
    args = ap.parse_args(argv)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as fh:
            print(table(json.load(fh)))
        return 0
    torch.set_num_threads(args.threads)
    if args.position_bias:
        pruns = run_position_bias(args.rows, args.epochs, args.seeds, args.device)
        print(f"rows {args.rows}, epochs {args.epochs}, seeds {args.seeds}, "
              f"threads {args.threads}")
        print(position_table(pruns))
        return 0
    runs = run(args.rows, args.epochs, args.seeds,
               [a for a in args.archs.split(",") if a] or None, args.device)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(runs, fh)
    print(f"rows {args.rows}, epochs {args.epochs}, seeds {args.seeds}, threads {args.threads}, "
          f"device {args.device}")
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
