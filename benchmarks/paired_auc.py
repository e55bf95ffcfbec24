"""Paired bootstrap of test-AUC differences between arms scored on the same test rows.

`benchmarks/search_value.py --preds DIR` writes one `<arm>.npz` per arm (scores per task on every
test row: `ctr`, `ctcvr`, and `cvr`, a score whose order on clicked rows is the arm's CVR ranking)
and `labels.npz` (the test labels [N, 2]: click, purchase) into DIR; benchmarks/additive_lr.py's
<arm>.npz (p_ctr / p_cvr / p_ctcvr) may be copied in when its data options are the same. This
module resamples the test rows with replacement B times and computes every arm's AUCs on each
resample, the same resample for every arm, so a difference between two arms keeps only the noise
that is not shared
(the "paired" bootstrap; Hanley-McNeil standard errors of single AUCs, as in RESULTS.md, ignore
the shared part and overstate the noise of a difference). cvr AUC is over the resample's clicked
rows. Reported: the 95% percentile interval of (arm - reference) per task, and how often the front
dominates each baseline (some front arm >= on ctr and cvr AUC) across resamples.

A resample is a vector of row counts (multinomial weights), and AUC with weights is the
Mann-Whitney statistic with weighted pairs (ties count one half), computed in O(N) per resample
from one sort per arm.

    python benchmarks/paired_auc.py DIR --front front_final --reference best --boot 2000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TASKS = ("ctr", "cvr", "ctcvr")


def save_scores(folder: Path, arm: str, ctr: np.ndarray, ctcvr: np.ndarray,
                cvr: np.ndarray) -> Path:
    """One arm's test scores (float64, one per test row) as `folder/<arm>.npz`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arm}.npz"
    np.savez(path, **{k: np.asarray(v, dtype=np.float64).ravel()
                      for k, v in (("ctr", ctr), ("ctcvr", ctcvr), ("cvr", cvr))})
    return path


def logit_scores(logits: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of an automtl model from its [N, 2] logits, ranked as automtl's metrics rank them
    (cvr: log p_ctcvr - log p_ctr, automtl.train.metrics.compute_metrics)."""
    x = np.asarray(logits, dtype=np.float64)
    log_sig = -np.logaddexp(0.0, -x)
    return {"ctr": x[:, 0], "ctcvr": x[:, 1], "cvr": log_sig[:, 1] - log_sig[:, 0]}


class _Ranked:
    """One score vector, sorted once: its tie groups in ascending score order."""

    def __init__(self, score: np.ndarray, y: np.ndarray) -> None:
        order = np.argsort(score, kind="mergesort")
        _, group = np.unique(score[order], return_inverse=True)
        self.order, self.group, self.n_groups = order, group, int(group.max()) + 1 if len(group) \
            else 0
        self.pos = y[order] > 0.5

    def auc(self, w: np.ndarray) -> float:
        """Weighted Mann-Whitney AUC: P(score_pos > score_neg) + P(tie) / 2 over weighted pairs."""
        wo = w[self.order]
        pos = np.bincount(self.group, weights=np.where(self.pos, wo, 0.0), minlength=self.n_groups)
        neg = np.bincount(self.group, weights=np.where(self.pos, 0.0, wo), minlength=self.n_groups)
        below = np.cumsum(neg) - neg
        total = pos.sum() * neg.sum()
        return float((pos * (below + 0.5 * neg)).sum() / total) if total > 0 else float("nan")


class _Arm:
    """One arm's three score vectors, ranked once (cvr over the clicked rows)."""

    def __init__(self, scores: dict[str, np.ndarray], labels: np.ndarray) -> None:
        self.clicked = labels[:, 0] > 0.5
        self.ranked = {"ctr": _Ranked(scores["ctr"], labels[:, 0]),
                       "cvr": _Ranked(scores["cvr"][self.clicked], labels[self.clicked, 1]),
                       "ctcvr": _Ranked(scores["ctcvr"], labels[:, 1])}

    def aucs(self, w: np.ndarray) -> list[float]:
        """(ctr, cvr, ctcvr) AUC with row weights `w`."""
        return [self.ranked[t].auc(w[self.clicked] if t == "cvr" else w) for t in TASKS]


def bootstrap_aucs(arms: dict[str, dict[str, np.ndarray]], labels: np.ndarray, boot: int,
                   seed: int) -> dict[str, np.ndarray]:
    """[boot + 1, 3] AUCs (ctr, cvr, ctcvr) per arm: row 0 on the test split itself, then on
    `boot` resamples of its rows with replacement, the same resamples for every arm."""
    ranked = {a: _Arm(s, labels) for a, s in arms.items()}
    rng = np.random.default_rng(seed)
    n = len(labels)
    out: dict[str, list[list[float]]] = {a: [] for a in arms}
    for b in range(boot + 1):
        w = np.ones(n) if b == 0 else np.bincount(rng.integers(0, n, n), minlength=n) \
            .astype(np.float64)
        for a, r in ranked.items():
            out[a].append(r.aucs(w))
    return {a: np.array(v) for a, v in out.items()}


# benchmarks/additive_lr.py's names for the same scores (its <arm>.npz can be copied in)
_KEYS = {"p_ctr": "ctr", "p_cvr": "cvr", "p_ctcvr": "ctcvr"}


def load_folder(folder: Path) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    labels = np.load(folder / "labels.npz")["labels"]
    arms = {p.stem: {_KEYS.get(k, k): v for k, v in np.load(p).items()}
            for p in sorted(folder.glob("*.npz")) if p.stem != "labels"}
    return labels, arms


def paired(folder: Path, front: list[str], baselines: list[str] | None, boot: int,
           seed: int = 0) -> dict:
    """Point AUCs, 95% intervals of (each front arm - each baseline and - the best baseline per
    task), and the share of resamples in which the front dominates each baseline."""
    labels, arms = load_folder(folder)
    missing = [a for a in front + (baselines or []) if a not in arms]
    if missing:
        raise SystemExit(f"{folder}: no scores for {', '.join(missing)}; have {', '.join(arms)}")
    base = baselines if baselines is not None else [a for a in arms if a not in front]
    auc = bootstrap_aucs({a: arms[a] for a in front + base}, labels, boot, seed)
    point = {a: dict(zip(TASKS, v[0].round(6).tolist())) for a, v in auc.items()}

    def interval(d: np.ndarray) -> dict[str, list[float]]:
        lo, hi = np.percentile(d[1:], [2.5, 97.5], axis=0)
        return {t: [round(float(d[0, i]), 5), round(float(lo[i]), 5), round(float(hi[i]), 5)]
                for i, t in enumerate(TASKS)}

    # the best baseline per task on the test split itself (as the tables pick it), held fixed
    best = {t: max(base, key=lambda a, i=i: auc[a][0, i]) for i, t in enumerate(TASKS)}
    best_auc = np.stack([auc[best[t]][:, i] for i, t in enumerate(TASKS)], axis=1)
    diffs = {f: {"best": interval(auc[f] - best_auc),
                 **{b: interval(auc[f] - auc[b]) for b in base}} for f in front}
    stack = np.stack([auc[f][:, :2] for f in front])  # [F, B+1, (ctr, cvr)]
    dom = {b: float(np.mean((stack[:, 1:] >= auc[b][None, 1:, :2] - 1e-12).all(axis=2)
                            .any(axis=0))) for b in base}
    all_dom = np.ones(boot, dtype=bool)
    for b in base:
        all_dom &= (stack[:, 1:] >= auc[b][None, 1:, :2] - 1e-12).all(axis=2).any(axis=0)
    on_test = {b: bool((stack[:, 0] >= auc[b][0, :2] - 1e-12).all(axis=1).any()) for b in base}
    return {"rows": int(len(labels)), "boot": boot, "point": point, "best_baseline": best,
            "diff": diffs, "dominated_on_test": on_test, "dominated_share": dom,
            "all_dominated_share": float(all_dom.mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--front", required=True, help="comma list of the front's arms")
    ap.add_argument("--baselines", default=None, help="comma list (default: every other arm)")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    res = paired(args.folder, args.front.split(","),
                 args.baselines.split(",") if args.baselines else None, args.boot, args.seed)
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
    print(f"{res['rows']:,} test rows, {res['boot']} paired resamples; best baseline per task: "
          + ", ".join(f"{t} {a}" for t, a in res["best_baseline"].items()))
    for f, per in res["diff"].items():
        for b, d in per.items():
            print(f"{f} - {b}: " + "  ".join(f"{t} {v[0]:+.4f} [{v[1]:+.4f}, {v[2]:+.4f}]"
                                            for t, v in d.items()))
    print("front dominates (ctr and cvr) on test / share of resamples: " + ", ".join(
        f"{b} {'yes' if res['dominated_on_test'][b] else 'NO'} {s:.2f}"
        for b, s in res["dominated_share"].items())
          + f"; all at once {res['all_dominated_share']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
