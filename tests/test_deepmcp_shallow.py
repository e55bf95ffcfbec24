"""Issue 18: DeepMCP's auxiliary subnets and YouTube's shallow bias tower (plus the synthetic
position-bias field): gradients, each paper's property, a short real run, serving without the
training-only parts, search sampling, one-line errors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from automtl.config import (DataConfig, DeepMCPConfig, LossConfig, ModelConfig,
                            ShallowTowerConfig, TrainConfig, TrialConfig)
from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import ConfigError, DataError
from automtl.losses import build_loss
from automtl.models import build_model

FEATURES = [
    FeatureSpec("user_id", "sparse", vocab_size=30),
    FeatureSpec("user_age", "sparse", vocab_size=5),
    FeatureSpec("item_id", "sparse", vocab_size=40),
    FeatureSpec("category", "sparse", vocab_size=8),
    FeatureSpec("device", "sparse", vocab_size=4),
    FeatureSpec("position", "sparse", vocab_size=11),
    FeatureSpec("price", "dense"),
    FeatureSpec("hist_item_ids", "sequence", vocab_size=40, max_len=6, shares_with="item_id"),
]
CASCADE = [TaskSpec("ctr", "click"), TaskSpec("ctcvr", "purchase", depends_on="ctr")]
FLAT = [TaskSpec("a", "a"), TaskSpec("b", "b")]
ADD_ONS = {"deepmcp": dict(deepmcp=DeepMCPConfig(dims=[16, 8])),
           "shallow": dict(shallow_tower=ShallowTowerConfig()),
           "both": dict(deepmcp=DeepMCPConfig(dims=[16, 8]), shallow_tower=ShallowTowerConfig(),
                        wide=True)}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_cfg(**kw: object) -> ModelConfig:
    base: dict[str, object] = dict(embedding_dim=8, expert_dims=[16], tower_dims=[8], n_experts=3)
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def make_batch(n: int, seed: int = 0, n_tasks: int = 2) -> Batch:
    g = np.random.default_rng(seed)
    cols = [g.integers(1, f.vocab_size, n) for f in FEATURES if f.kind == "sparse"]
    hist = g.integers(1, 40, (n, 6)) * (np.arange(6) < g.integers(0, 7, n)[:, None])
    labels = (g.random((n, n_tasks)) < 0.5).astype(np.float32)
    labels[:, 1] *= labels[:, 0]
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a).astype(np.int32))  # noqa: E731
    return Batch(t(np.stack(cols, 1)), torch.from_numpy(g.normal(size=(n, 1)).astype(np.float32)),
                 {"hist_item_ids": t(hist)}, torch.from_numpy(labels))


@pytest.mark.parametrize("arch", ["mmoe", "ple", "shared_bottom"])
@pytest.mark.parametrize("add_on", list(ADD_ONS))
@pytest.mark.parametrize("tasks", [CASCADE, FLAT], ids=["cascade", "flat"])
def test_every_parameter_gets_a_gradient(arch: str, add_on: str, tasks: list) -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch=arch, bottom_dims=[16], **ADD_ONS[add_on]), FEATURES,
                        tasks).train()
    loss = build_loss(LossConfig(), tasks, model)
    batch = make_batch(64)
    out = model.forward_tensor(batch)
    assert out.shape == (2, 64) and torch.isfinite(out).all()
    lo = loss(out.t(), batch.labels)
    want = ["model_deepmcp_match", "model_deepmcp_corr"] if "deepmcp" in ADD_ONS[add_on] else []
    assert [n for n in loss.term_names if n.startswith("model_")] == want
    lo.total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def _rows_with_grad(model: torch.nn.Module, term: int, batch: Batch) -> set[str]:
    """The fields whose embedding rows get a gradient from DeepMCP term `term` alone."""
    model.zero_grad()
    model.forward_tensor(batch)
    model.aux_losses(batch.labels)[term].backward()
    table = model.bottom.embedding
    grad = table.weight.grad.abs().sum(1)
    sparse = [f.name for f in FEATURES if f.kind == "sparse"]
    bounds = table.col_offsets[: len(sparse)].tolist() + [table.vocab_total]
    return {sparse[i] for i in range(len(sparse)) if grad[bounds[i]: bounds[i + 1]].sum() > 0}


def test_deepmcp_terms_shape_the_shared_embedding_of_their_fields_only() -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(deepmcp=DeepMCPConfig(dims=[16, 8])), FEATURES, CASCADE).train()
    batch = make_batch(128)
    # the matching subnet (user-ad) reaches the user and ad fields' rows of the SHARED table
    assert _rows_with_grad(model, 0, batch) == {"user_id", "user_age", "item_id", "category"}
    # the correlation subnet (ad-ad) reaches the ad field its behaviour sequence shares
    assert _rows_with_grad(model, 1, batch) == {"item_id"}
    # no clicked row: no positive ad pair, the correlation term is 0
    model.forward_tensor(batch)
    assert float(model.aux_losses(torch.zeros_like(batch.labels))[1].detach()) == 0.0
    # explicit field lists replace the names recognised
    named = build_model(small_cfg(deepmcp=DeepMCPConfig(dims=[16, 8], user_fields=["device"],
                                                        ad_fields=["item_id"])), FEATURES, CASCADE)
    assert _rows_with_grad(named.train(), 0, batch) == {"device", "item_id"}


def test_deepmcp_correlation_subnet_pulls_co_clicked_ads_together() -> None:
    """Skip-gram with in-batch negatives: ads clicked by the same users end up closer (in the
    correlation subnet's space) than ads that never co-occur."""
    torch.manual_seed(0)
    cfg = small_cfg(deepmcp=DeepMCPConfig(alpha=0.0, beta=1.0, dims=[16, 8], window=6))
    model = build_model(cfg, FEATURES, CASCADE).train()
    g = np.random.default_rng(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for step in range(40):
        batch = make_batch(128, seed=step)
        item = g.integers(1, 40, 128)
        partner = np.where(item % 2 == 1, item + 1, item - 1).clip(1, 39)  # pairs (1,2), (3,4)...
        batch.sparse[:, 2] = torch.from_numpy(item.astype(np.int32))
        batch.sequences["hist_item_ids"][:, :] = torch.from_numpy(
            np.repeat(partner[:, None], 6, 1).astype(np.int32))
        batch.labels[:, 0] = 1.0
        model.forward_tensor(batch)
        opt.zero_grad()
        model.aux_losses(batch.labels)[1].backward()
        opt.step()
    with torch.no_grad():
        table = model.bottom.embedding
        rows = table.weight[table.col_offsets[2] + torch.arange(1, 39)]
        h = torch.nn.functional.normalize(model.deepmcp.corr_net(rows), dim=1)
        sim = h @ h.t()
    idx = torch.arange(0, 38, 2)  # items 1, 3, 5, ... and their partners 2, 4, 6, ...
    partners = sim[idx, idx + 1].mean()
    others = sim[idx][:, idx].fill_diagonal_(float("nan")).nanmean()
    assert partners > others + 0.5, (float(partners), float(others))


def test_shallow_tower_is_training_only_and_absent_from_the_serving_graph(tmp_path) -> None:
    import onnx
    import onnxruntime as ort

    from automtl.export.serving import TensorModel, export_onnx, export_torchscript

    torch.manual_seed(0)
    model = build_model(small_cfg(shallow_tower=ShallowTowerConfig(feature_dropout=0.0),
                                  deepmcp=DeepMCPConfig(dims=[16, 8])), FEATURES, CASCADE)
    batch = make_batch(32)
    moved = make_batch(32)
    moved.sparse[:, 5] = 11 - moved.sparse[:, 5]  # every row at another position
    model.train()
    assert not torch.allclose(model.forward_tensor(batch), model.forward_tensor(moved))
    model.eval()
    with torch.no_grad():
        served = model.forward_tensor(batch)
        assert torch.equal(served, model.forward_tensor(moved))  # position is not read
        tower = model.shallow(batch)
        model.train()
        model.shallow.feature_dropout = 0.0
        trained = model.forward_tensor(batch)
    torch.testing.assert_close(trained, served + tower)  # the bias logit, added in training
    model.eval()
    example = (batch.sparse, batch.dense, batch.sequences["hist_item_ids"])
    other = (moved.sparse, moved.dense, moved.sequences["hist_item_ids"])
    ref = [t.detach().numpy() for t in TensorModel(model, FEATURES)(*example)]
    path = export_onnx(model, FEATURES, CASCADE, example, tmp_path / "m.onnx")
    names = [i.name for i in onnx.load(str(path)).graph.initializer]
    assert not [n for n in names if "shallow" in n or "deepmcp" in n], names
    session = ort.InferenceSession(str(path))
    for feed in (example, other):  # same outputs for any position
        feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), feed)}
        for got, want in zip(session.run(None, feeds), ref):
            np.testing.assert_allclose(got, want, atol=1e-5)
    traced = torch.jit.load(str(export_torchscript(model, FEATURES, CASCADE, example,
                                                   tmp_path / "m.pt")))
    keys = list(traced.state_dict())
    assert not [k for k in keys if "shallow" in k or "deepmcp" in k], keys
    assert "shallow" not in traced.code and any("bottom" in k for k in keys)
    for got, want in zip(traced(*other), ref):
        np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-5)
    assert model.shallow is not None and model.deepmcp is not None  # the trained model keeps them


def test_synthetic_position_field_has_its_known_effect() -> None:
    from automtl.data import generate_synthetic, position_free

    plain = generate_synthetic(rows=20000, seed=2)
    biased = generate_synthetic(rows=20000, seed=2, position_bias=1.0)
    names = [f.name for f in biased.features if f.kind == "sparse"]
    assert names[-1] == "position" and "position" not in [f.name for f in plain.features]
    a, b = plain.splits["train"], biased.splits["train"]
    assert np.array_equal(a.sparse, b.sparse[:, :-1]) and np.array_equal(a.dense, b.dense)
    pos = b.sparse[:, -1]
    assert pos.min() == 1 and pos.max() == 10
    ctr = [b.labels[pos == p, 0].mean() for p in range(1, 11)]
    assert ctr[0] > 2.5 * ctr[-1] and all(x > y for x, y in zip(ctr, ctr[2:]))
    # without the bias the same impressions click alike at every slot
    flat = [a.labels[pos == p, 0].mean() for p in (1, 10)]
    assert abs(flat[0] - flat[1]) < 0.03
    assert np.array_equal(position_free(biased).splits["train"].truth, a.truth)
    with pytest.raises(DataError, match="position_bias=-1.0 is out of range") as info:
        generate_synthetic(rows=200, position_bias=-1)
    assert "\n" not in str(info.value)


def test_shallow_tower_recovers_position_free_relevance_better_than_plain_mmoe() -> None:
    from automtl.data import DeviceSplit, load_dataset, position_free
    from automtl.train import fit
    from automtl.train.metrics import predict_logits

    aucs = {}
    for shallow in (False, True):
        cfg = TrialConfig(
            data=DataConfig(options={"rows": 10000, "n_tasks": 2, "seed": 0,
                                     "position_bias": 1.0}),
            model=small_cfg(shallow_tower=ShallowTowerConfig() if shallow else None),
            train=TrainConfig(epochs=2, batch_size=256, lr=3e-3, device="cpu", seed=0,
                              patience=2))
        data = load_dataset(cfg.data)
        res = fit(cfg, data)
        assert min(res.test[f"{t}_auc"] for t in data.task_names) > 0.55
        test = data.splits["test"]
        score = predict_logits(res.model, DeviceSplit.from_split(test), data.task_names, 4096)
        relevance = position_free(data).splits["test"].truth[:, 0]  # true p(click) sans position
        aucs[shallow] = roc_auc_score(relevance > np.median(relevance), score[:, 0].numpy())
    # plain MMoE reads the position as a feature and ranks by it; the shallow tower's main
    # model never sees it (measured at this seed: 0.69 vs 0.77)
    assert aucs[True] > aucs[False] + 0.03, aucs


def test_deepmcp_short_run_on_synthetic_data_learns_every_task() -> None:
    from automtl.data import load_dataset
    from automtl.train import fit

    cfg = TrialConfig(data=DataConfig(options={"rows": 6000, "n_tasks": 2, "seed": 3}),
                      model=small_cfg(deepmcp=DeepMCPConfig(dims=[16, 8])),
                      train=TrainConfig(epochs=2, batch_size=256, lr=3e-3, device="cpu", seed=0,
                                        patience=2))
    data = load_dataset(cfg.data)
    res = fit(cfg, data)
    assert min(res.test[f"{t}_auc"] for t in data.task_names) > 0.55, res.test
    assert {"model_deepmcp_match", "model_deepmcp_corr"} <= set(res.loss_terms)


def test_default_space_samples_the_add_ons_only_where_the_data_has_the_fields() -> None:
    import optuna

    from automtl.data import generate_synthetic
    from automtl.search.space import load_space
    from automtl.search.space_nodes import SpaceContext

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space("default")
    for position_bias, schema in ((1.0, "default"), (0.0, "ali-ccp")):
        data = generate_synthetic(rows=300, seed=0, position_bias=position_bias, schema=schema)
        ctx = SpaceContext.from_dataset(data)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        seen = {"deepmcp": 0, "shallow": 0}
        for _ in range(30):
            trial = study.ask()
            cfg = space.suggest(trial, ctx)
            if cfg.model.deepmcp is not None or cfg.model.shallow_tower is not None:
                cfg.model.bottom = "shared"  # the sampled bottom is not what is tested here
                build_model(cfg.model, data.features, data.tasks)
            seen["deepmcp"] += cfg.model.deepmcp is not None
            seen["shallow"] += cfg.model.shallow_tower is not None
            study.tell(trial, 0.5)
        assert seen["deepmcp"] > 0
        assert (seen["shallow"] > 0) == bool(position_bias), seen
    flat = SpaceContext(["a", "b"], 0, frozenset())  # no user/ad or position fields (e.g. census)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        cfg = space.suggest(study.ask(), flat)
        assert cfg.model.deepmcp is None and cfg.model.shallow_tower is None


@pytest.mark.parametrize("cfg,match", [
    (dict(deepmcp=DeepMCPConfig(user_fields=["nope"])), "model.deepmcp.user_fields: 'nope' is not"),
    (dict(deepmcp=DeepMCPConfig(user_fields=["item_id"])), "'item_id' is both a user and an ad"),
    (dict(deepmcp=DeepMCPConfig(beta=-1.0)), "deepmcp.beta: must be >= 0"),
    (dict(deepmcp=DeepMCPConfig(dims=[])), "deepmcp.dims: give one or more"),
    (dict(shallow_tower=ShallowTowerConfig(fields=["price"])), "'price' is not a sparse field"),
    (dict(shallow_tower=ShallowTowerConfig(feature_dropout=1.0)), "feature_dropout: must be in"),
])
def test_bad_configs_are_one_line_errors(cfg: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        build_model(small_cfg(**cfg), FEATURES, CASCADE)
    assert "\n" not in str(info.value)


def test_data_without_the_fields_is_a_one_line_error() -> None:
    anonymous = [FeatureSpec("c1", "sparse", vocab_size=5), FeatureSpec("c2", "sparse",
                                                                        vocab_size=5)]
    with pytest.raises(ConfigError, match="no user fields recognised .* model.deepmcp.user_fie"):
        build_model(small_cfg(deepmcp=DeepMCPConfig()), anonymous, CASCADE)
    with pytest.raises(ConfigError, match="no bias field .* position_bias"):
        build_model(small_cfg(shallow_tower=ShallowTowerConfig()), anonymous, CASCADE)
    with pytest.warns(UserWarning, match="correlation subnet .* is off"):
        model = build_model(small_cfg(deepmcp=DeepMCPConfig()), FEATURES[:-1], CASCADE)
    assert model.aux_terms == ("deepmcp_match",)


def test_examples_train_and_foreign_exports_name_the_gaps(tmp_path) -> None:
    from automtl.config import load_trial_config
    from automtl.data import load_dataset
    from automtl.export.fuxictr import fuxictr_config
    from automtl.export.rechub import rechub_script
    from automtl.resources import resource_dir
    from automtl.train import fit

    for name in ("deepmcp", "shallow_tower"):
        cfg = load_trial_config(resource_dir("studies/examples") / f"{name}.yaml")
        cfg.data.options["rows"] = 3000
        cfg.model.expert_dims, cfg.model.n_experts, cfg.train.epochs = [16], 2, 1
        data = load_dataset(cfg.data)
        for export in (rechub_script(cfg, data.features, data.tasks),
                       fuxictr_config(cfg, data.features, data.tasks)):
            assert [g for g in export.dropped if g.startswith(f"model.{name}:")], export.dropped
        res = fit(cfg, data)
        assert res.epochs_run == 1 and np.isfinite(res.test["ctr_auc"])
