"""Binary ROC AUC and log loss in NumPy, equal to scikit-learn's `roc_auc_score` / `log_loss`.

Why not scikit-learn: importing `sklearn.metrics` pulls SciPy, pandas and pyarrow into every
trial process, ~85 MB of private memory per worker (measured with /proc/PID/smaps_rollup; see
benchmarks/RESULTS.md, issue 19) for two short formulas. Same definitions:

- AUC: the area under the ROC curve through the distinct score thresholds (trapezoids, so tied
  scores count one half), computed exactly in integers: sum over thresholds of
  dFP * (TP + TP_prev), divided by 2 * P * N. scikit-learn builds the same curve in floats.
- log loss: probabilities clipped to [eps, 1 - eps] (eps of float64, as scikit-learn does for
  both columns p and 1 - p), mean of -(y log p + (1 - y) log(1 - p)); labels are 0/1.
"""

from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of 0/1 labels `y` ranked by `score`; NaN when only one class is present."""
    y = np.asarray(y).ravel() > 0.5
    score = np.asarray(score, dtype=np.float64).ravel()
    if y.size != score.size:
        raise ValueError(f"roc_auc: {y.size} labels but {score.size} scores")
    pos = int(y.sum())
    neg = y.size - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")[::-1]
    s, t = score[order], y[order]
    last = np.r_[s[1:] != s[:-1], True]  # last row of each run of equal scores
    tps = np.cumsum(t, dtype=np.int64)[last]
    fps = np.flatnonzero(last).astype(np.int64) + 1 - tps
    tp_prev = np.r_[np.int64(0), tps[:-1]]
    d_fp = np.diff(fps, prepend=np.int64(0))
    # exact while P * N * 2 < 2**63 (3 billion rows); beyond, Python integers
    if pos * neg < 2**61:
        twice = int(np.sum(d_fp * (tps + tp_prev), dtype=np.int64))
    else:
        twice = sum(int(a) * int(b) for a, b in zip(d_fp, tps + tp_prev))
    return twice / (2 * pos * neg)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy of 0/1 labels `y` and probabilities `p` (NaN when empty)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.size == 0:
        return float("nan")
    eps = np.finfo(np.float64).eps
    q = np.clip(1.0 - p, eps, 1 - eps)
    p = np.clip(p, eps, 1 - eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = -(np.where(y == 0, np.log(q), 0.0) + np.where(y == 1, np.log(p), 0.0))
    return float(np.mean(loss))


__all__ = ["log_loss", "roc_auc"]
