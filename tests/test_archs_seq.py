"""Issue-18 architectures that read the raw batch (`Body.reads_batch`): MoSE (LSTM experts over
the behaviour stream) and STAN (lifecycle stage from activity, Beta-smoothed task preferences,
stage-adaptive task weights): each paper's property, search sampling only with sequences, the
example configs, bad configs. The generic checks (shapes and gradients, a short real training,
exports, task-specific bottoms with bf16, preference conditioning) run them from
tests/test_archs_more.py's SYSTEMS."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from automtl.data.batching import Batch
from automtl.errors import ConfigError
from automtl.models import build_model
from automtl.models.archs.stan import activity_stage
from tests.test_archs_more import CASCADE, FEATURES, FLAT, make_batch, small_cfg

NO_SEQUENCES = [f for f in FEATURES if f.kind != "sequence"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _slice(b: Batch, sl: slice) -> Batch:
    return Batch(b.sparse[sl], b.dense[sl], {k: v[sl] for k, v in b.sequences.items()},
                 b.labels[sl])


# -- MoSE ------------------------------------------------------------------------------------

def test_mose_reads_the_stream_in_order_and_packs_away_the_padding() -> None:
    from tests.test_models import FEATURES as MULTI, TASKS, make_batch as make_multi

    # three sequence fields of different max_len (6, 4, 3), one with its own vocabulary
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="mose", lstm_dim=8), MULTI, TASKS[2]).eval()
    batch = make_multi(24, 2)
    with torch.no_grad():
        model.body.steps.weight.normal_(0.0, 1.0)  # history vectors of a trained size
        full = model.forward_tensor(batch)
        # a row's output does not depend on the other rows (their lengths, their padding)
        alone = torch.cat([model.forward_tensor(_slice(batch, slice(i, i + 1)))
                           for i in range(24)], dim=1)
        assert torch.allclose(full, alone, atol=1e-6)
        n = model.body.steps(batch)[1]
        assert n.tolist() == [max(int((batch.sequences[f][i] != 0).nonzero().max()) + 1
                                  if (batch.sequences[f][i] != 0).any() else 0
                                  for f in ("hist_items", "hist_cats", "queries"))
                              for i in range(24)]
        # order matters (an LSTM, not a pooled bag): reverse each row's item history
        hist = batch.sequences["hist_items"].clone()
        rows = [i for i in range(24) if (hist[i] != 0).sum() >= 2]
        rev = hist.clone()
        for i in rows:
            k = int((hist[i] != 0).sum())
            rev[i, :k] = hist[i, :k].flip(0)
        moved = model.forward_tensor(Batch(batch.sparse, batch.dense,
                                           {**batch.sequences, "hist_items": rev}, batch.labels))
        changed = (moved - full).abs().amax(0)
        palindromes = [i for i in rows if torch.equal(rev[i], hist[i])]
        assert all(changed[i] > 1e-6 for i in rows if i not in palindromes)
        # the impression is the stream's last step: its features (here the dense ones) move
        # every row's output
        dense = batch.dense + 1.0
        assert ((model.forward_tensor(Batch(batch.sparse, dense, batch.sequences, batch.labels))
                 - full).abs().amax(0) > 1e-6).all()


def test_mose_gates_are_per_task_distributions_over_the_lstm_experts() -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="mose", lstm_dim=8, n_experts=4), FEATURES, CASCADE)
    model.forward_tensor(make_batch(16, CASCADE))
    g = model.body.last_gates
    assert g.shape == (3, 16, 4) and torch.allclose(g.sum(-1), torch.ones(3, 16))
    assert len(model.body.experts) == 4 and all(isinstance(e, torch.nn.LSTM)
                                                for e in model.body.experts)


# -- STAN ------------------------------------------------------------------------------------

def test_stan_stage_is_derived_from_activity_by_log_buckets() -> None:
    total = torch.tensor([0.0, 1.0, 2.0, 6.0, 7.0, 20.0, 21.0, 60.0])
    # S = 4 stages over N = 60 items: bucket = floor(4 log(1 + n) / log(61))
    want = [min(math.floor(4 * math.log1p(n) / math.log(61)), 3) for n in total.tolist()]
    assert activity_stage(total, 4, 60).tolist() == want == [0, 0, 1, 1, 2, 2, 3, 3]
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="stan", stan_stages=3), FEATURES, CASCADE)
    batch = make_batch(64, CASCADE)
    stage, _ = model.body.stage_and_preference(batch)
    counts = (batch.sequences["hist_items"] != 0).sum(1).float()  # one field, max_len 6
    assert stage.tolist() == activity_stage(counts, 3, 6).tolist()
    assert set(stage.tolist()) == {0, 1, 2}


def test_stan_stage_field_is_used_when_the_data_has_one() -> None:
    torch.manual_seed(0)
    cfg = small_cfg(arch="stan", stan_stage_field="cat")
    model = build_model(cfg, FEATURES, CASCADE)
    batch = make_batch(32, CASCADE)
    stage, _ = model.body.stage_and_preference(batch)
    assert torch.equal(stage, batch.sparse[:, 2].long()) and model.body.n_stages == 8
    # without sequences there is no activity count: the stage field alone, no Beta shrinkage
    bare = build_model(cfg, NO_SEQUENCES, CASCADE)
    b = Batch(batch.sparse, batch.dense, {}, batch.labels)
    _, pref = bare.body.stage_and_preference(b)
    assert pref.shape == (32, 3) and bare.forward_tensor(b).shape == (3, 32)


def test_stan_beta_prior_shrinks_users_with_little_activity() -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="stan"), FEATURES, CASCADE)
    body = model.body
    with torch.no_grad():
        body.prior_logit.copy_(torch.tensor([0.5, -1.0, -2.0]))
        batch = make_batch(64, CASCADE)
        _, pref = body.stage_and_preference(batch)
        prior = torch.sigmoid(body.prior_logit)
        empty = (batch.sequences["hist_items"] != 0).sum(1) == 0
        assert empty.any() and torch.allclose(pref[empty], prior.expand(int(empty.sum()), 3))
        # the posterior mean: n p_hat + kappa m over n + kappa, with p_hat from the detector
        n = (batch.sequences["hist_items"] != 0).sum(1, keepdim=True).float()
        body.log_strength.fill_(math.log(1e-6))  # no prior: the detector's own estimate
        _, raw = body.stage_and_preference(batch)
        kappa = 5.0
        body.log_strength.fill_(math.log(kappa))
        _, smooth = body.stage_and_preference(batch)
        full = ~empty
        assert torch.allclose(smooth[full], ((n * raw + kappa * prior) / (n + kappa))[full],
                              atol=1e-5)


def test_stan_adaptive_loss_weights_each_rows_task_gradient_by_its_stage() -> None:
    torch.manual_seed(0)
    cfg = small_cfg(arch="stan", stan_weight=0.0)
    adaptive = build_model(cfg, FEATURES, FLAT).train()
    plain = build_model(small_cfg(arch="stan", stan_weight=0.0, stan_adaptive_loss=False),
                        FEATURES, FLAT).train()
    plain.load_state_dict(adaptive.state_dict())
    batch = make_batch(128, FLAT)
    with torch.no_grad():
        adaptive.body.prior_logit.copy_(torch.tensor([0.3, -0.7]))
        plain.body.prior_logit.copy_(torch.tensor([0.3, -0.7]))
    out = adaptive.forward_tensor(batch)
    F.binary_cross_entropy_with_logits(out, batch.labels.t()).backward()
    w = adaptive.body.task_weights(adaptive.body.last_preference)  # [T, B]
    assert torch.allclose(w.mean(0), torch.ones(128)) and (w.std() > 1e-3)
    out2 = plain.forward_tensor(batch)
    assert torch.equal(out, out2)  # forward values are the plain model's
    bce = F.binary_cross_entropy_with_logits(out2, batch.labels.t(), reduction="none")
    (bce * w).mean().backward()
    for (name, p), q in zip(adaptive.named_parameters(), plain.parameters()):
        if "towers" in name or "experts" in name or "gates" in name:
            assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_stan_stage_loss_trains_the_detector_towards_user_rates() -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(arch="stan", stan_weight=1.0), FEATURES, FLAT).train()
    model.forward_tensor(make_batch(64, FLAT))
    (stage,) = model.aux_losses(make_batch(64, FLAT).labels)
    pref = model.body.last_preference.clamp(1e-6, 1 - 1e-6)
    want = F.binary_cross_entropy(pref, make_batch(64, FLAT).labels)
    assert torch.allclose(stage, want)
    model0 = build_model(small_cfg(arch="stan", stan_weight=0.0), FEATURES, FLAT).train()
    model0.forward_tensor(make_batch(8, FLAT))
    assert float(model0.aux_losses(make_batch(8, FLAT).labels)[0].detach()) == 0.0


# -- both: search, exports, bottoms, FiLM, examples, bad configs ------------------------------

def test_default_space_samples_them_only_on_data_with_sequences() -> None:
    import optuna

    from automtl.search.space import load_space
    from automtl.search.space_nodes import SpaceContext

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("default", "architectures"):
        space = load_space(name)
        for caps, features in ((frozenset({"cascade", "sequences"}), FEATURES),
                               (frozenset({"cascade"}), NO_SEQUENCES)):
            ctx = SpaceContext([t.name for t in CASCADE], n_pairs=2, capabilities=caps)
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
            seen = set()
            for _ in range(120):
                trial = study.ask()
                cfg = space.suggest(trial, ctx)
                if cfg.model.arch in ("mose", "stan"):
                    build_model(cfg.model, features, CASCADE)
                    seen.add(cfg.model.arch)
                study.tell(trial, 0.5)
            assert seen == ({"mose", "stan"} if "sequences" in caps else set()), (name, caps)


@pytest.mark.parametrize("name", ["mose", "stan"])
def test_example_config_trains(tmp_path: Path, name: str) -> None:
    from automtl.config import load_trial_config
    from automtl.data import load_dataset
    from automtl.resources import resource_dir
    from automtl.train import fit

    src = resource_dir("studies/examples") / f"{name}.yaml"
    cfg = load_trial_config(src)
    assert cfg.model.arch == name and cfg.data.name == "synthetic"
    # the shipped example, shrunk to a few thousand rows and one epoch
    text = src.read_text().replace("rows: 200000", "rows: 2000").replace("epochs: 3", "epochs: 1")
    assert "rows: 2000" in text and "epochs: 1" in text
    small = tmp_path / f"{name}.yaml"
    small.write_text(text.replace("batch_size: 2048", "batch_size: 256"))
    if name == "mose":  # through the real CLI once
        run = subprocess.run(
            [sys.executable, "-c", "import sys; from automtl.cli import main; sys.exit(main())",
             "train", "--config", str(small), "--device", "cpu"],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"})  # tiny LSTMs: no thread barriers
        assert run.returncode == 0, run.stderr[-2000:]
        assert "ctr" in run.stdout and "test AUC" in run.stdout
    else:
        cfg = load_trial_config(small)
        res = fit(cfg, load_dataset(cfg.data))
        assert all(np.isfinite(v) for v in res.test.values()) and "ctr_auc" in res.test


@pytest.mark.parametrize("cfg,features,match", [
    (dict(arch="mose"), NO_SEQUENCES, "model.arch: mose runs LSTMs over behaviour sequences"),
    (dict(arch="stan"), NO_SEQUENCES, "model.arch: stan derives the lifecycle stage"),
    (dict(arch="stan", stan_stage_field="nope"), FEATURES, "model.stan_stage_field: 'nope'"),
    (dict(arch="stan", stan_stage_field="price"), FEATURES, "is not a sparse field"),
    (dict(arch="mose", lstm_dim=0), FEATURES, "lstm_dim: must be > 0"),
    (dict(arch="stan", stan_stages=0), FEATURES, "stan_stages: must be > 0"),
    (dict(arch="stan", stan_weight=float("nan")), FEATURES, "stan_weight: must be >= 0"),
    (dict(arch="stan", expert_dims=[]), FEATURES, "model.expert_dims: arch stan needs"),
])
def test_bad_configs_are_one_line_errors(cfg: dict, features: list, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        build_model(small_cfg(**cfg), features, CASCADE)
    assert "\n" not in str(info.value)


def test_bad_yaml_values_name_the_path(tmp_path: Path) -> None:
    from automtl.config import load_trial_config

    p = tmp_path / "t.yaml"
    p.write_text("model: {arch: stan, stan_adaptive_loss: maybe}\n")
    with pytest.raises(ConfigError, match=r"model\.stan_adaptive_loss") as info:
        load_trial_config(p)
    assert "\n" not in str(info.value)
