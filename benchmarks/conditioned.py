"""One preference-conditioned trial vs K fixed-weight trials (issue 16).

For each data setting and architecture: train ONE model with `loss.weighting: conditioned`
(Dirichlet-drawn task weights, FiLM on the towers) and read its curve at the K sweep vectors;
train K models with fixed weights at the same K vectors (w = T * r, so r = (1/2, 1/2) is the
default fixed weighting); same architecture, epochs, seed. Reported: hypervolume (2-D, both
objectives maximised) of each set of points on validation and test, against two reference
points (AUC 0.5 on both: "random"; and a tight one just below the worst point of both sets),
the ratio conditioned / fixed, and the training compute (wall seconds; conditioned / one fixed
trial, conditioned / all K).

    python benchmarks/conditioned.py                      # 60k rows, K = 11, 3 epochs
    python benchmarks/conditioned.py --rows 20000 --k 5 --epochs 1 --settings rho0.2  # smoke

Objectives: ctr_auc and cvr_auc (CVR AUC on clicked rows), as in the synthetic preset.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

from automtl.config import DataConfig, TrialConfig, load_trial_config
from automtl.data import load_dataset
from automtl.losses import simplex_grid
from automtl.resources import resource_dir
from automtl.train import fit

OBJ = ("ctr_auc", "cvr_auc")
SETTINGS = {
    "rho0.2": {"rho": 0.2},
    "rho0.8": {"rho": 0.8},
    "ali-ccp-schema": {"schema": "ali-ccp"},
}


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by `points` (maximised) and above `ref`."""
    pts = sorted((p for p in points if p[0] > ref[0] and p[1] > ref[1]), reverse=True)
    area, best_y = 0.0, ref[1]
    for x, y in pts:  # x descending: add the strip [ref_x, x] x [best_y, y]
        if y > best_y:
            area += (x - ref[0]) * (y - best_y)
            best_y = y
    return area


def base_config(arch: str, rows: int, epochs: int, options: dict, small: bool) -> TrialConfig:
    """The shipped example of `arch` on synthetic data; `small`: 4 experts of [128, 64], batch
    1024, lr 3e-3 (the reduced size that fits this shared 2-core machine)."""
    cfg = load_trial_config(resource_dir("studies/examples") / f"{arch}.yaml")
    cfg.data = DataConfig(name="synthetic", options={"rows": rows, "n_tasks": 2, "seed": 0,
                                                     **options})
    cfg.train.epochs, cfg.train.patience, cfg.train.device = epochs, epochs, "cpu"
    if small:
        cfg.model.n_experts, cfg.model.expert_dims = 4, [128, 64]
        cfg.model.n_shared_experts, cfg.model.n_specific_experts = 1, 1
        cfg.train.batch_size, cfg.train.lr = 1024, 3e-3
    return cfg


def fixed_fits(cfg: TrialConfig, ds, grid: list[list[float]], tasks: list[str],
               fixed_cache: str | None, key_parts: list) -> tuple[list, list, list]:
    """The K fixed-weight fits: (val points, test points, seconds each); cached by key."""
    key = json.dumps(key_parts)
    cache = json.loads(Path(fixed_cache).read_text()) if fixed_cache and \
        Path(fixed_cache).is_file() else {}
    if key in cache:  # fixed-weight fits are deterministic on CPU: reuse them across variants
        return ([tuple(p) for p in cache[key][0]], [tuple(p) for p in cache[key][1]],
                cache[key][2])
    f_val, f_test, fixed_s = [], [], []
    for r in grid:
        fx = copy.deepcopy(cfg)
        fx.loss.weighting.scheme = "fixed"
        fx.loss.weighting.weights = {t: len(tasks) * w for t, w in zip(tasks, r)}
        t0 = time.perf_counter()
        out = fit(fx, ds)
        fixed_s.append(time.perf_counter() - t0)
        f_val.append((out.val[OBJ[0]], out.val[OBJ[1]]))
        f_test.append((out.test[OBJ[0]], out.test[OBJ[1]]))
    if fixed_cache:
        cache = json.loads(Path(fixed_cache).read_text()) if Path(fixed_cache).is_file() else {}
        cache[key] = [f_val, f_test, fixed_s]
        Path(fixed_cache).write_text(json.dumps(cache))
    return f_val, f_test, fixed_s


def run(setting: str, arch: str, rows: int, epochs: int, k: int, small: bool = False,
        film: str = "towers", fixed_cache: str | None = None,
        cond_epochs: int | None = None, cond_opts: dict | None = None,
        replicate_seed: int | None = None, show_points: bool = False) -> dict:
    cfg = base_config(arch, rows, epochs, SETTINGS[setting], small)
    ds = load_dataset(cfg.data)
    tasks = [t.name for t in ds.tasks]
    grid = simplex_grid(len(tasks), k)

    cond = copy.deepcopy(cfg)
    cond.loss.weighting.scheme = "conditioned"
    cond.loss.weighting.sweep_points = k
    cond.loss.weighting.select_on = list(OBJ)
    cond.train.epochs = cond.train.patience = cond_epochs or epochs
    sites, _, draw = film.partition(":")
    cond.loss.weighting.film = sites.split("+")
    cond.loss.weighting.draw = draw or "batch"  # type: ignore[assignment]
    for name, value in (cond_opts or {}).items():  # concentration, cosine, film_hidden, lr ...
        if name in ("lr", "batch_size"):
            setattr(cond.train, name, value)
        else:
            setattr(cond.loss.weighting, name, value)
    c_val, c_test, cond_s = [], [], 0.0
    if replicate_seed is None:
        t0 = time.perf_counter()
        res = fit(cond, ds)
        cond_s = time.perf_counter() - t0
        c_val = [(p.val[OBJ[0]], p.val[OBJ[1]]) for p in res.sweep]
        c_test = [(p.test[OBJ[0]], p.test[OBJ[1]]) for p in res.sweep]

    f_val, f_test, fixed_s = fixed_fits(cfg, ds, grid, tasks, fixed_cache,
                                        [setting, arch, rows, epochs, k, small])
    if replicate_seed is not None:  # the noise floor: the K fixed fits again, another seed
        rep = copy.deepcopy(cfg)
        rep.train.seed = replicate_seed
        c_val, c_test, reps = fixed_fits(rep, ds, grid, tasks, fixed_cache,
                                         [setting, arch, rows, epochs, k, small, replicate_seed])
        cond_s = sum(reps)
    if show_points:
        for name, pts in (("conditioned", c_val), ("fixed", f_val)):
            print(f"  {setting} {arch} val {name}: " + " ".join(
                f"({a:.4f},{b:.4f})" for a, b in pts), flush=True)

    row = {"setting": setting, "arch": arch, "cond_s": cond_s, "fixed_s": sum(fixed_s),
           "one_fixed_s": sum(fixed_s) / len(fixed_s)}
    for split, c, f in (("val", c_val, f_val), ("test", c_test, f_test)):
        tight = (min(p[0] for p in c + f) - 0.002, min(p[1] for p in c + f) - 0.002)
        for name, ref in (("rand", (0.5, 0.5)), ("tight", tight)):
            hc, hf = hypervolume(c, ref), hypervolume(f, ref)
            row[f"{split}_{name}"] = (hc, hf, hc / hf if hf > 0 else float("nan"))
        row[f"{split}_best"] = (max(p[0] for p in c), max(p[1] for p in c),
                                max(p[0] for p in f), max(p[1] for p in f))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=60000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=11)
    ap.add_argument("--archs", default="mmoe")
    ap.add_argument("--settings", default="rho0.2,rho0.8,ali-ccp-schema")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="4 experts of [128, 64], batch 1024")
    ap.add_argument("--film", default="towers", help="FiLM sites joined by +, optionally :row for "
                    "per-row draws, e.g. towers+experts:row")
    ap.add_argument("--fixed-cache", default=None, help="JSON file reusing the K fixed fits")
    ap.add_argument("--cond-epochs", type=int, default=None, help="epochs of the conditioned "
                    "trial (default: --epochs)")
    ap.add_argument("--concentration", type=float, default=None, help="Dirichlet alpha")
    ap.add_argument("--cosine", type=float, default=None, help="COSMOS lambda")
    ap.add_argument("--film-hidden", type=int, default=None)
    ap.add_argument("--cond-lr", type=float, default=None, help="lr of the conditioned trial")
    ap.add_argument("--replicate-seed", type=int, default=None, help="noise floor: compare the "
                    "K fixed fits with the K fixed fits at this seed (no conditioned trial)")
    ap.add_argument("--points", action="store_true", help="print every val point")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"rows {args.rows}, epochs {args.epochs}, K {args.k}, threads {args.threads}, "
          f"{'small models' if args.small else 'example configs'}, FiLM on {args.film}; "
          f"objectives {', '.join(OBJ)}; HV ratio = conditioned / K fixed", flush=True)
    print("| setting | arch | split | HV ratio (ref 0.5) | HV ratio (tight ref) | best ctr/cvr "
          "cond | best ctr/cvr fixed | cond s | K fixed s | cond / one fixed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for setting in args.settings.split(","):
        for arch in args.archs.split(","):
            opts = {k: v for k, v in (("concentration", args.concentration),
                                      ("cosine", args.cosine), ("film_hidden", args.film_hidden),
                                      ("lr", args.cond_lr)) if v is not None}
            r = run(setting, arch, args.rows, args.epochs, args.k, args.small, args.film,
                    args.fixed_cache, args.cond_epochs, opts, args.replicate_seed, args.points)
            for split in ("val", "test"):
                b = r[f"{split}_best"]
                print(f"| {setting} | {arch} | {split} | {r[f'{split}_rand'][2]:.3f} | "
                      f"{r[f'{split}_tight'][2]:.3f} | {b[0]:.4f}/{b[1]:.4f} | "
                      f"{b[2]:.4f}/{b[3]:.4f} | {r['cond_s']:.0f} | {r['fixed_s']:.0f} | "
                      f"{r['cond_s'] / r['one_fixed_s']:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
