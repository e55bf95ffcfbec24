"""Row-wise (lazy) Adam on embedding tables: a step changes only the rows the batch used, and a
row used in every step follows dense Adam; `train.optimizer: lazy_adam` trains through `fit`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from automtl.config import DataConfig, ModelConfig, TrainConfig, TrialConfig, from_dict
from automtl.data import load_dataset
from automtl.models.embedding import embedding_lookup
from automtl.train import fit
from automtl.train.sparse_optim import RowAdam


def _loss(w: torch.Tensor, ids: torch.Tensor, sparse: bool) -> torch.Tensor:
    out = embedding_lookup(w, ids, sparse) if sparse else F.embedding(ids, w)
    return (out.sum(-1) * torch.linspace(-1, 1, ids.numel()).view_as(ids)).pow(2).sum()


def test_a_step_touches_only_the_rows_of_the_batch() -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(50, 4))
    before = w.detach().clone()
    opt = RowAdam([w], lr=0.1, weight_decay=0.01)
    ids = torch.tensor([[3, 7, 7], [11, 3, 40]])
    _loss(w, ids, True).backward()
    assert w.grad is not None and w.grad.is_sparse
    assert w.grad.coalesce().indices()[0].tolist() == [3, 7, 11, 40]
    opt.step()
    used = torch.zeros(50, dtype=torch.bool)
    used[[3, 7, 11, 40]] = True
    assert torch.equal(w.detach()[~used], before[~used])  # bit for bit
    assert (w.detach()[used] != before[used]).all()
    state = opt.state[w]
    assert (state["exp_avg"][~used] == 0).all() and (state["exp_avg_sq"][~used] == 0).all()


@pytest.mark.parametrize("decoupled", [False, True])
def test_rows_in_every_step_match_dense_adam(decoupled: bool) -> None:
    torch.manual_seed(1)
    init = torch.randn(30, 3)
    lazy_w, dense_w = torch.nn.Parameter(init.clone()), torch.nn.Parameter(init.clone())
    lazy = RowAdam([lazy_w], lr=0.05, weight_decay=0.1, decoupled=decoupled)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    dense = cls([dense_w], lr=0.05, weight_decay=0.1, foreach=False)
    always = [2, 9]
    for step in range(6):
        ids = torch.cat([torch.tensor(always), torch.randint(10, 30, (5,))]).view(1, -1)
        for w, opt, sparse in ((lazy_w, lazy, True), (dense_w, dense, False)):
            opt.zero_grad(set_to_none=True)
            _loss(w, ids, sparse).backward()
            opt.step()
        torch.testing.assert_close(lazy_w.detach()[always], dense_w.detach()[always],
                                   rtol=1e-6, atol=1e-7)
    # rows absent in some steps differ: their moments did not decay while absent
    assert not torch.allclose(lazy_w.detach()[10:], dense_w.detach()[10:])


def test_fit_with_lazy_adam_learns_and_clips() -> None:
    ds = load_dataset(DataConfig(options={"rows": 6000, "seed": 4}))
    model = ModelConfig(arch="mmoe", embedding_dim=4, n_experts=2, expert_dims=[16],
                        tower_dims=[8])
    cfg = from_dict(TrialConfig, {"train": {"optimizer": "lazy_adamw", "epochs": 2, "lr": 1e-2,
                                            "batch_size": 512, "device": "cpu",
                                            "weight_decay": 1e-4, "grad_clip": 1.0}})
    cfg.model = model
    result = fit(cfg, ds)
    assert result.val["ctr_auc"] > 0.55
    dense = fit(TrialConfig(model=model, train=TrainConfig(epochs=2, lr=1e-2, batch_size=512,
                                                           device="cpu")), ds)
    assert abs(result.val["ctr_auc"] - dense.val["ctr_auc"]) < 0.05
