"""The task-specific bottoms inside real models: every body, STEM gradient isolation through a
whole model, DTRN without sequences, config errors, and short real trainings with `fit`."""

from __future__ import annotations

import warnings

import pytest
import torch

from automtl.config import DataConfig, ModelConfig, TrainConfig, TrialConfig
from automtl.data import load_dataset
from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, TaskSpec
from automtl.errors import ConfigError
from automtl.models import build_model
from automtl.models.bottoms.apem import ASRGBottom
from automtl.models.bottoms.dtrn import INJECTIONS, DTRNBottom
from automtl.train import Callback, fit

FEATURES = [
    FeatureSpec("user", "sparse", vocab_size=30),
    FeatureSpec("item", "sparse", vocab_size=40),
    FeatureSpec("cat", "sparse", vocab_size=8),
    FeatureSpec("price", "dense"),
    FeatureSpec("hist_items", "sequence", vocab_size=40, max_len=6, shares_with="item"),
    FeatureSpec("hist_cats", "sequence", vocab_size=8, max_len=4, shares_with="cat"),
    FeatureSpec("queries", "sequence", vocab_size=12, max_len=3),  # own rows, learned query
]
TASKS = [
    TaskSpec("ctr", "click"),
    TaskSpec("ctcart", "cart", depends_on="ctr", cond_name="cart"),
    TaskSpec("ctcvr", "purchase", depends_on="ctcart", cond_name="cvr"),
]
BODIES = ["single", "shared_bottom", "mmoe", "ple", "aitm"]


pytestmark = pytest.mark.usefixtures("one_thread")


def small_cfg(**kw: object) -> ModelConfig:
    base: dict[str, object] = dict(
        embedding_dim=8, bottom_dims=[16], expert_dims=[16], tower_dims=[8], n_experts=2,
        n_levels=1, n_shared_experts=1, n_specific_experts=1, aitm_dim=8, transformer_dim=8,
        transformer_heads=2, inducing_points=4, ps_layers=2, stem_embedding_dim=4)
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def make_batch(n: int = 16, seed: int = 0, sequences: bool = True) -> Batch:
    g = torch.Generator().manual_seed(seed)
    sparse = torch.stack([torch.randint(1, v.vocab_size, (n,), generator=g)
                          for v in FEATURES if v.kind == "sparse"], dim=1).int()
    seqs = {}
    if sequences:
        for f in FEATURES:
            if f.kind == "sequence":
                ids = torch.randint(1, f.vocab_size, (n, f.max_len), generator=g)
                length = torch.randint(0, f.max_len + 1, (n, 1), generator=g)
                seqs[f.name] = torch.where(torch.arange(f.max_len) < length, ids, 0).int()
    labels = (torch.rand(n, 3, generator=g) < 0.5).float().cumprod(dim=1)
    return Batch(sparse=sparse, dense=torch.randn(n, 1, generator=g), sequences=seqs, labels=labels)


@pytest.mark.parametrize("bottom", ["dtrn", "apem", "stem"])
@pytest.mark.parametrize("arch", BODIES + ["apem"])
def test_every_bottom_feeds_every_body(bottom: str, arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch=arch, bottom=bottom), FEATURES, TASKS)
    out = model(make_batch())
    assert list(out) == ["ctr", "ctcart", "ctcvr"]
    loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(v, torch.ones_like(v))
               for v in out.values())
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.bottom.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_apem_arch_on_its_asrg_bottom() -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="apem", bottom="apem"), FEATURES, TASKS)
    assert isinstance(model.bottom, ASRGBottom)
    assert model.bottom.out_dim == 4 * 8  # K * d
    assert model.body.asrg is None  # no second ASRG on top of the ASRG bottom
    out = model(make_batch())
    assert all(v.shape == (16,) and torch.isfinite(v).all() for v in out.values())
    # ESMM head on top works too
    model = build_model(small_cfg(arch="apem", bottom="apem", head="esmm"), FEATURES, TASKS)
    out = model(make_batch())
    assert (torch.sigmoid(out["ctcvr"]) <= torch.sigmoid(out["ctcart"]) + 1e-6).all()


@pytest.mark.parametrize("bottom", ["shared", "dtrn", "stem"])
def test_apem_arch_runs_its_own_asrg_on_other_bottoms(bottom: str) -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="apem", bottom=bottom), FEATURES, TASKS)
    assert model.body.asrg is not None
    out_dim = model.bottom.out_dim
    assert model.body.asrg.selector[0][0].in_features == -(-out_dim // 8) * 8  # padded fields
    model.train()
    out = model(make_batch())
    assert all(v.shape == (16,) and torch.isfinite(v).all() for v in out.values())
    assert int(model.body.asrg.step) == 1


@pytest.mark.parametrize("injection", INJECTIONS)
@pytest.mark.parametrize("trm", [True, False])
def test_dtrn_bottom_per_task_shapes(injection: str, trm: bool) -> None:
    torch.manual_seed(0)
    bottom = DTRNBottom(small_cfg(bottom="dtrn", injection=injection, trm=trm), FEATURES, TASKS)
    r = bottom(make_batch())
    # raw_t = [3 sparse * 8, 1 dense, interest: 3 sequences * transformer_dim 8]
    assert bottom.out_dim == 3 * 8 + 1 + 3 * 8
    assert r.shape == (3, 16, bottom.out_dim)
    assert (bottom.trm is not None) == trm


def test_dtrn_padding_in_the_batch_never_changes_the_output() -> None:
    torch.manual_seed(0)
    bottom = DTRNBottom(small_cfg(bottom="dtrn"), FEATURES, TASKS)
    for h in bottom.modules():  # non-zero conditioning so the tasks differ
        if h.__class__.__name__ == "HyperNetwork":
            torch.nn.init.normal_(h.out.weight, std=0.3)
    batch = make_batch()
    out = bottom(batch)
    emb = bottom.embedding
    pad_rows = emb.col_offsets[emb.n_sparse:].unique()  # id 0 of every sequence's table
    assert len(pad_rows) == 3
    with torch.no_grad():  # garbage in the padding rows must not matter
        emb.weight[pad_rows] = 50.0 * torch.randn(len(pad_rows), emb.dim)
    torch.testing.assert_close(bottom(batch), out)
    with torch.no_grad():  # while a real id's row does
        emb.weight[pad_rows + 1] += 1.0
    assert (bottom(batch) - out).abs().max() > 1e-4


def test_dtrn_without_sequences_disables_tim_with_a_note() -> None:
    feats = [f for f in FEATURES if f.kind != "sequence"]
    with pytest.warns(UserWarning, match="no sequence fields; TIM is disabled"):
        model = build_model(small_cfg(bottom="dtrn"), feats, TASKS)
    assert model.bottom.tim is None and model.bottom.out_dim == 3 * 8 + 1
    out = model(make_batch(sequences=False))
    assert all(torch.isfinite(v).all() for v in out.values())


def test_stem_task_loss_leaves_other_tasks_tables_untouched() -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(bottom="stem", arch="mmoe"), FEATURES, TASKS)
    emb = model.bottom.embedding
    rows = emb.vocab_total
    batch = make_batch(32)
    for k, name in enumerate(model.task_names):
        model.zero_grad(set_to_none=True)
        out = model(batch)
        torch.nn.functional.binary_cross_entropy_with_logits(out[name], batch.labels[:, k]).backward()
        g = emb.weight.grad.view(len(TASKS) + 1, rows, -1).abs().sum(dim=(1, 2))
        assert g[0] > 0 and g[k + 1] > 0, (name, g)  # shared table and task k's own
        others = [j + 1 for j in range(len(TASKS)) if j != k]
        assert g[others].eq(0).all(), (name, g)


def test_bottom_config_errors_are_one_line() -> None:
    with pytest.raises(ConfigError, match="transformer_heads: 3 does not divide embedding_dim 8"):
        build_model(small_cfg(arch="apem", transformer_heads=3), FEATURES, TASKS)
    with pytest.raises(ConfigError, match="transformer_heads: 3 does not divide transformer_dim 8"):
        build_model(small_cfg(bottom="dtrn", transformer_heads=3), FEATURES, TASKS)
    with pytest.raises(ConfigError, match="apem_gamma_start"):
        small_cfg(apem_gamma_start=1e-4).validate()


def _data(rows: int) -> DataConfig:
    return DataConfig(name="synthetic", options={"rows": rows, "seed": 3})


def test_dtrn_trains_on_synthetic_data() -> None:
    data = _data(6000)
    ds = load_dataset(data)
    cfg = TrialConfig(
        data=data,
        model=ModelConfig(arch="mmoe", bottom="dtrn", embedding_dim=8, expert_dims=[32],
                          n_experts=2, tower_dims=[16], transformer_dim=8),
        train=TrainConfig(epochs=2, batch_size=256, lr=5e-3, device="cpu", seed=0, patience=5))
    res = fit(cfg, ds)
    aucs = {k: v for k, v in res.val.items() if k.endswith("_auc") and k != "mean_auc"}
    assert set(aucs) == {"ctr_auc", "ctcvr_auc", "cvr_auc"}
    assert all(v > 0.5 for v in aucs.values()), aucs
    assert res.history[-1].train_loss < res.history[0].train_loss * 1.05


class _StepProbe(Callback):
    """Reads the ASRG step counter after every epoch of a real `fit`."""

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None
        self.steps: list[int] = []
        self.gammas: list[float] = []

    def on_train_start(self, model: torch.nn.Module) -> None:
        self.model = model

    def on_epoch_end(self, epoch: int, record: object) -> None:
        asrg = self.model.bottom.asrg  # type: ignore[union-attr]
        self.steps.append(int(asrg.step))
        self.gammas.append(float(asrg.gamma()))


def test_apem_gamma_schedule_advances_with_the_shared_trainer() -> None:
    data = _data(2000)
    ds = load_dataset(data)
    cfg = TrialConfig(
        data=data,
        model=ModelConfig(arch="apem", bottom="apem", embedding_dim=8, inducing_points=4,
                          tower_dims=[8], apem_gamma_start=2.0, apem_gamma_decay=0.1,
                          apem_gamma_min=0.05),
        train=TrainConfig(epochs=2, batch_size=400, device="cpu", patience=5))
    probe = _StepProbe()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray warnings from the bottom
        res = fit(cfg, ds, callbacks=[probe])
    n_steps = -(-len(ds.splits["train"]) // 400)  # evaluation passes do not count
    assert probe.steps == [n_steps, 2 * n_steps]
    assert probe.gammas == pytest.approx([2.0 - 0.1 * n_steps, max(2.0 - 0.2 * n_steps, 0.05)])
    assert res.epochs_run == 2


@pytest.mark.parametrize("space_name", ["default", "transformer"])
def test_search_spaces_sample_buildable_bottoms(space_name: str) -> None:
    import optuna

    from automtl.search.space import load_space
    from automtl.search.space_nodes import SpaceContext

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_name)
    ctx = SpaceContext([t.name for t in TASKS], n_pairs=2,
                       capabilities=frozenset({"cascade", "sequences"}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    bottoms, injections = set(), set()
    for _ in range(100):  # the default space has 9+ archs: enough draws to hit each bottom option
        trial = study.ask()
        cfg = space.suggest(trial, ctx)
        build_model(cfg.model, FEATURES, TASKS)  # every sampled combination is valid
        bottoms.add(cfg.model.bottom)
        if cfg.model.bottom == "dtrn":
            injections.add(cfg.model.injection)
        study.tell(trial, 0.5)
    expected = {"shared", "dtrn", "apem", "stem"} if space_name == "default" else {"shared", "dtrn"}
    assert bottoms == expected
    assert injections == set(INJECTIONS)


@pytest.mark.parametrize("arch,bottom,injection", [
    ("mmoe", "dtrn", "ln"), ("mmoe", "dtrn", "qkv"), ("mmoe", "dtrn", "ffn1"),
    ("mmoe", "dtrn", "ffn2"), ("apem", "apem", "ln"), ("apem", "shared", "ln"),
    ("ple", "stem", "ln")])
def test_bottoms_run_under_bf16_autocast(arch: str, bottom: str, injection: str) -> None:
    # the trainer's CUDA precision is bf16 autocast; CPU autocast takes the same dtype paths
    torch.manual_seed(0)
    model = build_model(small_cfg(arch=arch, bottom=bottom, injection=injection), FEATURES, TASKS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(make_batch())
    loss = sum(v.float().sum() for v in out.values())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("arch,bottom", [("mmoe", "dtrn"), ("apem", "apem"), ("ple", "stem")])
def test_bottoms_export_to_onnx_and_torchscript(tmp_path, arch: str, bottom: str) -> None:
    import numpy as np
    import onnxruntime as ort

    from automtl.export.serving import TensorModel, export_onnx, export_torchscript

    torch.manual_seed(0)
    model = build_model(small_cfg(arch=arch, bottom=bottom), FEATURES, TASKS).eval()
    seq_names = [f.name for f in FEATURES if f.kind == "sequence"]

    def inputs(batch: Batch) -> tuple[torch.Tensor, ...]:
        return (batch.sparse, batch.dense, *[batch.sequences[n] for n in seq_names])

    example, other = inputs(make_batch(16)), inputs(make_batch(9, seed=5))  # new batch size
    ref = [t.detach().numpy() for t in TensorModel(model, FEATURES)(*other)]
    session = ort.InferenceSession(str(export_onnx(model, FEATURES, TASKS, example,
                                                   tmp_path / "m.onnx")))
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), other)}
    for got, want in zip(session.run(None, feeds), ref):
        np.testing.assert_allclose(got, want, atol=1e-5)
    traced = torch.jit.load(str(export_torchscript(model, FEATURES, TASKS, example,
                                                   tmp_path / "m.pt")))
    for got, want in zip(traced(*other), ref):
        np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-6)
