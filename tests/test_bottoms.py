"""Unit tests of the task-specific bottoms' building blocks (DTRN TIM/TRM, APEM, STEM)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from automtl.models.bottoms._attention import multihead_attention
from automtl.models.bottoms.apem import ASRG, GammaSchedule, PatternSelector, smooth_step
from automtl.models.bottoms.dtrn import (
    INJECTIONS,
    TIM,
    TRM,
    CondLayerNorm,
    ConditionalTransformer,
    HyperNetwork,
)
from automtl.models.bottoms.stem import AFTBGate

T, M, B, L, E = 2, 2, 5, 7, 8


pytestmark = pytest.mark.usefixtures("one_thread")


def _seq_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, B, L, E, generator=g)
    lengths = torch.tensor([[3, 7, 1, 0, 5], [2, 4, 6, 7, 0]])  # includes empty sequences
    valid = torch.arange(L)[None, None, :] < lengths[:, :, None]
    target = torch.randn(M, B, E, generator=g)
    return x, valid, target


def _randomise_hypernets(module: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for h in module.modules():
        if isinstance(h, HyperNetwork):
            with torch.no_grad():
                h.out.weight.copy_(0.3 * torch.randn(h.out.weight.shape, generator=g))
                h.out.bias.copy_(0.3 * torch.randn(h.out.bias.shape, generator=g))


# --- DTRN -----------------------------------------------------------------------------------


def test_cln_with_zero_hypernetwork_output_is_plain_layernorm() -> None:
    torch.manual_seed(0)
    cln = CondLayerNorm(E)
    with torch.no_grad():  # non-trivial affine so the test also checks gamma/beta are applied
        cln.ln.weight.uniform_(0.5, 1.5)
        cln.ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 4, E)
    plain = nn.LayerNorm(E)
    plain.load_state_dict(cln.ln.state_dict())
    torch.testing.assert_close(cln(x, torch.zeros(3, 2 * E)), plain(x))
    # and a non-zero conditioning is exactly gamma_tb * gamma * norm(x) + beta_tb + beta
    cond = torch.randn(3, 2 * E)
    g, b = cond.chunk(2, -1)
    xn = nn.functional.layer_norm(x, (E,))
    expected = (1 + g)[:, None] * cln.ln.weight * xn + b[:, None] + cln.ln.bias
    torch.testing.assert_close(cln(x, cond), expected)


def test_untrained_hypernetwork_is_plain_transformer() -> None:
    # zero-initialised hypernetwork output -> conditioning is the identity for every injection
    x, valid, target = _seq_inputs()
    for inj in INJECTIONS:
        torch.manual_seed(0)
        tr = ConditionalTransformer(E, 2, 1, inj, T, M)
        out = tr(x, valid, target)
        assert out.shape == (T, M, B, E)
        torch.testing.assert_close(out[0], out[1])  # tasks identical before any conditioning


@pytest.mark.parametrize("injection", INJECTIONS)
def test_each_injection_changes_output_and_gets_gradients(injection: str) -> None:
    x, valid, target = _seq_inputs()
    torch.manual_seed(0)
    tr = ConditionalTransformer(E, 2, 1, injection, T, M)
    base = tr(x, valid, target).detach()
    _randomise_hypernets(tr)
    out = tr(x, valid, target)
    assert torch.isfinite(out).all()
    assert (out - base).abs().max() > 1e-3  # the injected conditioning changes the output
    assert (out[0] - out[1]).abs().max() > 1e-3  # and makes it task-specific
    out.pow(2).sum().backward()
    hypers = [h for h in tr.modules() if isinstance(h, HyperNetwork)]
    assert hypers
    for h in hypers:
        for p in h.parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0
    assert tr.task_emb.weight.grad.abs().sum() > 0 and tr.seq_emb.weight.grad.abs().sum() > 0


def test_injection_sites_match_the_choice() -> None:
    sites = {}
    for inj in INJECTIONS:
        tr = ConditionalTransformer(E, 2, 1, inj, T, M)
        sites[inj] = sorted({k.split(".")[-1] for k, _ in tr.encoder[0].hyper.named_children()})
    assert sites == {"ln": ["ln1", "ln2"], "qkv": ["k", "q", "v"], "ffn1": ["ffn1"],
                     "ffn2": ["ffn2"]}


@pytest.mark.parametrize("injection", INJECTIONS)
def test_padding_positions_never_change_the_output(injection: str) -> None:
    x, valid, target = _seq_inputs()
    torch.manual_seed(0)
    tim = TIM(E, 8, 2, 2, injection, T, [True, True])
    _randomise_hypernets(tim)
    out = tim(x, valid, target)
    # overwrite every padded position with garbage
    x2 = torch.where(valid[..., None], x, 100 * torch.randn_like(x))
    torch.testing.assert_close(tim(x2, valid, target), out)
    # and extra trailing padding (a longer max_len) changes nothing either
    x3 = torch.cat([x, torch.randn(M, B, 4, E)], dim=2)
    v3 = torch.cat([valid, torch.zeros(M, B, 4, dtype=torch.bool)], dim=2)
    torch.testing.assert_close(tim(x3, v3, target), out, atol=1e-5, rtol=1e-5)
    # but a real item does change it
    x4 = x.clone()
    x4[0, 1, 0] += 1.0
    assert (tim(x4, valid, target) - out).abs().max() > 1e-4


def test_tim_output_layout_and_learned_query() -> None:
    x, valid, target = _seq_inputs()
    tim = TIM(E, 4, 2, 1, "ln", T, [True, False])
    out = tim(x, valid, target)
    assert out.shape == (T, B, M * 4)
    # sequence 1 has no target field: its target input is ignored (learned query instead)
    target2 = target.clone()
    target2[1] = 7.0
    torch.testing.assert_close(tim(x, valid, target2), out)


def test_trm_shape_per_task_and_gate_range() -> None:
    torch.manual_seed(0)
    trm = TRM(12, 3)
    raw = torch.randn(3, B, 12)
    r = trm(raw)
    assert r.shape == (3, B, 12)
    ratio = r / raw
    assert ((ratio > 0) & (ratio < 1)).all()  # r = raw * sigmoid(.)
    # per-task networks differ
    same = torch.randn(B, 12).expand(3, B, 12)
    r2 = trm(same)
    assert (r2[0] - r2[1]).abs().max() > 1e-4


def test_attention_with_all_padding_row_is_zero_not_nan() -> None:
    q = torch.randn(2, 1, 4)
    k = torch.randn(2, 3, 4)
    valid = torch.tensor([[True, False, True], [False, False, False]])
    out = multihead_attention(q, k, k, 2, valid)
    assert torch.isfinite(out).all() and out[1].abs().sum() == 0


# --- APEM -----------------------------------------------------------------------------------


def test_smooth_step_limits_and_continuity() -> None:
    for gamma in (10.0, 2.0, 0.5, 1e-3):
        z = torch.tensor([-gamma, -gamma / 2, -gamma / 2 - 1e-9, gamma / 2, gamma, 3 * gamma,
                          -50.0, 50.0], dtype=torch.float64)
        f = smooth_step(z, gamma)
        assert f[[0, 1, 2, 6]].eq(0).all() and f[[3, 4, 5, 7]].eq(1).all()
        inside = torch.linspace(-gamma / 2, gamma / 2, 1001, dtype=torch.float64)
        fi = smooth_step(inside, gamma)
        # the cubic meets 0 and 1 at the edges (continuity) and is monotone in between
        assert abs(fi[0].item()) < 1e-9 and abs(fi[-1].item() - 1) < 1e-9
        assert (fi.diff() >= -1e-12).all()
        assert abs(smooth_step(torch.tensor(0.0, dtype=torch.float64), gamma).item() - 0.5) < 1e-12
        # just inside the edges the value approaches the outside value
        eps = gamma * 1e-4
        edge = smooth_step(torch.tensor([-gamma / 2 + eps, gamma / 2 - eps], dtype=torch.float64), gamma)
        assert edge[0] < 1e-6 and edge[1] > 1 - 1e-6


def test_smooth_step_gradient_is_finite_for_a_hard_mask() -> None:
    z = torch.tensor([1e20, -1e20, 3.0, 2e-4, 0.0], requires_grad=True)
    smooth_step(z, 1e-3).sum().backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad[:3].eq(0).all() and z.grad[3:].gt(0).all()  # flat outside, rising inside


def test_gamma_schedule_follows_the_paper() -> None:
    s = GammaSchedule()  # gamma = max(10 - 2e-4 * step, 1e-3)
    assert s(0).item() == pytest.approx(10.0)
    assert s(25_000).item() == pytest.approx(5.0)
    assert s(49_000).item() == pytest.approx(0.2, rel=1e-4)
    assert s(10**6).item() == pytest.approx(1e-3)
    fast = GammaSchedule(start=4.0, decay=0.5, minimum=0.1)
    assert [round(fast(i).item(), 4) for i in (0, 2, 7, 100)] == [4.0, 3.0, 0.5, 0.1]


def test_asrg_counts_training_steps_and_hardens_mask() -> None:
    torch.manual_seed(0)
    asrg = ASRG(n_fields=6, dim=8, inducing_points=4, heads=2,
                schedule=GammaSchedule(start=10.0, decay=1.0, minimum=1e-3))
    h = torch.randn(32, 6, 8)
    asrg.train()
    y = asrg(h)
    assert y.shape == (32, 4, 8) and asrg.out_dim == 32
    assert asrg.step.item() == 1
    asrg.eval()
    asrg(h)
    with torch.no_grad():
        asrg.train()
        asrg(h)
    assert asrg.step.item() == 1  # eval and no-grad passes do not advance the schedule
    asrg.train()
    soft = asrg.selection(h)
    assert ((soft > 0) & (soft < 1)).float().mean() > 0.9  # gamma = 9: almost all soft
    for _ in range(20):
        asrg(h)
    assert asrg.gamma().item() == pytest.approx(1e-3)
    hard = asrg.selection(h)
    assert ((hard == 0) | (hard == 1)).float().mean() > 0.99  # gamma tiny: a 0/1 mask
    # the step buffer is saved with the weights
    assert "step" in asrg.state_dict()


def test_asrg_residual_and_mask_semantics() -> None:
    torch.manual_seed(0)
    asrg = ASRG(n_fields=5, dim=8, inducing_points=3, heads=2)
    h = torch.randn(4, 5, 8, requires_grad=True)
    y = asrg(h)
    assert torch.allclose(y.mean(-1), torch.zeros(4, 3), atol=1e-5)  # LayerNorm output
    y.sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0
    assert asrg.inducing.grad.abs().sum() > 0


def test_pattern_selector_task_outputs() -> None:
    torch.manual_seed(0)
    ps = PatternSelector(n_tasks=3, dim=8, layers=2, heads=2)
    y = torch.randn(4, 5, 8)
    t = ps(y)
    assert t.shape == (4, 3, 8)
    assert (t[:, 0] - t[:, 1]).abs().max() > 1e-3  # learnable task indicators differ
    # task i's output depends only on task i's parameters
    t[:, 0].sum().backward()
    assert ps.alpha.grad[:, 0].abs().sum() > 0 and ps.alpha.grad[:, 1:].abs().sum() == 0


# --- STEM -----------------------------------------------------------------------------------


def test_aftb_gate_forward_sees_all_tables_backward_only_own_and_shared() -> None:
    torch.manual_seed(0)
    n_tasks, f, s = 3, 4, 2
    gate = AFTBGate(n_tasks, f, s)
    views = torch.randn(n_tasks + 1, B, f, s, requires_grad=True)
    out = gate(views)
    assert out.shape == (n_tasks, B, gate.out_dim)
    for k in range(n_tasks):
        views.grad = None
        out = gate(views)
        out[k].pow(2).sum().backward()
        g = views.grad.abs().sum(dim=(1, 2, 3))
        assert g[0] > 0 and g[k + 1] > 0  # shared and own table receive gradient
        others = [j + 1 for j in range(n_tasks) if j != k]
        assert g[others].eq(0).all()  # other tasks' tables get none
    # all forward: task 0's output changes when another task's table changes
    v2 = views.detach().clone()
    v2[2] += 1.0
    assert (gate(v2)[0] - gate(views.detach())[0]).abs().max() > 1e-4
