"""Tests of automtl.models: blocks, fused embedding/pooling, every architecture, the ESMM head."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from automtl.config import ModelConfig
from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import ConfigError
from automtl.models import (
    ARCHS,
    ESMMHead,
    FeatureEmbedding,
    SequencePooling,
    build_model,
    count_parameters,
    mix_experts,
)
from automtl.models.archs.mmoe import MMoE
from automtl.models.archs.ple import PLE


pytestmark = pytest.mark.usefixtures("one_thread")


BODIES = ["single", "shared_bottom", "mmoe", "ple", "aitm"]

FEATURES = [
    FeatureSpec("user", "sparse", vocab_size=30),
    FeatureSpec("item", "sparse", vocab_size=40),
    FeatureSpec("cat", "sparse", vocab_size=8),
    FeatureSpec("price", "dense"),
    FeatureSpec("age", "dense"),
    FeatureSpec("hist_items", "sequence", vocab_size=40, max_len=6, shares_with="item"),
    FeatureSpec("hist_cats", "sequence", vocab_size=8, max_len=4, shares_with="cat"),
    FeatureSpec("queries", "sequence", vocab_size=12, max_len=3),  # own rows, learned query
]
TASKS = {
    2: [TaskSpec("ctr", "click"), TaskSpec("ctcvr", "purchase", depends_on="ctr", cond_name="cvr")],
    3: [
        TaskSpec("ctr", "click"),
        TaskSpec("ctcart", "cart", depends_on="ctr", cond_name="cart"),
        TaskSpec("ctcvr", "purchase", depends_on="ctcart", cond_name="cvr"),
    ],
    4: [  # synthetic n_tasks=4 (studies/examples/mfh.yaml)
        TaskSpec("ctr", "click"),
        TaskSpec("ctcart", "cart", depends_on="ctr", cond_name="cart"),
        TaskSpec("ctcvr", "purchase", depends_on="ctcart", cond_name="cvr"),
        TaskSpec("ctreview", "review", depends_on="ctcvr", cond_name="review"),
    ],
}
NO_CASCADE = [TaskSpec("income", "income"), TaskSpec("married", "married")]


def small_cfg(**kw) -> ModelConfig:
    base = dict(
        embedding_dim=8,
        bottom_dims=[32],
        expert_dims=[32, 16],
        tower_dims=[16],
        n_experts=3,
        n_levels=2,
        n_shared_experts=1,
        n_specific_experts=1,
        aitm_dim=8,
    )
    base.update(kw)
    return ModelConfig(**base)


def make_batch(n: int, n_tasks: int, seed: int = 0) -> Batch:
    """Rows whose cascade labels depend on item, the category overlap of the history and price."""
    g = np.random.default_rng(seed)
    user = g.integers(1, 30, n)
    item = g.integers(1, 40, n)
    cat = item % 7 + 1
    lens = g.integers(0, 7, n)
    hist_items = g.integers(1, 40, (n, 6)) * (np.arange(6) < lens[:, None])
    hist_cats = (hist_items[:, :4] % 7 + 1) * (hist_items[:, :4] > 0)
    queries = g.integers(0, 12, (n, 3))
    dense = g.normal(size=(n, 2)).astype(np.float32)
    item_eff = np.random.default_rng(99).normal(0, 1.5, 40)
    overlap = (hist_cats == cat[:, None]).sum(1)
    logits = [
        item_eff[item] + 1.5 * overlap + dense[:, 0],
        2.0 * dense[:, 1] + 1.0,
        1.5 * overlap - 2.0 * dense[:, 0] + 1.0,
        dense[:, 1] + 1.0,
    ]
    labels = np.zeros((n, n_tasks), np.float32)
    reached = np.ones(n, bool)
    for k in range(n_tasks):
        reached &= g.random(n) < 1.0 / (1.0 + np.exp(-logits[k]))
        labels[:, k] = reached
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a).astype(np.int32))
    return Batch(
        sparse=t(np.stack([user, item, cat], 1)),
        dense=torch.from_numpy(dense),
        sequences={"hist_items": t(hist_items), "hist_cats": t(hist_cats), "queries": t(queries)},
        labels=torch.from_numpy(labels),
    )


def rows(b: Batch, sl: slice) -> Batch:
    return Batch(
        b.sparse[sl], b.dense[sl], {k: v[sl] for k, v in b.sequences.items()}, b.labels[sl]
    )


@pytest.mark.parametrize("n_tasks", [2, 3])
@pytest.mark.parametrize("arch", BODIES)
@pytest.mark.parametrize("head", ["plain", "esmm"])
def test_forward_backward_every_parameter_gets_a_gradient(
    arch: str, n_tasks: int, head: str
) -> None:
    torch.manual_seed(0)
    pooling = "target_attention" if n_tasks == 3 else "mean"
    model = build_model(
        small_cfg(arch=arch, head=head, seq_pooling=pooling), FEATURES, TASKS[n_tasks]
    )
    batch = make_batch(64, n_tasks)
    out = model(batch)
    assert list(out) == [t.name for t in TASKS[n_tasks]] == model.task_names
    assert all(v.shape == (64,) and torch.isfinite(v).all() for v in out.values())
    logits = torch.stack(list(out.values()), 1)
    F.binary_cross_entropy_with_logits(logits, batch.labels).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def _auc_after_training(arch: str, n_tasks: int, head: str = "plain") -> list[float]:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch=arch, head=head), FEATURES, TASKS[n_tasks])
    data = make_batch(3072, n_tasks, seed=1)
    train, val = rows(data, slice(0, 2048)), rows(data, slice(2048, None))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        perm = torch.randperm(2048, generator=gen)
        for i in range(0, 2048, 256):
            b = rows(train, perm[i : i + 256])
            loss = F.binary_cross_entropy_with_logits(model.forward_tensor(b), b.labels.t())
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model.forward_tensor(val)
    return [roc_auc_score(val.labels[:, k].numpy(), pred[k].numpy()) for k in range(n_tasks)]


@pytest.mark.parametrize("n_tasks", [2, 3])
@pytest.mark.parametrize("arch", BODIES)
def test_short_training_learns_every_task(arch: str, n_tasks: int) -> None:
    aucs = _auc_after_training(arch, n_tasks, head="esmm" if arch == "mmoe" else "plain")
    assert min(aucs) > 0.62, aucs


def test_esmm_head_is_the_product_of_the_cascade() -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="mmoe", head="esmm"), FEATURES, TASKS[3])
    batch = make_batch(32, 3)
    with torch.no_grad():
        raw = model.forward_raw(batch).double()
        out = model(batch)
    p_ctr, p_cart, p_cvr = torch.sigmoid(raw)
    assert torch.allclose(torch.sigmoid(out["ctr"].double()), p_ctr, atol=1e-6)
    assert torch.allclose(torch.sigmoid(out["ctcart"].double()), p_ctr * p_cart, atol=1e-6)
    assert torch.allclose(torch.sigmoid(out["ctcvr"].double()), p_ctr * p_cart * p_cvr, atol=1e-6)


def test_esmm_logit_is_exact_for_tiny_and_huge_probabilities() -> None:
    head = ESMMHead(TASKS[2])
    raw = torch.tensor(
        [[-20.0, -3.0, 0.0, 8.0, 40.0], [-25.0, 2.0, 0.0, 30.0, 40.0]], requires_grad=True
    )
    out = head(raw)
    assert torch.isfinite(out).all()
    logp = F.logsigmoid(raw[0].double()) + F.logsigmoid(raw[1].double())
    want = logp - torch.log(-torch.expm1(logp))
    # p = 1 - 1e-12 is clamped just below 1; everywhere else the logit is exact
    assert torch.allclose(out[1, :3].double(), want[:3], rtol=1e-5, atol=1e-4)
    assert out[1, 4] > 15
    out.sum().backward()
    assert torch.isfinite(raw.grad).all()


@pytest.mark.parametrize("shared_input", [True, False])
def test_mmoe_gate_rows_sum_to_one(shared_input: bool) -> None:
    torch.manual_seed(0)
    body = MMoE(small_cfg(n_experts=5), 12, TASKS[3])
    x = torch.randn(7, 12) if shared_input else [torch.randn(7, 12) for _ in range(3)]
    assert body(x).shape == (3, 7)
    assert body.last_gates is not None and body.last_gates.shape == (3, 7, 5)
    assert torch.allclose(body.last_gates.sum(-1), torch.ones(3, 7))
    assert (body.last_gates > 0).all()


def _mlp_params(d_in: int, dims: list[int]) -> int:
    total = 0
    for d in dims:
        total += d_in * d + d
        d_in = d
    return total


@pytest.mark.parametrize(
    "n_levels,m_s,m_k,n_tasks", [(1, 2, 2, 2), (2, 2, 2, 2), (3, 1, 3, 3), (2, 3, 0, 3)]
)
def test_ple_parameter_counts_match_configured_experts(
    n_levels: int, m_s: int, m_k: int, n_tasks: int
) -> None:
    cfg = small_cfg(
        n_levels=n_levels, n_shared_experts=m_s, n_specific_experts=m_k, expert_dims=[24, 16]
    )
    d_in = 40
    body = PLE(cfg, d_in, TASKS[n_tasks])
    assert len(body.levels) == n_levels
    for j, level in enumerate(body.levels):
        level_in = d_in if j == 0 else 16
        n_exp = n_tasks * m_k + m_s
        assert level.n_experts == n_exp
        assert count_parameters(level.experts) == n_exp * _mlp_params(level_in, [24, 16])
        assert count_parameters(level.task_gates) == n_tasks * (level_in * (m_k + m_s) + m_k + m_s)
        last = j == n_levels - 1
        assert (level.shared_gate is None) == last  # CGC / last level: no shared gate
        want = count_parameters(level.experts) + count_parameters(level.task_gates)
        want += 0 if last else level_in * n_exp + n_exp
        assert count_parameters(level) == want
    towers = n_tasks * _mlp_params(16, [16, 1])
    assert count_parameters(body) == sum(count_parameters(lv) for lv in body.levels) + towers


def test_ple_task_gate_only_sees_own_and_shared_experts() -> None:
    torch.manual_seed(0)
    body = PLE(small_cfg(n_levels=1, n_shared_experts=1, n_specific_experts=2), 10, TASKS[2])
    x = torch.randn(5, 10)
    base = body(x)
    with torch.no_grad():  # task 1's specific experts are members 2 and 3 of the bank
        body.levels[0].experts.net[0].weight[2:4].add_(1.0)
    changed = body(x)
    assert torch.equal(base[0], changed[0])
    assert not torch.allclose(base[1], changed[1])


@pytest.mark.parametrize("arch", BODIES)
def test_every_body_accepts_per_task_inputs(arch: str) -> None:
    torch.manual_seed(0)
    body = ARCHS[arch](small_cfg(), 20, TASKS[3])
    x = torch.randn(9, 20)
    shared = body(x)
    # identical per-task inputs reproduce the shared-input path (list and stacked forms)
    assert torch.allclose(body([x, x, x]), shared, atol=1e-6)
    assert torch.allclose(body(x.expand(3, 9, 20)), shared, atol=1e-6)
    xs = [torch.randn(9, 20) for _ in range(3)]
    per_task = body(xs)
    assert per_task.shape == (3, 9)
    assert torch.allclose(body(torch.stack(xs)), per_task, atol=1e-6)
    assert not torch.allclose(per_task, shared)
    if arch in ("single", "shared_bottom", "mmoe"):  # these read only their own task's input
        xs2 = [xs[0], xs[1], torch.randn(9, 20)]
        moved = body(xs2)
        assert torch.allclose(moved[:2], per_task[:2], atol=1e-6)
        assert not torch.allclose(moved[2], per_task[2])


def test_mix_experts_matches_the_gate_weighted_sum() -> None:
    g = torch.softmax(torch.randn(2, 5, 4), -1)
    e = torch.randn(4, 5, 3)
    want = torch.stack([sum(g[t, :, i : i + 1] * e[i] for i in range(4)) for t in range(2)])
    assert torch.allclose(mix_experts(g, e), want, atol=1e-6)


def test_fused_embedding_shares_rows_and_does_one_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    emb = FeatureEmbedding(FEATURES, 4)
    assert [n for n, _ in emb.named_parameters()] == ["weight"]
    assert emb.weight.shape == (30 + 40 + 8 + 12, 4)  # sequences sharing a field add no rows
    batch = make_batch(16, 2)
    calls = []
    import automtl.models.embedding as embedding_module

    real = embedding_module.embedding_lookup
    monkeypatch.setattr(embedding_module, "embedding_lookup",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    out = emb(batch)
    assert len(calls) == 1
    assert out.sparse.shape == (16, 3, 4) and out.sequences.shape == (16, 13, 4)
    # hist_items position 0 uses the item field's rows
    item_ids = batch.sequences["hist_items"][:, 0].long()
    assert torch.equal(out.sequences[:, 0], emb.weight[30 + item_ids])
    assert torch.equal(
        out.mask,
        torch.cat([batch.sequences[k] for k in ("hist_items", "hist_cats", "queries")], 1) != 0,
    )


@pytest.mark.parametrize("mode", ["mean", "sum", "target_attention", "din"])
def test_pooling_ignores_padding(mode: str) -> None:
    torch.manual_seed(0)
    emb = FeatureEmbedding(FEATURES, 4)
    pool = SequencePooling(FEATURES, 4, mode)
    batch = make_batch(32, 2)
    batch.sequences["hist_items"][0] = 0  # one all-padding sequence
    before = pool(emb(batch))
    assert torch.isfinite(before).all()
    assert torch.equal(before[0, 0], torch.zeros(4))
    # padding id 0 maps to row 0 of each shared field (and of the free sequence): change those rows
    with torch.no_grad():
        for row in (30, 70, 78):
            emb.weight[row].normal_(0, 10.0)
    assert torch.allclose(pool(emb(batch)), before, atol=1e-6)
    # longer max_len with extra padding gives the same pooled vector
    feats = [
        f if f.name != "hist_items" else FeatureSpec("hist_items", "sequence", 40, 9, "item")
        for f in FEATURES
    ]
    emb2, pool2 = FeatureEmbedding(feats, 4), SequencePooling(feats, 4, mode)
    emb2.load_state_dict(emb.state_dict())
    if mode in ("target_attention", "din"):
        pool2.load_state_dict(pool.state_dict())
    padded = rows(batch, slice(None))
    padded.sequences = dict(
        batch.sequences, hist_items=F.pad(batch.sequences["hist_items"], (0, 3))
    )
    assert torch.allclose(pool2(emb2(padded)), before, atol=1e-6)


def test_target_attention_weights_follow_the_target() -> None:
    pool = SequencePooling(FEATURES, 4, "target_attention")
    emb = FeatureEmbedding(FEATURES, 4)
    batch = make_batch(8, 2)
    e = emb(batch)
    w = pool.weights(e)  # [B, S, L]
    valid = e.mask.unsqueeze(1) & pool.segments
    assert torch.all(w[~valid] == 0)
    sums = w.sum(-1)
    has_items = valid.any(-1)
    assert torch.allclose(sums[has_items], torch.ones_like(sums[has_items]))
    q = e.sparse[:, 1]  # item target is the query of hist_items (positions 0..5)
    scores = 5.0 * F.cosine_similarity(e.sequences[:, :6], q.unsqueeze(1), dim=-1)
    row = int(torch.nonzero(e.mask[:, :6].sum(1) >= 2)[0])
    m = e.mask[row, :6]
    assert torch.allclose(w[row, 0, :6][m], torch.softmax(scores[row][m], 0), atol=1e-6)


def test_single_task_baseline_shares_nothing() -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="single"), FEATURES, TASKS[2])
    batch = make_batch(32, 2)
    out = model(batch)
    F.binary_cross_entropy_with_logits(out["ctr"], batch.labels[:, 0]).backward()
    vocab = model.bottom.embedding.vocab_total
    grad = model.bottom.embedding.weight.grad
    assert grad[:vocab].abs().sum() > 0 and grad[vocab:].abs().sum() == 0
    tower_w = model.body.towers.net.net[0].weight.grad
    assert tower_w[0].abs().sum() > 0 and tower_w[1].abs().sum() == 0


@pytest.mark.parametrize("cfg", [dict(arch="aitm"), dict(arch="mmoe", head="esmm")])
def test_cascade_archs_need_a_cascade(cfg: dict) -> None:
    with pytest.raises(ConfigError, match="needs a task cascade"):
        build_model(small_cfg(**cfg), FEATURES, NO_CASCADE)
    build_model(small_cfg(**cfg), FEATURES, TASKS[2])


def test_build_model_errors_are_one_line() -> None:
    with pytest.raises(ConfigError, match="model.arch: 'nope' is not available; use one of") as exc:
        build_model(small_cfg(arch="nope"), FEATURES, TASKS[2])  # type: ignore[arg-type]
    assert "\n" not in str(exc.value)
    bad = FEATURES + [FeatureSpec("hist_x", "sequence", 5, 3, shares_with="missing")]
    with pytest.raises(ConfigError, match="hist_x: shares_with='missing' is not a sparse field"):
        build_model(small_cfg(), bad, TASKS[2])
    with pytest.raises(ConfigError, match="depends_on='nope' is not a task"):
        build_model(
            small_cfg(), FEATURES, [TaskSpec("a", "a"), TaskSpec("b", "b", depends_on="nope")]
        )


def test_last_shared_parameters_for_gradnorm() -> None:
    assert ARCHS["single"](small_cfg(), 10, TASKS[2]).last_shared_parameters() == []
    mmoe = ARCHS["mmoe"](small_cfg(), 10, TASKS[2])
    assert [p.shape for p in mmoe.last_shared_parameters()] == [(3, 32, 16), (3, 1, 16)]
    sb = ARCHS["shared_bottom"](small_cfg(dropout=0.1), 10, TASKS[2])
    assert [p.shape for p in sb.last_shared_parameters()] == [(32, 10), (32,)]


def test_esmm_network_shares_only_embeddings() -> None:
    torch.manual_seed(0)
    model = build_model(
        small_cfg(arch="shared_bottom", head="esmm", bottom_dims=[]), FEATURES, TASKS[2]
    )
    assert model.body.last_shared_parameters() == []
    assert model.body.towers.net.net[0].in_dim == model.bottom.out_dim  # towers read embeddings
    out = model(make_batch(16, 2))
    assert out["ctcvr"].shape == (16,)
    with pytest.raises(ConfigError, match="model.bottom_dims: arch aitm needs at least one layer"):
        build_model(small_cfg(arch="aitm", bottom_dims=[]), FEATURES, TASKS[2])
    with pytest.raises(ConfigError, match="model.expert_dims: arch ple needs at least one layer"):
        build_model(small_cfg(arch="ple", expert_dims=[]), FEATURES, TASKS[2])


def test_example_configs_build_every_architecture() -> None:
    from automtl.config import load_trial_config
    from automtl.resources import list_named_yaml, resource_dir

    names = list_named_yaml("studies/examples")
    assert {"single", "shared_bottom", "mmoe", "ple", "esmm", "aitm"} <= set(names)
    archs = set()
    for name in names:
        cfg = load_trial_config(resource_dir("studies/examples") / f"{name}.yaml")
        assert cfg.data.name == "synthetic" and cfg.train.epochs <= 3
        if cfg.model.deepmcp is not None or cfg.model.shallow_tower is not None:
            continue  # need the synthetic field names: tests/test_deepmcp_shallow.py trains them
        n_tasks = cfg.data.options.get("n_tasks", 2)
        model = build_model(cfg.model, FEATURES, TASKS[n_tasks])
        assert model(make_batch(8, n_tasks))[TASKS[n_tasks][-1].name].shape == (8,)
        archs.add(cfg.model.arch + ("+esmm" if cfg.model.head == "esmm" else ""))
    assert {"single", "shared_bottom", "mmoe", "ple", "aitm", "shared_bottom+esmm"} <= archs
    mmoe = load_trial_config(resource_dir("studies/examples") / "mmoe.yaml")
    assert (mmoe.model.n_experts, mmoe.model.expert_dims, mmoe.model.embedding_dim) == (
        8,
        [256, 128],
        16,
    )
    assert (mmoe.model.tower_dims, mmoe.train.batch_size) == ([64], 2048)
    ple = load_trial_config(resource_dir("studies/examples") / "ple.yaml").model
    assert (ple.n_levels, ple.n_shared_experts, ple.n_specific_experts) == (2, 2, 2)


def test_mmoe_learns_the_synthetic_dataset() -> None:
    from automtl.config import DataConfig
    from automtl.data import load_dataset
    from automtl.data.batching import DeviceSplit, iter_batches

    ds = load_dataset(DataConfig(options={"rows": 8000, "n_tasks": 3, "seed": 0}))
    torch.manual_seed(0)
    cfg = small_cfg(arch="mmoe", head="esmm", seq_pooling="target_attention", n_experts=4)
    model = build_model(cfg, ds.features, ds.tasks)
    train, val = (
        DeviceSplit.from_split(ds.splits["train"]),
        DeviceSplit.from_split(ds.splits["val"]),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        for b in iter_batches(train, 256, shuffle=True, generator=gen):
            loss = F.binary_cross_entropy_with_logits(model.forward_tensor(b), b.labels.t())
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model.forward_tensor(val.slice(0, len(val)))
    aucs = [roc_auc_score(val.labels[:, k].numpy(), pred[k].numpy()) for k in range(3)]
    assert min(aucs) > 0.62, aucs


@pytest.mark.parametrize("arch", BODIES)
def test_bf16_autocast_forward_backward(arch: str) -> None:
    torch.manual_seed(0)
    cfg = small_cfg(arch=arch, head="esmm", seq_pooling="target_attention")
    model = build_model(cfg, FEATURES, TASKS[3])
    batch = make_batch(32, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
    assert out["ctcvr"].dtype == torch.float32  # the ESMM head computes the cascade in fp32
    logits = torch.stack([v.float() for v in out.values()], 1)
    F.binary_cross_entropy_with_logits(logits, batch.labels).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_embedding_lookup_gradient_equals_f_embedding() -> None:
    from automtl.models.embedding import embedding_lookup

    w1 = torch.randn(50, 4, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    ids = torch.randint(0, 50, (32, 7))
    ids[0, :3] = 5  # repeated ids accumulate
    g = torch.randn(32, 7, 4)
    out = embedding_lookup(w1, ids)
    out.backward(g)
    F.embedding(ids, w2).backward(g)
    assert torch.equal(out, F.embedding(ids, w2.detach()))
    assert torch.allclose(w1.grad, w2.grad, atol=1e-6)
    assert w1.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["mean", "sum"])
@pytest.mark.parametrize("copies", [1, 2])
@pytest.mark.parametrize("sparse", [False, True])
def test_bag_lookup_equals_gather_and_pooling(mode: str, copies: int, sparse: bool) -> None:
    """The fused path (one weighted embedding_bag) gives the gather + pooling values and the
    same table gradient (dense, or the sparse rows of lazy_adam)."""
    torch.manual_seed(0)
    emb = FeatureEmbedding(FEATURES, 4, copies=copies)
    emb.sparse_grad = sparse
    pool = SequencePooling(FEATURES, 4, mode)
    batch = make_batch(32, 2)
    batch.sequences["hist_items"][0] = 0  # an all-padding sequence pools to 0
    e = emb(batch)
    want = torch.cat([e.sparse.flatten(1), pool(e).flatten(1)], 1)
    g = torch.randn_like(want)
    want.backward(g)
    want_grad = emb.weight.grad.to_dense().clone()
    emb.weight.grad = None
    got = emb.pooled(batch, pool)
    assert got is not None and got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-6)
    got.backward(g)
    assert emb.weight.grad.is_sparse == sparse
    assert torch.allclose(emb.weight.grad.to_dense(), want_grad, atol=1e-5)
    assert want_grad.abs().sum() > 0


def test_bag_lookup_is_not_used_for_attention_pooling_or_tracing() -> None:
    from automtl.export import TensorModel

    emb = FeatureEmbedding(FEATURES, 4)
    batch = make_batch(8, 2)
    assert emb.pooled(batch, SequencePooling(FEATURES, 4, "target_attention")) is None
    assert emb.pooled(batch, SequencePooling(FEATURES, 4, "mean")) is not None
    cfg = ModelConfig(arch="mmoe", n_experts=2, expert_dims=[8], tower_dims=[4])
    model = build_model(cfg, FEATURES, TASKS[2]).eval()
    wrapped = TensorModel(model, FEATURES)
    inputs = (batch.sparse, batch.dense, *batch.sequences.values())
    with torch.no_grad():
        traced = torch.jit.trace(wrapped, inputs, check_trace=False)
        ops = set(re.findall(r"aten::\w+", str(traced.inlined_graph)))
        assert "aten::embedding" in ops and "aten::embedding_bag" not in ops  # plain gather
        for a, b in zip(traced(*inputs), wrapped(*inputs)):  # eager evaluation: the bag path
            assert torch.allclose(a, b, atol=1e-6)
