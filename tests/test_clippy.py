"""Clippy (KDD 2023): the per-coordinate update bound, the loss spike it survives where Adagrad
at the same learning rate does not, `train.optimizer: clippy` in the trainer, configs, exports."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from automtl.config import DataConfig, ModelConfig, TrainConfig, TrialConfig
from automtl.errors import ConfigError
from automtl.train import Clippy


pytestmark = pytest.mark.usefixtures("one_thread")


def _spiked_run(optimizer: str, lr: float, check_bound: bool = False) -> tuple[float, float, float]:
    """Validation loss before, right after and 100 steps after ONE corrupted batch (features x1000:
    the gradient spike of a bad batch) in a logistic MLP trained at learning rate `lr`."""
    torch.manual_seed(0)
    w_true = torch.randn(20)
    x, xv = torch.randn(4096, 20), torch.randn(2048, 20)
    y = (torch.rand(4096) < torch.sigmoid(x @ w_true)).float()
    yv = (torch.rand(2048) < torch.sigmoid(xv @ w_true)).float()
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = (torch.optim.Adagrad(model.parameters(), lr=lr) if optimizer == "adagrad"
           else Clippy(model.parameters(), lr=lr, lambda_rel=0.5, lambda_abs=1e-2))

    def val() -> float:
        with torch.no_grad():
            return float(F.binary_cross_entropy_with_logits(model(xv).squeeze(-1), yv))

    seen = []
    for step in range(200):
        i = (step * 128) % 4096
        xb = x[i:i + 128] * (1000.0 if step == 100 else 1.0)
        loss = F.binary_cross_entropy_with_logits(model(xb).squeeze(-1), y[i:i + 128])
        opt.zero_grad()
        loss.backward()
        before = [p.detach().clone() for p in model.parameters()]
        opt.step()
        if check_bound:  # |w_t+1 - w_t| <= lambda_rel |w_t| + lambda_abs, every coordinate
            for p, w in zip(model.parameters(), before):
                assert ((p.detach() - w).abs() <= 0.5 * w.abs() + 1e-2 + 1e-6).all(), step
        if step == 100 and isinstance(opt, Clippy):
            assert float(opt.last_sigma[id(model[0].weight)]) < 0.5  # the spike was clipped
        if step in (99, 100, 199):
            seen.append(val())
    return seen[0], seen[1], seen[2]


def test_clippy_bounds_every_update_and_survives_the_spike_adagrad_does_not() -> None:
    lr = 0.5  # a large learning rate: the paper's regime where instability shows
    a_before, a_spike, a_end = _spiked_run("adagrad", lr)
    c_before, c_spike, c_end = _spiked_run("clippy", lr, check_bound=True)
    # Adagrad: the bad batch moves every spiked coordinate by ~lr; the loss explodes and is still
    # worse 100 steps later (its accumulator keeps the spike)
    assert a_spike > 5 * a_before and a_end > a_before + 0.02, (a_before, a_spike, a_end)
    # Clippy at the same lr: the update is clipped to the weights' scale; the loss barely moves
    assert c_spike < 1.2 * c_before and c_end <= c_before + 0.01, (c_before, c_spike, c_end)


def test_clippy_damage_does_not_grow_with_the_learning_rate() -> None:
    # Adagrad's spike damage grows with lr; Clippy folds lr into its threshold (sigma ~ 1/lr)
    a = [_spiked_run("adagrad", lr)[1] for lr in (0.1, 1.0)]
    c = [_spiked_run("clippy", lr)[1] for lr in (0.1, 1.0)]
    assert a[1] > 3 * a[0], a
    assert max(c) < 0.3, c


def test_train_optimizer_clippy_learns_in_the_shared_trainer() -> None:
    from automtl.data import load_dataset
    from automtl.train import fit

    cfg = TrialConfig(
        data=DataConfig(options={"rows": 6000, "n_tasks": 2, "seed": 3}),
        model=ModelConfig(arch="mmoe", embedding_dim=8, expert_dims=[16], n_experts=2,
                          tower_dims=[8]),
        train=TrainConfig(optimizer="clippy", lr=0.05, epochs=2, batch_size=256, device="cpu"))
    data = load_dataset(cfg.data)
    res = fit(cfg, data)
    assert min(res.test[f"{t.name}_auc"] for t in data.tasks) > 0.55, res.test


@pytest.mark.parametrize("field,value,match", [
    ("clippy_rel", -0.1, "clippy_rel: must be >= 0"),
    ("clippy_abs", 0.0, "clippy_abs: must be > 0"),
    ("optimizer", "clipy", r"train\.optimizer"),
])
def test_bad_clippy_settings_are_one_line_errors(tmp_path, field: str, value: object,
                                                 match: str) -> None:
    import yaml

    from automtl.config import load_trial_config

    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump({"train": {"optimizer": "clippy", field: value}}))
    with pytest.raises(ConfigError, match=match) as info:
        load_trial_config(p).train.validate()
    assert "\n" not in str(info.value)


def test_foreign_exports_say_clippy_is_plain_adagrad_there() -> None:
    from automtl.data.schema import FeatureSpec, TaskSpec
    from automtl.export.fuxictr import fuxictr_config
    from automtl.export.rechub import rechub_script

    features = [FeatureSpec("user", "sparse", vocab_size=10), FeatureSpec("x", "dense")]
    tasks = [TaskSpec("ctr", "click"), TaskSpec("ctcvr", "buy", depends_on="ctr")]
    cfg = TrialConfig(model=ModelConfig(arch="mmoe"), train=TrainConfig(optimizer="clippy"))
    fux = fuxictr_config(cfg, features, tasks)
    hub = rechub_script(cfg, features, tasks)
    for dropped in (fux.dropped, hub.dropped):
        assert any(d.startswith("train.optimizer=clippy: plain Adagrad") for d in dropped)


def test_default_space_samples_clippy_with_its_thresholds() -> None:
    import optuna

    from automtl.search.space import load_space
    from automtl.search.space_nodes import SpaceContext

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space("default")
    ctx = SpaceContext(["ctr", "ctcvr"], n_pairs=1, capabilities=frozenset({"cascade"}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    clippy = []
    for _ in range(30):
        trial = study.ask()
        cfg = space.suggest(trial, ctx)
        cfg.train.validate()
        if cfg.train.optimizer == "clippy":
            clippy.append(trial.params)
        study.tell(trial, 0.5)
    assert clippy and all("train.clippy_rel" in p and "train.clippy_abs" in p for p in clippy)
