"""automtl.binary_metrics equals scikit-learn's roc_auc_score / log_loss (which trial processes
no longer import: SciPy, pandas and pyarrow came with it, ~85 MB per worker)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from automtl.binary_metrics import log_loss, roc_auc


@pytest.mark.parametrize("seed", range(6))
def test_equal_to_sklearn_with_ties_and_extremes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    y = (rng.random(n) < rng.uniform(0.05, 0.95)).astype(np.float32)
    y[0], y[-1] = 0.0, 1.0  # both classes
    score = rng.normal(size=n) + y * rng.uniform(0, 2)
    if seed % 2:  # many exact ties
        score = np.round(score, 1)
    if seed == 5:  # saturated probabilities: the clipping matters
        score = score * 60
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    p = 1.0 / (1.0 + np.exp(-score))
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p, labels=[0.0, 1.0]), rel=1e-12)


def test_exact_small_cases() -> None:
    assert roc_auc(np.array([0, 1]), np.array([0.1, 0.9])) == 1.0
    assert roc_auc(np.array([0, 1]), np.array([0.9, 0.1])) == 0.0
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    # one tie between a positive and a negative counts one half: (1 + 1 + 0.5 + 1) / 4
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.4, 0.8])) == 0.875
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))
    assert np.isnan(log_loss(np.array([]), np.array([])))
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        roc_auc(np.array([0, 1, 1]), np.array([0.2, 0.3]))


def test_training_stack_does_not_import_sklearn() -> None:
    code = ("import sys, automtl.train.loop, automtl.data, automtl.search.distributed; "
            "print(sorted(m for m in ('sklearn', 'scipy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_logloss_of_huge_logits_is_quiet_and_exact():
    """A diverged model's logits (|x| > 709): the sigmoid overflowed exp with a RuntimeWarning
    printed by `automtl train`; the stable form gives the same loss without one."""
    import warnings

    from automtl.data.schema import TaskSpec
    from automtl.train.metrics import compute_metrics

    logits = np.array([[-1000.0], [1000.0], [-3.0], [2.0]])
    labels = np.array([[0.0], [1.0], [1.0], [0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = compute_metrics(logits, labels, [TaskSpec("ctr", "click")])["ctr_logloss"]
    p = np.array([0.0, 1.0, 1 / (1 + np.exp(3.0)), 1 / (1 + np.exp(-2.0))])
    assert got == pytest.approx(sk_log_loss(labels[:, 0], np.clip(p, 1e-15, 1 - 1e-15)), rel=1e-6)
