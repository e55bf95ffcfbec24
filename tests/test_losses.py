"""Loss terms equal hand-computed values on tiny tensors; cascade-only terms need a cascade."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from automtl.config import (
    CalibratorConfig,
    DependencyConfig,
    LossConfig,
    PWiseRConfig,
    WeightingConfig,
)
from automtl.data.schema import TaskSpec
from automtl.errors import ConfigError
from automtl.losses import (
    GradNorm,
    PLEDecay,
    UncertaintyWeighting,
    build_loss,
    build_weighting,
    calibrator_loss,
    cascade_chain,
    dependency_loss,
    margin_pair_loss,
    pwiser_loss,
    task_bce,
)

CASCADE3 = [
    TaskSpec("ctr", "click"),
    TaskSpec("ctcart", "cart", depends_on="ctr", cond_name="cart"),
    TaskSpec("ctcvr", "buy", depends_on="ctcart", cond_name="cvr"),
]
INDEPENDENT = [TaskSpec("income", "income"), TaskSpec("marital", "never_married")]


def test_bce_matches_formula() -> None:
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sig = torch.sigmoid(logits)
    expected = -(labels * sig.log() + (1 - labels) * (1 - sig).log()).mean(0)
    assert torch.allclose(task_bce(logits, labels), expected, atol=1e-6)
    assert task_bce(logits, labels)[0].item() == pytest.approx((math.log(2) + math.log(1 + math.e)) / 2, abs=1e-6)


def test_pwiser_hand_computed() -> None:
    # sample 0 converts (0.9); 1, 2 click only (0.5, 0.7); 3, 4 no click (0.2, 0.95)
    s = torch.tensor([0.9, 0.5, 0.7, 0.2, 0.95])
    click = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
    conv = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    # click-only pairs: (0.5-0.9+0.3)<0 -> 0, (0.7-0.9+0.3)=0.1 -> 0.01; mean over 2 pairs
    # no-click pairs:   (0.2-0.9+0.3)<0 -> 0, (0.95-0.9+0.3)=0.35 -> 0.1225; mean over 2 pairs
    expected = 0.01 / 2 + 0.1225 / 2
    assert pwiser_loss(s, click, conv, 0.3, 0.3).item() == pytest.approx(expected, abs=1e-6)
    # different margins act on their own pair sets: m1 = 0 removes the click-only violation
    assert pwiser_loss(s, click, conv, 0.0, 0.3).item() == pytest.approx(0.1225 / 2, abs=1e-6)


def test_pwiser_zero_when_every_margin_holds() -> None:
    s = torch.tensor([0.9, 0.5, 0.55, 0.2, 0.1, 0.95], requires_grad=True)
    click = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    conv = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    loss = pwiser_loss(s, click, conv, 0.3, 0.3)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(s.grad) == 0
    # no conversions in the batch: no pairs, zero loss
    assert pwiser_loss(s.detach(), click, torch.zeros(6), 0.3, 0.3).item() == 0.0


def test_pair_loss_equals_brute_force_with_gradients() -> None:
    gen = torch.Generator().manual_seed(3)
    s = torch.rand(40, generator=gen, dtype=torch.float64).requires_grad_(True)
    pos = torch.rand(40, generator=gen) < 0.3
    neg = ~pos & (torch.rand(40, generator=gen) < 0.8)
    fast = margin_pair_loss(s, pos, neg, 0.25)
    brute = s.new_zeros(())
    pairs = 0
    for j in range(40):
        for i in range(40):
            if pos[j] and neg[i]:
                brute = brute + torch.clamp_min(s[i] - s[j] + 0.25, 0) ** 2
                pairs += 1
    brute = brute / pairs
    g_fast, = torch.autograd.grad(fast, s)
    g_brute, = torch.autograd.grad(brute, s)
    assert fast.item() == pytest.approx(brute.item(), rel=1e-5)
    assert torch.allclose(g_fast, g_brute, atol=1e-5)


def test_dependency_loss_hand_computed() -> None:
    p = torch.tensor([[0.8, 0.5, 0.1], [0.4, 0.3, 0.2]])
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # pair 1: gaps (0.3, 0.1) vs (0, 1) -> mse (0.09 + 0.81) / 2 = 0.45, times 0.1
    # pair 2: gaps (0.4, 0.1) vs (1, 0) -> mse (0.36 + 0.01) / 2 = 0.185, times 0.2
    got = dependency_loss(p, y, torch.tensor([0.1, 0.2]))
    assert got.item() == pytest.approx(0.045 + 0.037, abs=1e-6)


def test_calibrator_hand_computed() -> None:
    p = torch.tensor([[0.3, 0.5, 0.1], [0.4, 0.3, 0.6]])
    # row 1: 0.2 + 0; row 2: 0 + 0.3; mean 0.25; alpha 0.6
    assert calibrator_loss(p, 0.6).item() == pytest.approx(0.15, abs=1e-6)
    assert calibrator_loss(torch.tensor([[0.5, 0.4, 0.1]]), 0.6).item() == 0.0


def test_ple_decay_weights() -> None:
    w = build_weighting(WeightingConfig(scheme="ple_decay", weights={"a": 1.0, "b": 2.0}, gamma=0.5),
                        ["a", "b"])
    assert isinstance(w, PLEDecay)
    losses = torch.tensor([1.0, 1.0])
    assert w.combine(losses, 0).item() == pytest.approx(3.0)
    assert w.combine(losses, 2).item() == pytest.approx(0.75)
    assert torch.allclose(w.current_weights(2), torch.tensor([0.25, 0.5]))


def test_uncertainty_weighting_value_and_gradient() -> None:
    w = build_weighting(WeightingConfig(scheme="uncertainty"), ["a", "b"])
    assert isinstance(w, UncertaintyWeighting)
    with torch.no_grad():
        w.log_var.copy_(torch.tensor([0.0, math.log(2.0)]))
    losses = torch.tensor([0.5, 2.0])
    total = w.combine(losses, 0)
    # exp(0) * 0.5 + 0 + exp(-log 2) * 2 + log(2) / 2
    assert total.item() == pytest.approx(0.5 + 1.0 + 0.5 * math.log(2.0), abs=1e-6)
    total.backward()
    # d/ds (exp(-s) L + s/2) = -exp(-s) L + 1/2: 0 for (s=0, L=0.5), -0.5 for (s=log 2, L=2)
    assert torch.allclose(w.log_var.grad, torch.tensor([0.0, -0.5]), atol=1e-6)


class _TwoTaskNet(nn.Module):
    """A real two-task network with one shared layer (GradNorm needs one)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(4, 8)
        self.heads = nn.ModuleList([nn.Linear(8, 1), nn.Linear(8, 1)])

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return [self.shared.weight, self.shared.bias]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.shared(x))
        return torch.cat([head(h) for head in self.heads], dim=1)


def test_gradnorm_weight_gradient_and_renormalisation() -> None:
    net = _TwoTaskNet()
    gn = build_weighting(WeightingConfig(scheme="gradnorm", gradnorm_alpha=1.5), ["a", "b"], net)
    assert isinstance(gn, GradNorm) and gn.active
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    y = (torch.rand(16, 2, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    losses = task_bce(net(x), y)
    gn.before_backward(losses)
    # at step 0 every loss ratio is 1, so the target is mean(G) for both tasks, and
    # dL_grad/dw_k = sign(G_k - mean G) * g_k with G_k = w_k g_k, g_k = ||grad_W L_k||
    g = []
    for k in range(2):
        grads = torch.autograd.grad(losses[k], net.last_shared_parameters(), retain_graph=True)
        g.append(torch.sqrt(sum((t ** 2).sum() for t in grads)))
    g_t = torch.stack(g)
    expected = torch.sign(g_t - g_t.mean()) * g_t
    assert torch.allclose(gn.task_weight.grad, expected, atol=1e-5)
    # the model is trained on the weighted sum with the weights held constant
    total = gn.combine(losses, 0)
    assert total.grad_fn is not None and total.item() == pytest.approx(losses.sum().item(), rel=1e-6)
    with torch.no_grad():
        gn.task_weight.copy_(torch.tensor([3.0, 1.0]))
    gn.after_step()
    assert gn.task_weight.sum().item() == pytest.approx(2.0)
    assert torch.allclose(gn.task_weight, torch.tensor([1.5, 0.5]))


def test_gradnorm_without_shared_layer_is_fixed() -> None:
    gn = build_weighting(WeightingConfig(scheme="gradnorm", weights={"b": 2.0}), ["a", "b"],
                         nn.Linear(2, 2))
    assert isinstance(gn, GradNorm) and not gn.active
    losses = torch.tensor([1.0, 3.0], requires_grad=True)
    gn.before_backward(losses)
    assert gn.combine(losses, 0).item() == pytest.approx(7.0)


def test_cascade_chain() -> None:
    assert cascade_chain(CASCADE3) == [0, 1, 2]
    assert cascade_chain(list(reversed(CASCADE3))) == [2, 1, 0]
    assert cascade_chain(INDEPENDENT) == []


@pytest.mark.parametrize("term", ["pwiser", "dependency", "calibrator"])
def test_cascade_only_terms_need_a_cascade(term: str) -> None:
    cfg = LossConfig(**{term: {"pwiser": PWiseRConfig(), "dependency": DependencyConfig(),
                               "calibrator": CalibratorConfig()}[term]})
    with pytest.raises(ConfigError, match=rf"loss\.{term}: needs a task cascade.*census"):
        build_loss(cfg, INDEPENDENT, dataset_name="census-income")


def test_mix_total_is_weighted_bce_plus_terms() -> None:
    cfg = LossConfig(pwiser=PWiseRConfig(lam=0.5), dependency=DependencyConfig(tau=[0.1]),
                     calibrator=CalibratorConfig(alpha=0.6),
                     weighting=WeightingConfig(weights={"ctr": 2.0}))
    loss = build_loss(cfg, CASCADE3)
    assert loss.term_names == ["bce_ctr", "bce_ctcart", "bce_ctcvr", "pwiser", "dependency",
                               "calibrator"]
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 3, generator=gen)
    click = (torch.rand(64, generator=gen) < 0.5).float()
    cart = click * (torch.rand(64, generator=gen) < 0.5).float()
    buy = cart * (torch.rand(64, generator=gen) < 0.5).float()
    labels = torch.stack([click, cart, buy], 1)
    out = loss(logits, labels, 0)
    p = torch.sigmoid(logits)
    bce = task_bce(logits, labels)
    expected = (2 * bce[0] + bce[1] + bce[2]
                + 0.5 * pwiser_loss(p[:, 2], click, buy, 0.3, 0.3)
                + dependency_loss(p, labels, torch.tensor([0.1, 0.1]))
                + calibrator_loss(p, 0.6))
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.terms.shape == (6,)


def test_mix_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"loss\.dependency\.tau: give 1 or 2 values"):
        build_loss(LossConfig(dependency=DependencyConfig(tau=[0.1, 0.2, 0.3])), CASCADE3)
    with pytest.raises(ConfigError, match=r"loss\.pwiser\.task: unknown task 'cvr'"):
        build_loss(LossConfig(pwiser=PWiseRConfig(task="cvr")), CASCADE3)
    with pytest.raises(ConfigError, match=r"loss\.weighting\.weights\.click: unknown task"):
        build_loss(LossConfig(weighting=WeightingConfig(weights={"click": 1.0})), CASCADE3)
