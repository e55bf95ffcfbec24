"""The first-order (wide) term and the counting sequence poolings (DIN, sum)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from automtl.config import ModelConfig
from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.models import FeatureEmbedding, SequencePooling, WideTerm, build_model

FEATURES = [FeatureSpec("a", "sparse", vocab_size=6), FeatureSpec("b", "sparse", vocab_size=4),
            FeatureSpec("x", "dense")]


def _additive(n: int = 3000, seed: int = 0) -> tuple[Batch, np.ndarray]:
    g = np.random.default_rng(seed)
    a, b = g.integers(0, 6, n), g.integers(0, 4, n)
    x = g.normal(size=n).astype(np.float32)
    logit = np.array([-1, 0.5, 1, -0.3, 0, 2])[a] + np.array([0.4, -0.8, 0, 1.2])[b] + 0.7 * x - 0.5
    y = (g.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    sparse = torch.tensor(np.stack([a, b], 1), dtype=torch.int32)
    batch = Batch(sparse, torch.tensor(x[:, None]), {}, torch.tensor(y[:, None]))
    return batch, np.column_stack([a, b, x])


def test_wide_term_alone_reproduces_logistic_regression():
    batch, raw = _additive()
    c = 0.5
    enc = OneHotEncoder(categories=[range(6), range(4)], sparse_output=False)
    design = np.column_stack([enc.fit_transform(raw[:, :2]), raw[:, 2]])
    y = batch.labels[:, 0].numpy()
    lr = LogisticRegression(C=c, tol=1e-10, max_iter=10000).fit(design, y)
    want = lr.predict_proba(design)[:, 1]

    torch.manual_seed(0)
    wide = WideTerm(FEATURES, n_tasks=1).double()
    batch.dense = batch.dense.double()
    yt = batch.labels[:, 0].double()
    opt = torch.optim.LBFGS(wide.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logit = wide(batch)[0]
        # sklearn's objective: C * sum(log loss) + ||w||^2 / 2, intercept not penalised
        loss = c * torch.nn.functional.binary_cross_entropy_with_logits(
            logit, yt, reduction="sum") + 0.5 * (wide.weight.square().sum()
                                                 + wide.dense.square().sum())
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    got = torch.sigmoid(wide(batch)[0]).detach().numpy()
    assert np.abs(got - want).max() < 1e-5


def test_wide_term_starts_at_zero_and_adds_to_every_task():
    feats = FEATURES
    tasks = [TaskSpec("ctr", "click"), TaskSpec("ctcvr", "buy", depends_on="ctr",
                                                   cond_name="cvr")]
    batch, _ = _additive(64)
    batch.labels = batch.labels.repeat(1, 2)
    cfg = dict(arch="shared_bottom", bottom_dims=[8], tower_dims=[4], embedding_dim=4)
    torch.manual_seed(0)
    plain = build_model(ModelConfig(**cfg), feats, tasks)
    torch.manual_seed(0)
    wide = build_model(ModelConfig(**cfg, wide=True), feats, tasks)
    assert torch.equal(plain.forward_raw(batch), wide.forward_raw(batch))  # zero init
    with torch.no_grad():
        wide.wide.bias.copy_(torch.tensor([1.0, -2.0]))
    diff = wide.forward_raw(batch) - plain.forward_raw(batch)
    assert torch.allclose(diff, torch.tensor([[1.0], [-2.0]]).expand_as(diff))


SEQ_FEATURES = [FeatureSpec("item", "sparse", vocab_size=20),
                FeatureSpec("hist", "sequence", vocab_size=20, max_len=5, shares_with="item")]


def _seq_batch(target: int, history: list[int], max_len: int = 5) -> Batch:
    hist = torch.zeros(1, max_len, dtype=torch.int32)
    hist[0, :len(history)] = torch.tensor(history, dtype=torch.int32)
    return Batch(torch.tensor([[target]], dtype=torch.int32), torch.zeros(1, 0), {"hist": hist},
                 torch.zeros(1, 1))


@pytest.mark.parametrize("mode", ["din", "sum"])
def test_counting_pools_see_an_added_matching_item(mode: str):
    torch.manual_seed(0)
    emb, pool = FeatureEmbedding(SEQ_FEATURES, 8), SequencePooling(SEQ_FEATURES, 8, mode)
    once = pool(emb(_seq_batch(7, [3, 7, 11])))
    twice = pool(emb(_seq_batch(7, [3, 7, 11, 7])))
    assert not torch.allclose(once, twice, atol=1e-6)
    # the change is exactly the new item's contribution: w(q, e_7) * e_7 (no normalisation)
    e7 = emb.weight[7]
    w = pool.weights(emb(_seq_batch(7, [3, 7, 11, 7])))[0, 0]
    assert torch.allclose(twice - once, (w[3] * e7).view(1, 1, -1), atol=1e-6)
    # mean and softmax attention of [7] and [7, 7] are equal: they cannot count
    for other in ("mean", "target_attention"):
        p = SequencePooling(SEQ_FEATURES, 8, other)
        assert torch.allclose(p(emb(_seq_batch(7, [7]))), p(emb(_seq_batch(7, [7, 7]))),
                              atol=1e-6)


def test_din_is_invariant_to_padding_and_uses_its_activation_unit():
    torch.manual_seed(0)
    emb, pool = FeatureEmbedding(SEQ_FEATURES, 8), SequencePooling(SEQ_FEATURES, 8, "din")
    longer = [SEQ_FEATURES[0], FeatureSpec("hist", "sequence", 20, 9, "item")]
    emb2, pool2 = FeatureEmbedding(longer, 8), SequencePooling(longer, 8, "din")
    emb2.load_state_dict(emb.state_dict())
    pool2.load_state_dict(pool.state_dict())
    short = pool(emb(_seq_batch(4, [1, 4, 9])))
    assert torch.allclose(pool2(emb2(_seq_batch(4, [1, 4, 9], max_len=9))), short, atol=1e-6)
    e = emb(_seq_batch(4, [1, 4, 9]))
    q, k = e.sparse[0, 0], e.sequences[0, 1]
    a = pool.activation_unit(torch.cat([q, k, q - k, q * k]))
    assert torch.allclose(pool.weights(e)[0, 0, 1], a.squeeze(), atol=1e-6)
    assert torch.all(pool.weights(e)[0, 0, 3:] == 0)


def test_plain_head_cvr_auc_with_a_constant_ctcvr_tower_inverts_the_ctr_ranking():
    """README, cvr_auc of plain heads: p_ctcvr constant => the ratio ranks by 1 / p_ctr."""
    from sklearn.metrics import roc_auc_score

    from automtl.train import compute_metrics

    g = np.random.default_rng(0)
    n = 4000
    ctr_logit = g.normal(size=n)
    click = g.random(n) < 1 / (1 + np.exp(-ctr_logit))
    buy = click & (g.random(n) < 1 / (1 + np.exp(-(ctr_logit - 1))))  # correlated with ctr
    labels = np.column_stack([click, buy]).astype(np.float32)
    tasks = [TaskSpec("ctr", "click"), TaskSpec("ctcvr", "buy", depends_on="ctr",
                                                   cond_name="cvr")]
    logits = np.column_stack([ctr_logit, np.full(n, -3.0)])
    cvr = compute_metrics(logits, labels, tasks)["cvr_auc"]
    direct = roc_auc_score(labels[click, 1], ctr_logit[click])
    assert direct > 0.55 and cvr == pytest.approx(1 - direct)


def test_synthetic_additive_option_keeps_the_inputs_and_changes_the_truth():
    from automtl.data import generate_synthetic

    plain = generate_synthetic(rows=2000, seed=1)
    data = generate_synthetic(rows=2000, seed=1, additive=True)
    a, b = plain.splits["train"], data.splits["train"]
    assert np.array_equal(a.sparse, b.sparse) and np.array_equal(a.dense, b.dense)
    assert data.meta["options"]["additive"] is True and "additive" not in plain.meta["options"]
    assert not np.allclose(a.truth, b.truth)
    assert abs(float(b.truth[:, 0].mean()) - 0.12) < 0.02  # calibrated to the click base rate
    again = generate_synthetic(rows=2000, seed=1, additive=True)
    assert np.array_equal(again.splits["train"].truth, b.truth)
