"""Preference-conditioned training (issue 16): the simplex grid, FiLM conditioning on every
architecture and site, zero FiLM = the unconditioned network, the weight vector reaching the loss,
and `fit` producing a sweep of K points."""

from __future__ import annotations

import itertools

import pytest
import torch

from automtl.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    PWiseRConfig,
    TrainConfig,
    TrialConfig,
    WeightingConfig,
)
from automtl.errors import ConfigError
from automtl.losses import build_loss, simplex_grid
from automtl.models import ARCHS, build_model
from automtl.models.film import conditioner_of, set_preference
from automtl.train import Callback
from tests.test_models import FEATURES, TASKS, make_batch, small_cfg


pytestmark = pytest.mark.usefixtures("one_thread")


def test_simplex_grid_sizes_and_sums() -> None:
    g2 = simplex_grid(2)
    assert len(g2) == 11 and g2[0] == [1.0, 0.0] and g2[-1] == [0.0, 1.0]
    assert len(simplex_grid(2, 5)) == 5
    g3 = simplex_grid(3)
    assert len(g3) == 15 and len({tuple(v) for v in g3}) == 15
    assert len(simplex_grid(4, 20)) == 20
    for v in itertools.chain(g2, g3):
        assert abs(sum(v) - 1.0) < 1e-9 and min(v) >= 0


def test_preference_vector_of_huge_weights_is_their_direction() -> None:
    """A config's preference is a direction: weights past float32's range (an edited export,
    `ctr: 1e308`) must not turn the served vector into nan or the wrong corner."""
    from automtl.models.film import preference_vector

    assert preference_vector({"ctr": 1e308, "ctcvr": 1e308}, ["ctr", "ctcvr"]).tolist() \
        == [0.5, 0.5]
    big = preference_vector({"ctr": 1e39, "ctcvr": 1.0}, ["ctr", "ctcvr"])
    assert torch.isfinite(big).all() and big.tolist() == pytest.approx([1.0, 0.0])
    assert preference_vector({"ctcvr": 5e-324}, ["ctr", "ctcvr"]).tolist() == [0.0, 1.0]
    with pytest.raises(ConfigError, match="positive sum"):
        preference_vector({"ctr": 0.0}, ["ctr", "ctcvr"])


SITES = {"single": [["towers"], ["bottom"]],
         "shared_bottom": [["towers"], ["bottom"]],
         "mmoe": [["towers"], ["experts", "gates"], ["bottom"]],
         "ple": [["towers", "experts"], ["gates"]],
         "aitm": [["towers"], ["bottom"]],
         "apem": [["towers"]]}


def _weighting(sites: list[str], **kw: object) -> WeightingConfig:
    return WeightingConfig(scheme="conditioned", film=sites, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", sorted(set(SITES) & set(ARCHS)))
@pytest.mark.parametrize("head", ["plain", "esmm"])
def test_weight_vector_changes_the_output_and_zero_film_is_unconditioned(
        arch: str, head: str) -> None:
    tasks = TASKS[2]
    batch = make_batch(64, 2)
    cfg = small_cfg(arch=arch, head=head, transformer_heads=1)
    torch.manual_seed(0)
    plain = build_model(cfg, FEATURES, tasks).eval()
    for sites in SITES[arch]:
        torch.manual_seed(0)
        model = build_model(cfg, FEATURES, tasks, _weighting(sites)).eval()
        # freshly built: every FiLM generator ends in zeros -> exactly the unconditioned network
        with torch.no_grad():
            base = plain.forward_tensor(batch)
            assert torch.equal(model.forward_tensor(batch), base)
            for p in conditioner_of(model).parameters():
                p.normal_(0, 0.5)
            set_preference(model, torch.tensor([0.9, 0.1]))
            a = model.forward_tensor(batch)
            set_preference(model, torch.tensor([0.1, 0.9]))
            b = model.forward_tensor(batch)
            assert not torch.allclose(a, b), (arch, sites)
            # per-row preferences: row i conditioned on its own vector
            rows = torch.tensor([[0.9, 0.1]] * 32 + [[0.1, 0.9]] * 32)
            set_preference(model, rows)
            c = model.forward_tensor(batch)
            assert torch.allclose(c[:, :32], a[:, :32], atol=1e-5)
            assert torch.allclose(c[:, 32:], b[:, 32:], atol=1e-5)
            # zero the generators again: the unconditioned network for every vector
            for p in conditioner_of(model).parameters():
                p.zero_()
            assert torch.equal(model.forward_tensor(batch), base)
            set_preference(model, None)


def test_site_missing_from_the_arch_is_one_line_error() -> None:
    with pytest.raises(ConfigError, match="film: arch shared_bottom has no experts or gates"):
        build_model(small_cfg(arch="shared_bottom"), FEATURES, TASKS[2],
                    _weighting(["experts", "gates"]))
    # a site the arch lacks is skipped when another one is there
    model = build_model(small_cfg(arch="shared_bottom"), FEATURES, TASKS[2],
                        _weighting(["towers", "experts"]))
    assert conditioner_of(model).sites == ["towers"]
    with pytest.raises(ConfigError, match="film: unknown site"):
        WeightingConfig(film=["nowhere"]).validate()


@pytest.mark.parametrize("draw", ["batch", "row"])
def test_weight_vector_reaches_the_loss_and_the_film_gradients(draw: str) -> None:
    tasks = TASKS[2]
    batch = make_batch(128, 2)
    w = _weighting(["towers", "experts"], draw=draw, cosine=0.5)
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="mmoe"), FEATURES, tasks, w)
    loss = build_loss(LossConfig(weighting=w, pwiser=PWiseRConfig()), tasks, model)
    weighting = loss.weighting
    torch.manual_seed(1)
    weighting.before_forward(128)
    drawn = weighting.pref
    assert drawn.shape == ((128, 2) if draw == "row" else (1, 2))
    assert torch.allclose(drawn.sum(1), torch.ones(len(drawn)))
    out = loss(model.forward_tensor(batch).t(), batch.labels)
    out.total.backward()
    grads = [p.grad for p in conditioner_of(model).parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    # the same logits under two vectors give two totals (r enters the loss)
    logits = model.forward_tensor(batch).t().detach()
    weighting.pref = torch.tensor([[1.0, 0.0]])
    t1 = loss(logits, batch.labels).total
    weighting.pref = torch.tensor([[0.0, 1.0]])
    t2 = loss(logits, batch.labels).total
    assert not torch.isclose(t1, t2)
    weighting.after_step()
    assert conditioner_of(model).pref is None


def test_uniform_vector_equals_default_fixed_weighting() -> None:
    tasks = TASKS[2]
    batch = make_batch(64, 2)
    logits = torch.randn(64, 2)
    cond = build_loss(LossConfig(weighting=_weighting(["towers"])), tasks)
    cond.weighting.pref = torch.tensor([[0.5, 0.5]])
    fixed = build_loss(LossConfig(), tasks)
    assert torch.allclose(cond(logits, batch.labels).total, fixed(logits, batch.labels).total)


def _trial(arch: str = "mmoe", head: str = "plain", **w: object) -> TrialConfig:
    data = DataConfig(options={"rows": 4000, "seed": 1})
    model = ModelConfig(arch=arch, head=head, embedding_dim=4, expert_dims=[16], n_experts=2,
                        bottom_dims=[16], tower_dims=[8])
    train = TrainConfig(epochs=2, batch_size=512, lr=1e-2, seed=0, device="cpu")
    weighting = WeightingConfig(scheme="conditioned", **w)  # type: ignore[arg-type]
    return TrialConfig(data=data, model=model, loss=LossConfig(weighting=weighting), train=train)


def test_select_on_an_unknown_metric_is_refused_before_training() -> None:
    """A hand-edited `select_on` naming no metric of the data made the knee all-nan, and the
    trial silently reported the first corner; a cascade's conditional metric is accepted."""
    from automtl.data import load_dataset
    from automtl.train import fit

    ds = load_dataset(_trial().data)
    started: list[int] = []

    class Listen(Callback):
        def on_train_start(self, model: object) -> None:
            started.append(1)

    with pytest.raises(ConfigError, match=r"select_on: 'foo_auc' is not a metric .*cvr_auc"):
        fit(_trial(head="esmm", select_on=["foo_auc"]), ds, callbacks=[Listen()])
    assert not started
    fit(_trial(head="esmm", select_on=["ctcvr_auc", "cvr_auc"]), ds)


def test_fit_sweeps_k_points_and_reports_one() -> None:
    from automtl.data import load_dataset
    from automtl.train import fit

    cfg = _trial(head="esmm", sweep_points=5)
    ds = load_dataset(cfg.data)
    seen: list[int] = []

    class Listen(Callback):
        def on_epoch_end(self, epoch: int, record: object) -> None:
            seen.append(len(record.sweep))  # type: ignore[attr-defined]

    result = fit(cfg, ds, callbacks=[Listen()])
    assert seen == [3, 3]  # every epoch: the coarse sweep (corners and centre) only
    assert [p.weights["ctr"] for p in result.history[0].sweep] == [1.0, 0.5, 0.0]
    assert len(result.sweep) == 5
    assert [p.weights["ctr"] for p in result.sweep] == [1.0, 0.75, 0.5, 0.25, 0.0]
    point = result.sweep[result.sweep_index]
    assert result.val == point.val and result.test == point.test
    assert all(p.test and p.val["ctr_auc"] > 0.5 for p in result.sweep)
    # the extremes really trade the tasks off: ctr best near (1, 0), ctcvr best near (0, 1)
    aucs = [p.val["ctr_auc"] for p in result.sweep]
    assert max(aucs) - min(aucs) > 0
    # serving preference given: that point is reported
    again = fit(_trial(head="esmm", sweep_points=5, preference={"ctr": 3, "ctcvr": 1}), ds)
    assert again.sweep_index == 1
    assert conditioner_of(again.model).pref is None
    # the epochs also sweep the served vector (what they report), but early stopping scores the
    # same corners and centre: the same epoch and the same curve as without a preference
    assert [p.weights["ctr"] for p in again.history[0].sweep] == [1.0, 0.75, 0.5, 0.0]
    assert again.history[0].val == again.history[0].sweep[1].val
    assert again.best_epoch == result.best_epoch
    assert [p.val for p in again.sweep] == [p.val for p in result.sweep]


class _BodyRows(Callback):
    """Counts the rows the body sees in evaluation (every forward outside training), and
    zeroes the body after every step of the epochs after `wreck_after` (their validation sees
    constant outputs, AUC 0.5: epoch `wreck_after` is the best one, not the last)."""

    def __init__(self, wreck_after: int = 0) -> None:
        self.rows, self.wreck_after, self.model = 0, wreck_after, None

    def on_train_start(self, model: torch.nn.Module) -> None:
        self.model = model

        def count(module: torch.nn.Module, args: tuple) -> None:
            if not model.training:
                self.rows += args[0].shape[-2]
        model.body.register_forward_pre_hook(count)

    def on_batch_end(self, epoch: int, step: int, n_steps: int) -> None:
        if self.wreck_after and epoch > self.wreck_after:
            with torch.no_grad():
                for p in self.model.body.parameters():  # type: ignore[union-attr]
                    p.zero_()


def test_full_sweep_only_once_on_the_selected_weights_and_reproducible() -> None:
    """The compute of a conditioned trial's validation: the coarse vectors every epoch, the
    rest of the grid once, the test split at every vector; and the stored curve is exactly a
    fresh sweep of the returned (best-epoch) model, also when the best epoch is not the last."""
    from automtl.data import load_dataset
    from automtl.train import fit, sweep_eval
    from automtl.train.cache import device_split

    cfg = _trial(sweep_points=7)
    cfg.train.epochs = cfg.train.patience = 3
    cfg.train.batch_size = 128  # enough steps for epoch 1 to beat the wrecked epochs 2-3
    ds = load_dataset(cfg.data)
    n_val, n_test = len(ds.splits["val"]), len(ds.splits["test"])
    rows = _BodyRows(wreck_after=1)
    result = fit(cfg, ds, callbacks=[rows])
    assert result.best_epoch == 1 and result.epochs_run == 3
    # 3 coarse vectors x 3 epochs, the 4 others once, 7 on test
    assert rows.rows == 3 * 3 * n_val + 4 * n_val + 7 * n_test
    assert [len(r.sweep) for r in result.history] == [3, 3, 3]
    fresh = sweep_eval(result.model, device_split(ds, "val", torch.device("cpu")), ds.tasks,
                       [p.weights for p in result.sweep], cfg.train.eval_batch_size)
    assert [p.val for p in result.sweep] == fresh
    assert result.val == result.sweep[result.sweep_index].val
    # the coarse points of the selected epoch are the full sweep's points at those vectors
    coarse = {p.weights["ctr"]: p.val for p in result.history[0].sweep}
    assert {p.weights["ctr"]: p.val for p in result.sweep if p.weights["ctr"] in coarse} == coarse


@pytest.mark.parametrize("space_name", ["conditioned", "quick"])
def test_shipped_spaces_sample_buildable_conditioned_models(space_name: str) -> None:
    import optuna

    from automtl.search import SpaceContext, load_space

    space = load_space(space_name)
    ctx = SpaceContext(["ctr", "ctcvr"], 1, frozenset({"cascade", "sequences"}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    built = 0
    batch = make_batch(16, 2)
    for _ in range(80):
        cfg = space.suggest(study.ask(), ctx, {})
        if cfg.loss.weighting.scheme != "conditioned":
            continue
        if cfg.model.bottom != "shared":  # transformer bottoms: other tests build them
            continue
        model = build_model(cfg.model, FEATURES, TASKS[2], cfg.loss.weighting)
        set_preference(model, torch.tensor([0.3, 0.7]))
        assert model.forward_tensor(batch).shape == (2, 16)
        built += 1
    assert built >= 3


def test_cosine_term_sees_scale_normalised_losses() -> None:
    """The cosine term compares r with L / s (s: running mean of each task's loss): a task
    whose losses are all 10x larger changes nothing in it, while the raw cos(r, L) would move."""
    torch.manual_seed(0)
    seq = [torch.rand(2) * 0.3 + 0.05 for _ in range(20)]
    r = torch.tensor([[0.7, 0.3]])
    cos_terms, scales = [], []
    for factor in (1.0, 10.0):
        w = build_loss(LossConfig(weighting=_weighting(["bottom"], cosine=1.0)),
                       TASKS[2]).weighting
        plain = build_loss(LossConfig(weighting=_weighting(["bottom"])), TASKS[2]).weighting
        for losses in seq:
            scaled = losses * torch.tensor([1.0, factor])
            w.pref = plain.pref = r
            total = w.combine(scaled, 0)
        cos_terms.append(float(plain.combine(scaled, 0) - total))
        raw = float(torch.nn.functional.cosine_similarity(r[0], scaled, dim=0))
        assert abs(cos_terms[-1] - raw) > 1e-3  # not the raw cosine
        scales.append(w.scale.clone())
    assert cos_terms[0] == pytest.approx(cos_terms[1], abs=1e-5)
    assert torch.allclose(scales[1], scales[0] * torch.tensor([1.0, 10.0]))
    # row mode: the same scale from the batch's mean row losses
    w = build_loss(LossConfig(weighting=_weighting(["bottom"], draw="row", cosine=0.5)),
                   TASKS[2]).weighting
    w.pref = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    rows = torch.tensor([[0.2, 0.1], [0.4, 0.3]])
    w.combine_rows(rows, 0)
    assert torch.allclose(w.scale, rows.mean(0))


@pytest.mark.parametrize("arch", ["mmoe", "ple", "shared_bottom"])
def test_sweep_shares_the_bottom_and_matches_one_vector_at_a_time(arch: str) -> None:
    """sweep_eval runs the bottom once per batch for every vector: the same metrics as
    evaluating the model under each vector in turn (`evaluate`, the fixed trials' path)."""
    from automtl.data import load_dataset
    from automtl.train.cache import device_split
    from automtl.train.metrics import evaluate
    from automtl.train import sweep_eval

    cfg = _trial(arch=arch, film=["bottom", "towers"])
    ds = load_dataset(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, ds.features, ds.tasks, cfg.loss.weighting)
    for p in conditioner_of(model).parameters():
        torch.nn.init.normal_(p, 0, 0.3)
    val = device_split(ds, "val", torch.device("cpu"))
    vectors = [{"ctr": 1.0, "ctcvr": 0.0}, {"ctr": 0.3, "ctcvr": 0.7}]
    calls = []
    model.bottom.register_forward_hook(lambda m, a, o: calls.append(1))
    swept = sweep_eval(model, val, ds.tasks, vectors, 700)
    assert len(calls) == -(-len(val) // 700)  # once per batch, not per batch and vector
    one = []
    for v in vectors:
        set_preference(model, torch.tensor([v["ctr"], v["ctcvr"]]))
        one.append(evaluate(model, val, ds.tasks, 700))
    set_preference(model, None)
    assert swept[0] != swept[1]
    for a, b in zip(swept, one):
        assert a.keys() == b.keys()
        assert all(a[k] == pytest.approx(b[k], abs=1e-9, nan_ok=True) for k in a)
