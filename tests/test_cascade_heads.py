"""ESM2, ESCM2 (IPS / DR), DCMT and the N-step journey cascade: loss terms against hand-computed
values, gradient routing, ESM2's decomposition, cascade monotonicity, training, bad configs."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

from automtl.cli import main
from automtl.config import (
    DCMTConfig,
    DataConfig,
    ESCM2Config,
    LossConfig,
    ModelConfig,
    TrainConfig,
    TrialConfig,
    load_trial_config,
)
from automtl.data import load_dataset
from automtl.data.batching import DeviceSplit
from automtl.errors import ConfigError
from automtl.losses import build_loss
from automtl.losses.counterfactual import dcmt_losses, dr_risk, ips_risk, propensity
from automtl.models import build_model
from automtl.train import Callback, fit


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data2():
    return load_dataset(DataConfig(options={"rows": 6000, "n_tasks": 2, "seed": 1}))


@pytest.fixture(scope="module")
def data3():
    return load_dataset(DataConfig(options={"rows": 6000, "n_tasks": 3, "seed": 1}))


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1.0 - y) * math.log(1.0 - p))


# a tiny batch: 4 impressions, clicks on rows 0-1, a conversion on row 0
CVR = torch.tensor([0.5, -1.0, 2.0, 0.0])
CTR = torch.tensor([0.0, -4.0, 1.0, -2.0])  # p = 0.5, 0.018, 0.731, 0.119
CLICK = torch.tensor([1.0, 1.0, 0.0, 0.0])
CONV = torch.tensor([1.0, 0.0, 0.0, 0.0])
IMP = torch.tensor([1.0, -1.0, 0.5, -2.0])


def test_propensity_is_clipped_and_detached() -> None:
    logit = torch.tensor([-10.0, 0.0, 10.0], requires_grad=True)
    p = propensity(logit, 0.05, 0.9)
    assert p.tolist() == pytest.approx([0.05, 0.5, 0.9])
    assert not p.requires_grad


def test_ips_risk_by_hand_with_clipping_and_self_normalisation() -> None:
    p = propensity(CTR, 0.05)  # row 1: sigmoid(-4) = 0.018 is clipped to 0.05
    assert p[1].item() == pytest.approx(0.05)
    e0, e1 = bce(sig(0.5), 1.0), bce(sig(-1.0), 0.0)
    hand = (e0 / 0.5 + e1 / 0.05) / 4
    assert ips_risk(CVR, CLICK, CONV, p).item() == pytest.approx(hand, rel=1e-5)
    snips = (e0 / 0.5 + e1 / 0.05) / (1 / 0.5 + 1 / 0.05)
    assert ips_risk(CVR, CLICK, CONV, p, self_normalize=True).item() == pytest.approx(snips, rel=1e-5)


def test_dr_risk_and_imputation_loss_by_hand() -> None:
    p = propensity(CTR, 0.05)
    risk, imp = dr_risk(CVR, IMP, CLICK, CONV, p)
    rt = [sig(v) for v in IMP.tolist()]  # imputed conversion labels
    rh = [sig(v) for v in CVR.tolist()]
    e_hat = [bce(rh[i], rt[i]) for i in range(4)]
    e = [bce(rh[0], 1.0), bce(rh[1], 0.0)]
    w = [1 / 0.5, 1 / 0.05]
    hand_risk = (sum(e_hat) + w[0] * (e[0] - e_hat[0]) + w[1] * (e[1] - e_hat[1])) / 4
    hand_imp = (w[0] * (e[0] - e_hat[0]) ** 2 + w[1] * (e[1] - e_hat[1]) ** 2) / 4
    assert risk.item() == pytest.approx(hand_risk, rel=1e-5)
    assert imp.item() == pytest.approx(hand_imp, rel=1e-5)
    # the imputation loss trains only the imputation logits, the risk only the CVR logits
    cvr, imp_logit = CVR.clone().requires_grad_(), IMP.clone().requires_grad_()
    risk, imp = dr_risk(cvr, imp_logit, CLICK, CONV, p)
    g_cvr, g_imp = torch.autograd.grad(risk, [cvr, imp_logit], allow_unused=True)
    assert g_imp is None and torch.all(g_cvr != 0)  # every impression trains the CVR tower
    g_cvr, g_imp = torch.autograd.grad(imp, [cvr, imp_logit], allow_unused=True)
    assert g_cvr is None and g_imp[:2].abs().min() > 0 and torch.all(g_imp[2:] == 0)


def test_dcmt_losses_by_hand() -> None:
    cf = torch.tensor([-0.5, 1.0, 0.3, 2.0])
    cvr_loss, soft = dcmt_losses(CVR, cf, CLICK, CONV, CTR, clip=0.05)
    p = [min(max(sig(v), 0.05), 0.95) for v in CTR.tolist()]
    factual = bce(sig(0.5), 1.0) / p[0] + bce(sig(-1.0), 0.0) / p[1]
    # counterfactual label 1 - r = 1 on the unclicked rows 2, 3
    counter = bce(sig(0.3), 1.0) / (1 - p[2]) + bce(sig(2.0), 1.0) / (1 - p[3])
    assert cvr_loss.item() == pytest.approx((factual + counter) / 4, rel=1e-5)
    hand_soft = sum(abs(1 - sig(a) - sig(b)) for a, b in zip(CVR.tolist(), cf.tolist())) / 4
    assert soft.item() == pytest.approx(hand_soft, rel=1e-5)
    sn, _ = dcmt_losses(CVR, cf, CLICK, CONV, CTR, clip=0.05, self_normalize=True)
    hand_sn = factual / (1 / p[0] + 1 / p[1]) + counter / (1 / (1 - p[2]) + 1 / (1 - p[3]))
    assert sn.item() == pytest.approx(hand_sn, rel=1e-5)


def small(head: str, **kw) -> ModelConfig:
    base = dict(arch="shared_bottom", head=head, embedding_dim=4, bottom_dims=[], tower_dims=[8])
    base.update(kw)
    return ModelConfig(**base)


def _tower_grads(model, loss: torch.Tensor) -> list[float]:
    """|grad| of each body tower (stacked weights: one slice per task, extra towers last)."""
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    w = [m for m in model.body.towers.net.net if hasattr(m, "weight")][0].weight.grad
    return [0.0 if w is None else float(w[i].abs().sum()) for i in range(w.shape[0])]


def _terms(model, data, loss_cfg: LossConfig):
    split = DeviceSplit.from_split(data.splits["train"]).slice(0, 512)
    loss_fn = build_loss(loss_cfg, data.tasks, model)
    logits, extras = model.forward_outputs(split)
    out = loss_fn(logits.t(), split.labels, 0, extras)
    return dict(zip(loss_fn.term_names, [t for t in out.terms])), out, extras


def test_escm2_dr_gradients_reach_exactly_the_paper_towers(data2) -> None:
    torch.manual_seed(0)
    model = build_model(small("escm2_dr", imputation_dims=[8]), data2.features, data2.tasks)
    terms, _, _ = _terms(model, data2, LossConfig())
    assert list(terms) == ["bce_ctr", "bce_ctcvr", "escm2_cvr", "escm2_imputation"]
    ctr, cvr = _tower_grads(model, terms["escm2_cvr"])
    assert ctr == 0.0 and cvr > 0.0  # the risk trains the CVR tower only (propensity detached)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.imputation.parameters())
    ctr, cvr = _tower_grads(model, terms["escm2_imputation"])
    assert ctr == 0.0 and cvr == 0.0  # the imputation loss trains the imputation tower only
    assert sum(float(p.grad.abs().sum()) for p in model.imputation.parameters()) > 0
    ctr, cvr = _tower_grads(model, terms["bce_ctr"])
    assert ctr > 0 and cvr == 0.0


def test_escm2_ips_lambda_g_scales_the_ctcvr_loss(data2) -> None:
    torch.manual_seed(0)
    model = build_model(small("escm2_ips"), data2.features, data2.tasks)
    cfg = LossConfig(escm2=ESCM2Config(lambda_c=0.5, lambda_g=3.0))
    terms, out, _ = _terms(model, data2, cfg)
    expected = terms["bce_ctr"] + 3.0 * terms["bce_ctcvr"] + terms["escm2_cvr"]
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-5)


def test_dcmt_gradients_and_twin_towers(data2) -> None:
    torch.manual_seed(0)
    model = build_model(small("dcmt"), data2.features, data2.tasks)
    terms, _, extras = _terms(model, data2, LossConfig(dcmt=DCMTConfig(lambda_s=0.1)))
    assert list(terms) == ["bce_ctr", "bce_ctcvr", "dcmt_cvr", "dcmt_soft"]
    ctr, factual, counter = _tower_grads(model, terms["dcmt_cvr"])
    assert ctr == 0.0 and factual > 0 and counter > 0
    ctr, factual, counter = _tower_grads(model, terms["dcmt_soft"])
    assert ctr == 0.0 and factual > 0 and counter > 0
    # the served model has T outputs; the counterfactual twin is training-only
    assert model.forward_tensor(DeviceSplit.from_split(data2.splits["val"]).slice(0, 4)).shape == (2, 4)
    assert set(extras) == {"ctr_logit", "cvr_logit", "cvr_cf_logit"}


def test_esm2_decomposition_sums_to_the_purchase_probability(data3) -> None:
    torch.manual_seed(0)
    model = build_model(small("esm2"), data3.features, data3.tasks)
    batch = DeviceSplit.from_split(data3.splits["val"]).slice(0, 64)
    with torch.no_grad():
        raw = model.forward_raw(batch).double()
        logits, extras = model.forward_outputs(batch)
    y1, y2, y3, y4 = (torch.sigmoid(raw[i]) for i in range(4))
    p_buy = torch.sigmoid(logits[2].double())
    torch.testing.assert_close(p_buy, y1 * (y2 * y3 + (1 - y2) * y4), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(torch.exp(extras["esm2_paths"].double()).sum(0), p_buy,
                               rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(torch.sigmoid(logits[1].double()), y1 * y2, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(logits[0].double(), raw[0], rtol=1e-6, atol=1e-6)


def test_three_step_journey_cascade_is_monotone(data3) -> None:
    torch.manual_seed(0)
    for head in ("esmm", "escm2_ips", "dcmt"):
        model = build_model(small(head), data3.features, data3.tasks)
        with torch.no_grad():
            p = torch.sigmoid(model.forward_tensor(DeviceSplit.from_split(data3.splits["val"])))
        assert torch.all(p[1] <= p[0] + 1e-7) and torch.all(p[2] <= p[1] + 1e-7)


def test_journey_cascade_of_any_depth(data3) -> None:
    """Airbnb-style milestones: a 5-step chain, each milestone the product of its steps, and a
    conditional AUC per step."""
    import numpy as np

    from automtl.data.schema import TaskSpec
    from automtl.train.metrics import compute_metrics

    names = ["impression_click", "listing_view", "contact", "request", "booking"]
    tasks = [TaskSpec(names[0], "l0")] + [
        TaskSpec(n, f"l{i}", depends_on=names[i - 1], cond_name=f"{n}_step")
        for i, n in enumerate(names[1:], start=1)]
    torch.manual_seed(0)
    model = build_model(small("esmm"), data3.features, tasks)
    batch = DeviceSplit.from_split(data3.splits["val"]).slice(0, 300)
    with torch.no_grad():
        raw = model.forward_raw(batch).double()
        p = torch.sigmoid(model.forward_tensor(batch).double())
    torch.testing.assert_close(p, torch.cumprod(torch.sigmoid(raw), dim=0), rtol=1e-6, atol=1e-12)
    assert torch.all(p[1:] <= p[:-1] + 1e-12)
    labels = np.cumprod(np.random.default_rng(0).random((300, 5)) < 0.7, axis=1).astype(float)
    metrics = compute_metrics(model.forward_tensor(batch).detach().t().numpy(), labels, tasks)
    assert all(np.isfinite(metrics[f"{n}_step_auc"]) for n in names[1:])


@pytest.mark.parametrize("head,n_tasks", [("esm2", 3), ("escm2_ips", 2), ("escm2_dr", 2),
                                          ("dcmt", 2), ("dcmt", 3), ("esmm", 3)])
def test_every_cascade_head_trains(head: str, n_tasks: int, data2, data3) -> None:
    data = data3 if n_tasks == 3 else data2
    cfg = TrialConfig(
        data=DataConfig(options={"rows": 6000, "n_tasks": n_tasks, "seed": 1}),
        model=small(head, embedding_dim=8, tower_dims=[16],
                    imputation_dims=[16] if head == "escm2_dr" else []),
        train=TrainConfig(epochs=2, batch_size=256, lr=5e-3, device="cpu", patience=5),
    )
    grads: list[float] = []

    class Grads(Callback):
        def on_train_start(self, model) -> None:
            self.model = model

        def on_batch_end(self, epoch: int, step: int, n_steps: int) -> None:
            if not grads:  # after optimizer.step the grads of the first step are still there
                grads.extend(float(p.grad.abs().sum()) for p in self.model.parameters()
                             if p.grad is not None)

    result = fit(cfg, data, callbacks=[Grads()])
    assert grads and all(math.isfinite(g) for g in grads) and sum(grads) > 0
    for task in data.tasks:
        assert result.test[f"{task.name}_auc"] > 0.55, (head, task.name, result.test)


def test_bad_cascade_configs_are_one_line_errors(data2) -> None:
    with pytest.raises(ConfigError, match=r"model.head: esm2 needs a 3-step cascade .* have a "
                                          r"2-step cascade"):
        build_model(small("esm2"), data2.features, data2.tasks)
    with pytest.raises(ConfigError, match="model.imputation_dims: head escm2_dr needs"):
        build_model(small("escm2_dr"), data2.features, data2.tasks)
    model = build_model(small("esmm"), data2.features, data2.tasks)
    with pytest.raises(ConfigError, match="loss.dcmt: only applies to model.head dcmt"):
        build_loss(LossConfig(dcmt=DCMTConfig()), data2.tasks, model)
    no_cascade = [t.__class__(t.name, t.label) for t in data2.tasks]
    with pytest.raises(ConfigError, match="model.head: dcmt needs a task cascade"):
        build_model(small("dcmt"), data2.features, no_cascade)
    with pytest.raises(ConfigError, match="clip: the propensity floor"):
        ESCM2Config(clip=0.0).validate()


def test_train_cli_esm2_on_two_step_data_is_one_line(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "esm2.yaml"
    path.write_text("data: {name: synthetic, options: {rows: 2000, n_tasks: 2}}\n"
                    "model: {arch: shared_bottom, head: esm2}\ntrain: {epochs: 1, device: cpu}\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "esm2 needs a 3-step cascade" in err
    assert not (tmp_path / "run" / "model.pt").exists()


def test_example_configs_load_and_build(data2, data3) -> None:
    from automtl.resources import resource_dir

    for name, head in (("esm2", "esm2"), ("escm2_ips", "escm2_ips"), ("escm2_dr", "escm2_dr"),
                       ("dcmt", "dcmt")):
        cfg = load_trial_config(resource_dir("studies/examples") / f"{name}.yaml")
        assert cfg.model.head == head
        data = data3 if cfg.data.options["n_tasks"] == 3 else data2
        build_model(cfg.model, data.features, data.tasks)
        build_loss(cfg.loss, data.tasks, build_model(cfg.model, data.features, data.tasks))


@pytest.mark.parametrize("head,n_tasks", [("esm2", 3), ("escm2_dr", 2), ("dcmt", 2)])
def test_cascade_heads_export(head: str, n_tasks: int, data2, data3, tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    from automtl.config import from_dict
    from automtl.yamlio import dump_yaml
    from automtl.export import (TensorModel, example_inputs, export_onnx, export_torchscript,
                                fuxictr_config, rechub_script)

    data = data3 if n_tasks == 3 else data2
    torch.manual_seed(0)
    cfg = TrialConfig(model=small(head, bottom_dims=[8], imputation_dims=[8]),
                      loss=LossConfig(escm2=ESCM2Config() if head.startswith("escm2") else None))
    # yaml / json: the config round-trips
    import yaml

    assert from_dict(TrialConfig, yaml.safe_load(dump_yaml(cfg))) == cfg
    model = build_model(cfg.model, data.features, data.tasks).eval()
    example = example_inputs(data.splits["val"], data.features, rows=16)
    inputs = example_inputs(data.splits["val"], data.features, rows=40, start=16)
    with torch.no_grad():
        ref = np.stack([t.numpy() for t in TensorModel(model, data.features)(*inputs)])
    assert ref.shape == (n_tasks, 40)  # the extra towers are not outputs
    sess = ort.InferenceSession(str(export_onnx(model, data.features, data.tasks, example,
                                                tmp_path / "m.onnx")))
    got = np.stack(sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}))
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    path = export_torchscript(model, data.features, data.tasks, example, tmp_path / "m.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's notice
        ts = torch.jit.load(str(path))
    with torch.no_grad():
        np.testing.assert_allclose(np.stack([t.numpy() for t in ts(*inputs)]), ref, atol=1e-6)
    # foreign stacks list what they lack
    for dropped in (rechub_script(cfg, data.features, data.tasks).dropped,
                    fuxictr_config(cfg, data.features, data.tasks).dropped):
        assert any(d.startswith(f"model.head={head} (") for d in dropped), dropped


def test_selection_bias_option() -> None:
    import numpy as np

    from automtl.data import do_click_truth, generate_synthetic
    from automtl.errors import DataError

    plain = generate_synthetic(rows=4000, seed=3)
    same = generate_synthetic(rows=4000, seed=3, selection_bias=0)
    biased = generate_synthetic(rows=4000, seed=3, selection_bias=2.0)
    tr, trb = plain.splits["train"], biased.splits["train"]
    # selection_bias = 0 is the unbiased data, bit for bit; the bias moves only the click
    np.testing.assert_array_equal(tr.labels, same.splits["train"].labels)
    np.testing.assert_array_equal(tr.sparse, trb.sparse)
    assert "selection_bias" not in plain.meta["options"]
    assert biased.meta["options"]["selection_bias"] == 2.0
    # the true post-click conversion is unchanged (the bias acts on the click only)...
    np.testing.assert_allclose(do_click_truth(tr), do_click_truth(trb), rtol=1e-5)
    cvr = do_click_truth(trb)
    assert ((cvr > 0) & (cvr <= 1)).all()
    # ...but clicks now land where conversion is likely: the clicked rows are a biased sample
    def gap(split):
        c = split.labels[:, 0] > 0.5
        return do_click_truth(split)[c].mean() / do_click_truth(split)[~c].mean()

    assert gap(trb) > gap(tr) + 0.2
    assert abs(trb.labels[:, 0].mean() - tr.labels[:, 0].mean()) < 0.02  # CTR kept
    for bad in (-1, float("nan"), 11):
        with pytest.raises(DataError, match="option selection_bias=.* is out of range"):
            generate_synthetic(rows=400, selection_bias=bad)


@pytest.mark.parametrize("space", ["cascade", "default"])
def test_search_samples_cascade_heads_only_where_required(space: str, data2, data3) -> None:
    import optuna

    from automtl.search.space import load_space
    from automtl.search.space_nodes import SpaceContext

    sp = load_space(space)
    for data, expect in ((data3, {"esmm", "esm2", "escm2_ips", "escm2_dr", "dcmt"}),
                         (data2, {"esmm", "escm2_ips", "escm2_dr", "dcmt"})):
        ctx = SpaceContext.from_dataset(data)
        assert ("deep_cascade" in ctx.capabilities) == (len(data.tasks) == 3)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        heads = set()
        for _ in range(80):
            trial = study.ask()
            cfg = sp.suggest(trial, ctx, {"data": {"options": {"n_tasks": len(data.tasks)}}})
            heads.add(cfg.model.head)
            if cfg.model.head == "escm2_dr":
                assert cfg.model.imputation_dims and cfg.loss.escm2 is not None
            if cfg.model.head == "dcmt":
                assert cfg.loss.dcmt is not None and cfg.loss.escm2 is None
            study.tell(trial, 0.0)
        assert expect <= heads and ("esm2" in heads) == (len(data.tasks) == 3)
    with pytest.raises(ConfigError, match="deep_cascade"):
        from automtl.search.space import parse_space

        parse_space({"params": {"model.head": {"choices": {"esm2": {"requires": "deep"}}}}}, "x")


def test_cascade_heads_on_every_registered_arch(data3) -> None:
    """Extra towers are extra body tasks: every body (incl. those with their own label-reading
    loss terms) trains with them."""
    from automtl.models import ARCHS

    split = DeviceSplit.from_split(data3.splits["train"]).slice(0, 256)
    for arch in sorted(ARCHS):
        for head in ("dcmt", "esm2", "escm2_dr"):
            torch.manual_seed(0)
            cfg = ModelConfig(arch=arch, head=head, embedding_dim=4, expert_dims=[8],
                              bottom_dims=[8], tower_dims=[8], n_experts=2, imputation_dims=[8],
                              wide=arch == "mmoe")
            model = build_model(cfg, data3.features, data3.tasks)
            loss_fn = build_loss(LossConfig(), data3.tasks, model)
            logits, extras = model.forward_outputs(split)
            out = loss_fn(logits.t(), split.labels, 0, extras)
            out.total.backward()
            assert torch.isfinite(out.terms).all(), (arch, head)
