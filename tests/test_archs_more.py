"""The issue-18 architectures (DBMTL, SNR-Trans/Aver, FDN): shapes and gradients with their own
loss terms, a short real training, each paper's property, search sampling, exports, bad configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automtl.config import DataConfig, LossConfig, ModelConfig, TrainConfig, TrialConfig
from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import AutomtlError, ConfigError
from automtl.losses import build_loss
from automtl.models import build_model

FEATURES = [
    FeatureSpec("user", "sparse", vocab_size=30),
    FeatureSpec("item", "sparse", vocab_size=40),
    FeatureSpec("cat", "sparse", vocab_size=8),
    FeatureSpec("price", "dense"),
    FeatureSpec("hist_items", "sequence", vocab_size=40, max_len=6, shares_with="item"),
]
CASCADE = [TaskSpec("ctr", "click"), TaskSpec("ctcart", "cart", depends_on="ctr"),
           TaskSpec("ctcvr", "purchase", depends_on="ctcart")]
FLAT = [TaskSpec("a", "a"), TaskSpec("b", "b")]
# (arch, extra config): SNR in both of the paper's variants; the sequence readers MoSE and STAN
# (their own tests: tests/test_archs_seq.py) run through the generic checks below too
SYSTEMS = [("dbmtl", {}), ("snr", {"snr_variant": "trans"}), ("snr", {"snr_variant": "aver"}),
           ("fdn", {}), ("mfh", {}), ("mose", {"lstm_dim": 8}), ("stan", {})]
IDS = ["dbmtl", "snr-trans", "snr-aver", "fdn", "mfh", "mose", "stan"]
GATED = {"mose", "stan"}  # archs with per-task gates: FiLM on the gates is checked too


pytestmark = pytest.mark.usefixtures("one_thread")


def small_cfg(**kw: object) -> ModelConfig:
    base: dict[str, object] = dict(embedding_dim=8, bottom_dims=[16], expert_dims=[16],
                                   tower_dims=[8], n_experts=3, n_levels=2, n_specific_experts=2)
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def make_batch(n: int, tasks: list[TaskSpec], seed: int = 0) -> Batch:
    """Cascade labels (each task a subset of the previous) that depend on item, price, history."""
    g = np.random.default_rng(seed)
    item = g.integers(1, 40, n)
    hist = g.integers(1, 40, (n, 6)) * (np.arange(6) < g.integers(0, 7, n)[:, None])
    dense = g.normal(size=(n, 1)).astype(np.float32)
    eff = np.random.default_rng(7).normal(0, 1.5, 40)
    logits = [eff[item] + dense[:, 0], 1.0 - 1.5 * dense[:, 0] + 0.3 * (hist > 0).sum(1) - 1,
              eff[item] * 0.5 + 0.5, 1.0 - dense[:, 0]]
    labels = np.zeros((n, len(tasks)), np.float32)
    reached = np.ones(n, bool)
    for k in range(len(tasks)):
        reached &= g.random(n) < 1 / (1 + np.exp(-logits[k]))
        labels[:, k] = reached
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a).astype(np.int32))  # noqa: E731
    sparse = np.stack([g.integers(1, 30, n), item, item % 7 + 1], 1)
    return Batch(t(sparse), torch.from_numpy(dense), {"hist_items": t(hist)},
                 torch.from_numpy(labels))


@pytest.mark.parametrize("tasks", [CASCADE, FLAT], ids=["cascade", "flat"])
@pytest.mark.parametrize("arch,extra", SYSTEMS, ids=IDS)
def test_shapes_and_every_parameter_gets_a_gradient(arch: str, extra: dict, tasks: list) -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch=arch, **extra), FEATURES, tasks).train()
    loss = build_loss(LossConfig(), tasks, model)
    batch = make_batch(64, tasks)
    out = model.forward_tensor(batch)
    assert out.shape == (len(tasks), 64) and torch.isfinite(out).all()
    lo = loss(out.t(), batch.labels)
    assert len(loss.term_names) == lo.terms.numel()
    assert [n for n in loss.term_names if n.startswith("model_")] == [
        f"model_{n}" for n in model.aux_terms]
    lo.total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("arch,extra", SYSTEMS, ids=IDS)
def test_short_run_on_synthetic_data_learns_every_task(arch: str, extra: dict) -> None:
    from automtl.data import load_dataset
    from automtl.train import fit

    # MFH is meant for many tasks: the 4-step synthetic funnel (enough rows for its rarest step)
    n_tasks, rows = (4, 10000) if arch == "mfh" else (2, 6000)
    # the LSTMs of MoSE need more steps than MLP bodies (benchmarks/RESULTS.md)
    epochs, batch = (4, 128) if arch == "mose" else (2, 256)
    cfg = TrialConfig(
        data=DataConfig(options={"rows": rows, "n_tasks": n_tasks, "seed": 3}),
        model=small_cfg(arch=arch, **extra),
        train=TrainConfig(epochs=epochs, batch_size=batch, lr=3e-3, device="cpu", seed=0,
                          patience=epochs))
    data = load_dataset(cfg.data)
    res = fit(cfg, data)
    aucs = {t.name: res.test[f"{t.name}_auc"] for t in data.tasks}  # every task, all test rows
    assert min(aucs.values()) > 0.55, aucs
    assert set(res.loss_terms) >= {f"model_{n}" for n in res.model.aux_terms}


def _train(model: torch.nn.Module, tasks: list, steps: int, lr: float = 1e-2) -> None:
    loss = build_loss(LossConfig(), tasks, model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    data = make_batch(1024, tasks, seed=1)
    model.train()
    for s in range(steps):
        sl = slice((s * 128) % 1024, (s * 128) % 1024 + 128)
        b = Batch(data.sparse[sl], data.dense[sl], {k: v[sl] for k, v in data.sequences.items()},
                  data.labels[sl])
        lo = loss(model.forward_tensor(b).t(), b.labels)
        opt.zero_grad()
        lo.total.backward()
        opt.step()


def test_snr_l0_gates_reach_exact_zeros_under_a_strong_penalty() -> None:
    torch.manual_seed(0)
    strong = build_model(small_cfg(arch="snr", l0_weight=1.0), FEATURES, CASCADE)
    none = build_model(small_cfg(arch="snr", l0_weight=0.0), FEATURES, CASCADE)
    for m in (strong, none):
        _train(m, CASCADE, steps=150, lr=3e-2)
        m.eval()
    with torch.no_grad():
        z_strong = torch.cat([z.flatten() for z in strong.body.gates()])
        z_none = torch.cat([z.flatten() for z in none.body.gates()])
    # serving-time z = clamp(sigmoid(log alpha) * 1.2 - 0.1, 0, 1): exactly 0, not small
    assert (z_strong == 0).float().mean() > 0.5, z_strong
    assert (z_none == 0).sum() == 0 and (z_none > 0.5).all(), z_none
    # a closed connection is pruned: the routed output no longer depends on that sub-network
    with torch.no_grad():
        out = strong.forward_tensor(make_batch(16, CASCADE))
    assert torch.isfinite(out).all()


def test_snr_training_samples_gates_serving_uses_the_deterministic_ones() -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="snr"), FEATURES, CASCADE)
    model.train()
    assert not torch.equal(model.body.gates()[0], model.body.gates()[0])  # noise per forward
    model.eval()
    assert torch.equal(model.body.gates()[0], model.body.gates()[0])


def test_dbmtl_dependent_tower_follows_its_parent_hidden_state() -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="dbmtl"), FEATURES, CASCADE).eval()
    body = model.body
    assert body.parents == [[], [0], [1]]
    batch = make_batch(32, CASCADE)
    x = model.bottom(batch)
    with torch.no_grad():
        before = body(x)

        def shift(i: int):
            def hook(module: torch.nn.Module, inp: tuple, out: torch.Tensor) -> torch.Tensor:
                out = out.clone()
                out[i] = out[i] + 1.0  # the parent's tower hidden state q_i moves
                return out
            return hook

        handle = body.towers.register_forward_hook(shift(0))
        after = body(x)
        handle.remove()
        # ctr's own logit moves, and so do its descendants ctcart and ctcvr (through the links)
        assert all((after[k] - before[k]).abs().max() > 1e-4 for k in range(3))
        handle = body.towers.register_forward_hook(shift(2))
        after = body(x)
        handle.remove()
        # the leaf's hidden state changes nothing upstream
        assert torch.equal(after[:2], before[:2]) and (after[2] - before[2]).abs().max() > 1e-4


def test_dbmtl_dag_from_config_and_chain_without_a_cascade() -> None:
    flat = build_model(small_cfg(arch="dbmtl"), FEATURES, FLAT).body
    assert flat.parents == [[], [0]]  # chain in task order
    dag = build_model(small_cfg(arch="dbmtl", dbmtl_parents={"ctcvr": ["ctr", "ctcart"]}),
                      FEATURES, CASCADE).body
    assert dag.parents == [[], [], [0, 1]] and dag.order.index(2) == 2


def test_fdn_orthogonality_term_decomposes_the_pair_features() -> None:
    def orth_after(weight: float) -> float:
        torch.manual_seed(0)
        model = build_model(small_cfg(arch="fdn", fdn_orth_weight=weight), FEATURES, CASCADE)
        _train(model, CASCADE, steps=80)
        model.train()
        model.forward_tensor(make_batch(256, CASCADE, seed=5))
        return float(model.body.aux_losses(make_batch(256, CASCADE, seed=5).labels)[0].detach()) / max(
            weight, 1e-12)

    constrained, free = orth_after(10.0), orth_after(1e-9)
    assert constrained < 0.1 * free, (constrained, free)


def test_search_spaces_sample_every_new_architecture() -> None:
    import optuna

    from automtl.search.space import load_space
    from automtl.search.space_nodes import SpaceContext

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("default", "architectures"):
        space = load_space(name)
        ctx = SpaceContext([t.name for t in CASCADE], n_pairs=2,
                           capabilities=frozenset({"cascade", "sequences"}))
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        seen: dict[str, set] = {}
        for _ in range(80):
            trial = study.ask()
            cfg = space.suggest(trial, ctx)
            if cfg.model.arch in ("dbmtl", "snr", "fdn", "mfh"):
                build_model(cfg.model, FEATURES, CASCADE)
                seen.setdefault(cfg.model.arch, set()).add(cfg.model.snr_variant)
            study.tell(trial, 0.5)
        assert set(seen) == {"dbmtl", "snr", "fdn", "mfh"}, name
        assert seen["snr"] == {"trans", "aver"}, name


@pytest.mark.parametrize("cfg,match", [
    (dict(arch="dbmtl", dbmtl_parents={"ctcvr": ["click"]}), "model.dbmtl_parents: 'click' is not"),
    (dict(arch="dbmtl", dbmtl_parents={"ctr": ["ctcvr"], "ctcvr": ["ctr"]}), "form a cycle"),
    (dict(arch="dbmtl", tower_dims=[]), "model.tower_dims: arch dbmtl needs at least one layer"),
    (dict(arch="snr", l0_weight=-1.0), "l0_weight: must be >= 0"),
    (dict(arch="snr", expert_dims=[]), "model.expert_dims: arch snr needs at least one layer"),
    (dict(arch="fdn", fdn_orth_weight=float("nan")), "fdn_orth_weight: must be >= 0"),
    (dict(arch="mfh", mfh_groups=[["ctr"], ["ctcvr"]]), "model.mfh_groups: .* exactly one"),
    (dict(arch="mfh", mfh_groups=[["ctr", "ctcart"], ["ctcvr", "buy"]]), "model.mfh_groups"),
])
def test_bad_configs_are_one_line_errors(cfg: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        build_model(small_cfg(**cfg), FEATURES, CASCADE)
    assert "\n" not in str(info.value)


def test_bad_yaml_values_name_the_path(tmp_path) -> None:
    from automtl.config import load_trial_config

    p = tmp_path / "t.yaml"
    p.write_text("model: {arch: snr, snr_variant: sum}\n")
    with pytest.raises(ConfigError, match=r"model\.snr_variant") as info:
        load_trial_config(p)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("arch,extra", SYSTEMS, ids=IDS)
def test_export_onnx_torchscript_and_foreign_formats_say_what_is_missing(
        tmp_path, arch: str, extra: dict) -> None:
    import onnxruntime as ort

    from automtl.export.fuxictr import fuxictr_config
    from automtl.export.rechub import rechub_script
    from automtl.export.serving import TensorModel, export_onnx, export_torchscript

    torch.manual_seed(0)
    model = build_model(small_cfg(arch=arch, **extra), FEATURES, CASCADE).eval()

    def inputs(b: Batch) -> tuple[torch.Tensor, ...]:
        return (b.sparse, b.dense, b.sequences["hist_items"])

    example, other = inputs(make_batch(16, CASCADE)), inputs(make_batch(9, CASCADE, seed=4))
    ref = [t.detach().numpy() for t in TensorModel(model, FEATURES)(*other)]
    session = ort.InferenceSession(str(export_onnx(model, FEATURES, CASCADE, example,
                                                   tmp_path / "m.onnx")))
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), other)}
    for got, want in zip(session.run(None, feeds), ref):
        np.testing.assert_allclose(got, want, atol=1e-5)
    traced = torch.jit.load(str(export_torchscript(model, FEATURES, CASCADE, example,
                                                   tmp_path / "m.pt")))
    for got, want in zip(traced(*other), ref):
        np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-5)
    trial = TrialConfig(model=small_cfg(arch=arch, **extra))
    for writer, tool in ((fuxictr_config, "fuxictr"), (rechub_script, "torch-rechub")):
        with pytest.raises(AutomtlError, match=f"{tool} has no '{arch}' architecture") as info:
            writer(trial, FEATURES, CASCADE)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("bottom", ["stem", "dtrn"])
@pytest.mark.parametrize("arch,extra", SYSTEMS, ids=IDS)
def test_task_specific_bottoms_and_bf16_autocast(arch: str, extra: dict, bottom: str) -> None:
    torch.manual_seed(0)
    cfg = small_cfg(arch=arch, bottom=bottom, transformer_dim=8, stem_embedding_dim=4, **extra)
    model = build_model(cfg, FEATURES, CASCADE).train()  # per-task [T, B, D] body inputs
    loss = build_loss(LossConfig(), CASCADE, model)
    batch = make_batch(32, CASCADE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_tensor(batch)
    lo = loss(out.float().t(), batch.labels)
    lo.total.backward()
    assert out.shape == (3, 32) and torch.isfinite(lo.terms).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("arch,extra", SYSTEMS, ids=IDS)
def test_preference_conditioning_reaches_the_new_towers(arch: str, extra: dict) -> None:
    from automtl.config import WeightingConfig
    from automtl.models.film import conditioner_of, set_preference

    batch = make_batch(32, FLAT)
    for sites in (["towers"], ["bottom"]) + ((["gates"],) if arch in GATED else ()):
        torch.manual_seed(0)
        weighting = WeightingConfig(scheme="conditioned", film=sites)  # type: ignore[arg-type]
        model = build_model(small_cfg(arch=arch, **extra), FEATURES, FLAT, weighting).eval()
        with torch.no_grad():
            for p in conditioner_of(model).parameters():
                p.normal_(0, 0.5)
            set_preference(model, torch.tensor([0.9, 0.1]))
            a = model.forward_tensor(batch)
            set_preference(model, torch.tensor([0.1, 0.9]))
            b = model.forward_tensor(batch)
        assert not torch.allclose(a, b), (arch, sites)


FOUR = [TaskSpec("ctr", "click"), TaskSpec("ctcart", "cart", depends_on="ctr"),
        TaskSpec("ctcvr", "purchase", depends_on="ctcart"),
        TaskSpec("ctreview", "review", depends_on="ctcvr")]


def test_mfh_switchers_share_within_a_group_only() -> None:
    torch.manual_seed(0)
    cfg = small_cfg(arch="mfh", mfh_groups=[["ctr", "ctcart"], ["ctcvr", "ctreview"]])
    model = build_model(cfg, FEATURES, FOUR).eval()
    body = model.body
    assert body.groups == [[0, 1], [2, 3]]
    batch = make_batch(32, FOUR)
    with torch.no_grad():
        before = model.forward_tensor(batch)
        # the late-funnel group's own experts: only ctcvr/ctreview move
        body.experts.net[0].weight[body.m:].add_(0.5)
        after = model.forward_tensor(batch)
        assert torch.equal(after[:2], before[:2]) and (after[2:] - before[2:]).abs().min() > 0
        # the root experts: every task moves
        body.root.net[0].weight.add_(0.5)
        root = model.forward_tensor(batch)
        assert ((root - after).abs().amax(1) > 1e-4).all()
    assert build_model(small_cfg(arch="mfh"), FEATURES, FOUR).body.groups == [[0, 1], [2, 3]]
    assert build_model(small_cfg(arch="mfh"), FEATURES, CASCADE).body.groups == [[0, 1], [2]]


def test_synthetic_generator_has_a_four_step_funnel() -> None:
    from automtl.data.synthetic import generate_synthetic

    ds = generate_synthetic(rows=4000, n_tasks=4, rho=0.5, seed=0)
    assert [t.name for t in ds.tasks] == ["ctr", "ctcart", "ctcvr", "ctreview"]
    assert ds.tasks[3].depends_on == "ctcvr" and ds.tasks[3].cond_name == "review"
    y, truth = ds.splits["train"].labels, ds.splits["train"].truth
    assert (np.diff(y, axis=1) <= 0).all() and (np.diff(truth, axis=1) <= 1e-12).all()
    assert y[:, 3].mean() > 0.01
