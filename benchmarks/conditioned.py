"""One preference-conditioned trial vs K fixed-weight trials (issue 16).

For each data setting and architecture: train ONE model with `loss.weighting: conditioned`
(Dirichlet-drawn task weights, FiLM on the bottom by default) and read its curve at the K sweep vectors;
train K models with fixed weights at the same K vectors (w = T * r, so r = (1/2, 1/2) is the
default fixed weighting); same architecture, epochs, seed. Reported: hypervolume (2-D, both
objectives maximised) of each set of points on validation and test, against two reference
points (AUC 0.5 on both: "random"; and a tight one just below the worst point of both sets),
the ratio conditioned / fixed, and the training compute (CPU and wall seconds; conditioned /
one fixed trial; a tiny warm-up fit first, so no timed fit pays the process's start-up).
Variants of the conditioned trial (`--variants`: cosine, normalize, film_hidden, seed ...)
reuse the same K fixed fits; `--replicate-seeds` trains the K fixed fits again at other seeds and
compares them with the first set: the noise floor of the ratio.

    python benchmarks/conditioned.py                      # 60k rows, K = 11, 3 epochs
    python benchmarks/conditioned.py --rows 20000 --k 5 --epochs 1 --settings rho0.2  # smoke
    python benchmarks/conditioned.py --rows 200000 --k 11 --epochs 3 --settings rho0.8 \
        --variants 'base;seed=1;cosine=0.5;film_hidden=8' --replicate-seeds 1 \
        --fixed-cache /tmp/fixed.json --out /tmp/rows.jsonl       # issue 16 at size

Objectives: ctr_auc and cvr_auc (CVR AUC on clicked rows), as in the synthetic preset.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
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


def _fit(cfg: TrialConfig, ds) -> tuple[object, float, float]:
    """fit(cfg, ds) with its wall and CPU seconds (CPU: this process, i.e. one thread's work
    when --threads 1; on a shared machine the wall seconds are load noise, the CPU ones are not)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fit(cfg, ds)
    return out, time.perf_counter() - t0, time.process_time() - c0


def fixed_fits(cfg: TrialConfig, ds, grid: list[list[float]], tasks: list[str],
               fixed_cache: str | None, key_parts: list) -> tuple[list, list, list, list]:
    """The K fixed-weight fits: (val points, test points, wall s each, CPU s each); each fit is
    cached by key and weight vector as soon as it ends (a killed run resumes)."""
    def load() -> dict:
        return json.loads(Path(fixed_cache).read_text()) if fixed_cache and \
            Path(fixed_cache).is_file() else {}

    f_val, f_test, wall, cpu = [], [], [], []
    for r in grid:
        key = json.dumps([*key_parts, r])
        hit = load().get(key)
        if hit is None:  # fixed-weight fits are deterministic on CPU: reuse them across variants
            fx = copy.deepcopy(cfg)
            fx.loss.weighting.scheme = "fixed"
            fx.loss.weighting.weights = {t: len(tasks) * w for t, w in zip(tasks, r)}
            out, w_s, c_s = _fit(fx, ds)
            hit = [[out.val[OBJ[0]], out.val[OBJ[1]]], [out.test[OBJ[0]], out.test[OBJ[1]]],
                   w_s, c_s]
            if fixed_cache:
                cache = load()
                cache[key] = hit
                Path(fixed_cache).write_text(json.dumps(cache))
        f_val.append(tuple(hit[0]))
        f_test.append(tuple(hit[1]))
        wall.append(hit[2])
        cpu.append(hit[3] if len(hit) > 3 else float("nan"))
    return f_val, f_test, wall, cpu


def cond_fit(cfg: TrialConfig, ds, k: int, film: str, opts: dict) -> tuple[list, list, float,
                                                                            float]:
    """One conditioned trial: (val sweep points, test sweep points, wall s, CPU s). `opts`:
    concentration, cosine, film_hidden, draw, film (sites joined by +), lr, batch_size, seed,
    epochs."""
    cond = copy.deepcopy(cfg)
    cond.loss.weighting.scheme = "conditioned"
    cond.loss.weighting.sweep_points = k
    cond.loss.weighting.select_on = list(OBJ)
    sites, _, draw = film.partition(":")
    cond.loss.weighting.film = sites.split("+")
    cond.loss.weighting.draw = draw or "batch"  # type: ignore[assignment]
    for name, value in opts.items():
        if name == "epochs":
            cond.train.epochs = cond.train.patience = int(value)
        elif name in ("lr", "batch_size", "seed"):
            setattr(cond.train, name, value)
        elif name == "film":
            cond.loss.weighting.film = str(value).split("+")
        else:
            setattr(cond.loss.weighting, name, value)
    res, w_s, c_s = _fit(cond, ds)
    return ([(p.val[OBJ[0]], p.val[OBJ[1]]) for p in res.sweep],
            [(p.test[OBJ[0]], p.test[OBJ[1]]) for p in res.sweep], w_s, c_s)


def compare(c_val: list, c_test: list, f_val: list, f_test: list) -> dict:
    """HV ratios (random and tight reference) and best AUCs per split."""
    row: dict = {}
    for split, c, f in (("val", c_val, f_val), ("test", c_test, f_test)):
        tight = (min(p[0] for p in c + f) - 0.002, min(p[1] for p in c + f) - 0.002)
        for name, ref in (("rand", (0.5, 0.5)), ("tight", tight)):
            hc, hf = hypervolume(c, ref), hypervolume(f, ref)
            row[f"{split}_{name}"] = (hc, hf, hc / hf if hf > 0 else float("nan"))
        row[f"{split}_best"] = (max(p[0] for p in c), max(p[1] for p in c),
                                max(p[0] for p in f), max(p[1] for p in f))
    return row


def parse_variants(text: str) -> list[dict]:
    """'base;cosine=0.5;film_hidden=8,seed=1' -> [{}, {cosine: 0.5}, {film_hidden: 8, seed: 1}]."""
    out = []
    for part in text.split(";"):
        opts: dict = {}
        for item in filter(None, (x.strip() for x in part.split(","))):
            if item == "base":
                continue
            name, _, value = item.partition("=")
            try:
                opts[name] = int(value)
            except ValueError:
                try:
                    opts[name] = float(value)
                except ValueError:
                    opts[name] = value
        out.append(opts)
    return out


def warm_up() -> None:
    """One tiny conditioned fit, so that no timed fit pays the process's one-time costs (lazy
    imports, allocator): with every fixed fit cached, the first conditioned fit would."""
    cfg = base_config("mmoe", 2000, 1, {}, True)
    cfg.loss.weighting.scheme = "conditioned"
    fit(cfg, load_dataset(cfg.data))


def run(setting: str, arch: str, rows: int, epochs: int, k: int, small: bool = False,
        film: str = "bottom", fixed_cache: str | None = None,
        variants: list[dict] | None = None, replicate_seeds: tuple[int, ...] = (),
        show_points: bool = False, seed: int = 0) -> list[dict]:
    """One row per conditioned variant (against the K fixed fits at seed 0), then one per
    replicate seed (the K fixed fits at that seed against those at seed 0: the noise floor)."""
    cfg = base_config(arch, rows, epochs, SETTINGS[setting], small)
    cfg.train.seed = seed
    ds = load_dataset(cfg.data)
    tasks = [t.name for t in ds.tasks]
    grid = simplex_grid(len(tasks), k)
    key = [setting, arch, rows, epochs, k, small] + ([f"seed{seed}"] if seed else [])
    f_val, f_test, f_wall, f_cpu = fixed_fits(cfg, ds, grid, tasks, fixed_cache, key)
    one_wall, one_cpu = sum(f_wall) / len(f_wall), sum(f_cpu) / len(f_cpu)
    rows_out = []
    jobs: list[tuple[str, dict | int]] = [("cond", v) for v in variants or [{}]]
    jobs += [("fixed", s) for s in replicate_seeds]
    for kind, spec in jobs:
        if kind == "cond":
            assert isinstance(spec, dict)
            c_val, c_test, c_wall, c_cpu = cond_fit(cfg, ds, k, film, spec)
            label = "conditioned " + (",".join(f"{a}={b}" for a, b in spec.items()) or "base")
        else:
            rep = copy.deepcopy(cfg)
            rep.train.seed = int(spec)  # type: ignore[arg-type]
            c_val, c_test, walls, cpus = fixed_fits(rep, ds, grid, tasks, fixed_cache,
                                                    [*key, spec])
            c_wall, c_cpu = sum(walls), sum(cpus)
            label = f"K fixed, seed {spec}"
        if show_points:
            for name, pts in ((label, c_val), ("fixed", f_val)):
                print(f"  {setting} {arch} val {name}: " + " ".join(
                    f"({a:.4f},{b:.4f})" for a, b in pts), flush=True)
        row = {"setting": setting, "arch": arch, "rows": rows, "epochs": epochs, "k": k,
               "seed": seed, "small": small,
               "film": film, "what": label, "cond_s": c_wall, "cond_cpu": c_cpu,
               "fixed_s": sum(f_wall), "fixed_cpu": sum(f_cpu), "one_fixed_s": one_wall,
               "one_fixed_cpu": one_cpu, "c_val": c_val, "c_test": c_test, "f_val": f_val,
               "f_test": f_test, **compare(c_val, c_test, f_val, f_test)}
        rows_out.append(row)
        yield_row(row)
    return rows_out


OUT: list[Path] = []


def yield_row(r: dict) -> None:
    """Print the row (markdown) and append it to --out as one JSON line as soon as it exists."""
    for split in ("val", "test"):
        b = r[f"{split}_best"]
        print(f"| {r['setting']} | {r['arch']} | {r['what']} | {split} | "
              f"{r[f'{split}_rand'][2]:.3f} | {r[f'{split}_tight'][2]:.3f} | "
              f"{b[0]:.4f}/{b[1]:.4f} | {b[2]:.4f}/{b[3]:.4f} | {r['cond_cpu']:.0f} | "
              f"{r['fixed_cpu']:.0f} | {r['cond_cpu'] / r['one_fixed_cpu']:.2f}x | "
              f"{r['cond_s'] / r['one_fixed_s']:.2f}x |", flush=True)
    if OUT:
        with OUT[0].open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({**r, "load": os.getloadavg()}) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=60000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=11)
    ap.add_argument("--archs", default="mmoe")
    ap.add_argument("--settings", default="rho0.2,rho0.8,ali-ccp-schema")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--small", action="store_true", help="4 experts of [128, 64], batch 1024")
    ap.add_argument("--film", default="bottom", help="FiLM sites joined by +, optionally :row "
                    "for per-row draws, e.g. bottom+experts:row")
    ap.add_argument("--fixed-cache", default=None, help="JSON file reusing the K fixed fits")
    ap.add_argument("--variants", default="base", help="conditioned trials, ';'-separated, each "
                    "a ','-separated list of options (concentration, cosine, normalize, draw, "
                    "film, film_hidden, lr, seed, epochs), e.g. "
                    "'base;cosine=0.5;film_hidden=8;seed=1'")
    ap.add_argument("--replicate-seeds", default="", help="noise floor: the K fixed fits at these "
                    "seeds (comma-separated) against the K fixed fits at seed 0")
    ap.add_argument("--seed", type=int, default=0, help="training seed of every fit (the data "
                    "stay seed 0): a second run at another seed is the noise floor of both sets")
    ap.add_argument("--points", action="store_true", help="print every val point")
    ap.add_argument("--out", type=Path, default=None, help="append every row as a JSON line")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.out:
        OUT.append(args.out)
    print(f"rows {args.rows}, epochs {args.epochs}, K {args.k}, threads {args.threads}, "
          f"{'small models' if args.small else 'example configs'}, FiLM on {args.film}; "
          f"objectives {', '.join(OBJ)}; HV ratio = conditioned / K fixed", flush=True)
    print("| setting | arch | what | split | HV ratio (ref 0.5) | HV ratio (tight ref) | best "
          "ctr/cvr cond | best ctr/cvr fixed | cond CPU s | K fixed CPU s | cond / one fixed "
          "(CPU) | (wall) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    seeds = tuple(int(s) for s in args.replicate_seeds.split(",") if s.strip())
    warm_up()
    for setting in args.settings.split(","):
        for arch in args.archs.split(","):
            run(setting, arch, args.rows, args.epochs, args.k, args.small, args.film,
                args.fixed_cache, parse_variants(args.variants), seeds, args.points, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
