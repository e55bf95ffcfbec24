"""The model vocabularies are the registries: a model registered from a test (no edit of
config.py or anything else) is a valid `model.arch`, is sampled from a space, and trains."""

from __future__ import annotations

import optuna
import pytest
import torch
from torch import Tensor, nn

from automtl._typed import from_dict
from automtl.config import ModelConfig, TrainConfig, TrialConfig
from automtl.errors import ConfigError
from automtl.models import ARCHS, Body, BodyInput, as_input, build_model, register_arch
from automtl.models import registered_names
from automtl.search import SpaceContext, parse_space
from automtl.train import fit


@pytest.fixture(scope="module")
def toy_arch():
    @register_arch("toy_linear")
    class ToyLinear(Body):
        """One linear map per task straight from the bottom output (a test model)."""

        def __init__(self, cfg: ModelConfig, in_dim: int, tasks) -> None:
            super().__init__(cfg, in_dim, tasks)
            self.out = nn.Linear(in_dim, self.n_tasks)

        def forward(self, x: BodyInput) -> Tensor:
            h = as_input(x, self.n_tasks)  # [B, D] or [T, B, D]
            y = self.out(h)
            return y.transpose(0, 1) if h.dim() == 2 else torch.diagonal(y, dim1=0, dim2=2).T

    yield "toy_linear"
    del ARCHS["toy_linear"]


def test_unknown_names_fail_with_the_registry_vocabulary() -> None:
    for key in ("arch", "bottom", "head"):
        with pytest.raises(ConfigError) as exc:
            from_dict(TrialConfig, {"model": {key: "nope"}}, where="t.yaml")
        msg = str(exc.value)
        assert msg.startswith(f"t.yaml: model.{key}: must be one of ")
        assert all(name in msg for name in registered_names(key)) and "\n" not in msg
    assert {"shared_bottom", "mmoe", "ple", "aitm", "single", "apem"} <= set(registered_names("arch"))
    assert {"shared", "dtrn", "apem", "stem"} <= set(registered_names("bottom"))
    assert {"plain", "esmm"} <= set(registered_names("head"))


def test_a_toy_arch_registered_here_is_sampled_and_trained(toy_arch: str, synthetic) -> None:
    assert toy_arch in registered_names("arch")
    space = parse_space({"name": "toy", "params": {
        "model.arch": {"choices": {toy_arch: {}, "mmoe": {"model.n_experts": 2}}},
        "model.embedding_dim": 4, "model.tower_dims": [4], "model.expert_dims": [8],
    }})
    data = synthetic(rows=1500, seed=3)
    ctx = SpaceContext.from_dataset(data)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        cfg = space.suggest(study.ask(), ctx, base={"train": {"epochs": 1, "device": "cpu",
                                                                "batch_size": 512}})
        seen.add(cfg.model.arch)
        if cfg.model.arch == toy_arch:
            toy = cfg
    assert seen == {toy_arch, "mmoe"}
    model = build_model(toy.model, data.features, data.tasks)
    assert type(model.body).__name__ == "ToyLinear"
    result = fit(TrialConfig(data=toy.data, model=toy.model, train=TrainConfig(
        epochs=1, batch_size=512, device="cpu")), data)
    assert set(result.val) >= {"ctr_auc", "ctcvr_auc"} and result.n_params > 0
