"""A search budget in baseline trainings (`budget:` in a preset, `automtl.search.budget`):
probes at a rows rung, the best retrained in full, the total within the budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from automtl.cli import main
from automtl.errors import ConfigError
from automtl.search import Store, open_study, run_search, study_preset
from automtl.search.budget import ROWS_RUNG_EPOCH, BudgetState, trial_cost
from automtl.search.pruner import nondominated_ranks
from automtl.search.study_config import load_study_config

States = optuna.trial.TrialState
ROWS = 3000  # 2,400 training rows: 10 steps of 256
SPACE = {
    "name": "tiny",
    "params": {
        "model.arch": {"choices": {
            "shared_bottom": {"model.bottom_dims": {"choices": [[16], [32]]}},
            "mmoe": {"model.n_experts": {"int": [2, 3]}, "model.expert_dims": [16]},
        }},
        "model.embedding_dim": 4,
        "model.tower_dims": [8],
        "model.wide": {"choices": [False, True]},
        "train.lr": {"float": [1.0e-3, 1.0e-2], "log": True},
        "train.batch_size": 256,
    },
}
BASELINE = {"model": {"arch": "mmoe", "n_experts": 2, "expert_dims": [16], "embedding_dim": 4,
                      "tower_dims": [8]}, "train": {"lr": 0.004, "batch_size": 256}}
WIDE = {"model": {"arch": "shared_bottom", "bottom_dims": [16], "embedding_dim": 4,
                  "tower_dims": [8], "wide": True}, "train": {"lr": 0.01, "batch_size": 256}}


def _write(folder: Path, name: str, doc: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _preset(folder: Path, **extra) -> Path:
    _write(folder, "space.yaml", SPACE)
    _write(folder, "base.yaml", BASELINE)
    _write(folder, "wide.yaml", WIDE)
    doc = {"name": "bud", "data": {"name": "synthetic", "options": {"rows": ROWS}},
           "objectives": ["ctr_auc", "cvr_auc"], "space": "space.yaml", "epochs": 2,
           "n_trials": 10, "seed": 3, "enqueue": ["base.yaml"], "probes": ["wide.yaml"],
           "budget": {"trainings": 3, "rows_fraction": 0.3, "finals": 1}, **extra}
    return _write(folder, "preset.yaml", doc)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("budget")
    cfg = load_study_config(_preset(folder))
    url = f"sqlite:///{folder / 'db.sqlite'}"
    result = run_search(cfg, storage=url, device="cpu")
    return url, result


def test_baseline_then_probes_then_the_best_probe_in_full(searched):
    url, result = searched
    study = open_study(url, "bud")
    trials = study.get_trials(deepcopy=False)
    attrs = [t.user_attrs for t in trials]
    # trial 0: the baseline, in full; trial 1: the preset's probe; then sampled probes
    assert attrs[0]["enqueued"].startswith("baseline ") and trials[0].state == States.COMPLETE
    assert attrs[0]["train_passes"] == pytest.approx(2.0)
    assert attrs[1]["enqueued"].startswith("probe ") and attrs[1]["config"]["model"]["wide"]
    probes = trials[1:-1]
    assert len(probes) >= 2
    for t in probes:
        assert t.state == States.PRUNED and t.user_attrs["pruned_rung"] == ROWS_RUNG_EPOCH
        assert t.user_attrs["prune_reason"].startswith("probe: trained 0.3 of epoch 1")
        assert t.user_attrs["train_passes"] == pytest.approx(3 * 256 / 2400)  # ceil(0.3 x 10)
    # the last trial: the final, the best probe's parameters trained from scratch in full
    final = trials[-1]
    assert final.state == States.COMPLETE and final.user_attrs["train_passes"] == 2.0
    chosen = trials[final.user_attrs["final_of"]]
    assert final.params == chosen.params
    assert final.user_attrs["config"] == chosen.user_attrs["config"]
    # brute force: the chosen probe is non-dominated among probes and baseline at the rung
    rung = Store(url).rung_values("bud", ROWS_RUNG_EPOCH, ["ctr_auc", "cvr_auc"])
    assert set(rung) == {t.number for t in trials}  # every trial recorded the rung
    for other in rung.values():
        mine = rung[chosen.number]
        assert not all(other[k] >= mine[k] for k in mine) or other == mine \
            or not all(other[k] > mine[k] for k in mine) and not any(other[k] > mine[k]
                                                                     for k in mine)
    numbers = sorted(rung)
    pts = np.array([[rung[n]["ctr_auc"], rung[n]["cvr_auc"]] for n in numbers])
    assert nondominated_ranks(pts)[numbers.index(chosen.number)] == 0
    # same seed, same first rows: the final passed through exactly the probe's model
    assert rung[final.number] == pytest.approx(rung[chosen.number], abs=1e-12)
    # the whole study within the budget (3 trainings = 3 x 2 passes)
    assert sum(trial_cost(t) for t in trials) <= 3 * 2 + 1e-9
    # epoch histories skip the rung; the front holds only fully trained trials
    assert all(rec["epoch"] >= 1 for h in Store(url).epoch_history("bud").values() for rec in h)
    assert {r.trial_number for r in result.front} <= {0, final.number}


def test_a_spent_budget_runs_nothing_more(searched):
    url, _ = searched
    before = len(open_study(url, "bud").get_trials())
    cfg = load_study_config(Path(url.removeprefix("sqlite:///")).parent / "preset.yaml")
    again = run_search(cfg, storage=url, device="cpu")
    assert again.trials_run == 0 and len(open_study(url, "bud").get_trials()) == before


def test_budget_state_actions():
    state = dict(total=9.0, spent=3.0, probe_share=3.0, probe_spent=0.0, probes=0,
                 dearest_probe=0.0, max_probes=18, finals=[], waiting=0)
    assert BudgetState(**state).action(0.1) == "run"
    assert BudgetState(**{**state, "waiting": 1}).action(0.1) == "run"  # queued seeds first
    assert BudgetState(**{**state, "probes": 28, "probe_spent": 2.85}).action(0.1) == "promote"
    assert BudgetState(**{**state, "probes": 9, "probe_spent": 2.0, "dearest_probe": 1.1}) \
        .action(0.1) == "promote"
    assert BudgetState(**{**state, "probes": 18}).action(0.1) == "promote"
    assert BudgetState(**{**state, "finals": [5], "waiting": 1}).action(0.1) == "run"
    # after the finals: a new round only where the budget still holds a final and a probe
    spent = {**state, "finals": [5], "probe_share": -1.8, "candidates": 17}
    assert BudgetState(**spent).action(0.1) == "stop"
    assert BudgetState(**{**spent, "probe_share": 0.1}).action(0.1) == "promote"  # final only
    assert BudgetState(**{**spent, "probe_share": 0.1, "candidates": 0}).action(0.1) == "stop"
    assert BudgetState(**{**spent, "probe_share": 1.2}).action(0.1) == "run"  # probes again


@pytest.mark.parametrize("extra, message", [
    ({"budget": {"trainings": 1.5}}, "budget.trainings: 1.5 cannot pay for the 1 enqueued"),
    ({"budget": {"rows_fraction": 1.0}}, "rows_fraction: must be in (0, 1)"),
    ({"budget": {"finals": 0}}, "finals: must be >= 1"),
    ({"budget": None}, "probes: needs a budget"),
])
def test_bad_budget_is_one_line(tmp_path: Path, extra, message):
    with pytest.raises(ConfigError) as err:
        load_study_config(_preset(tmp_path, **extra))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_trial_count_sizes_by_trials_unless_budget_given(tmp_path: Path, capsys):
    """--n-trials alone drops the preset's budget (n full trials); --budget keeps one."""
    preset = _preset(tmp_path)
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    args = ["search", "--study-config", str(preset), "--storage", url, "--device", "cpu",
            "--no-report", "--epochs", "1"]
    assert main(args + ["--study-name", "plain", "--n-trials", "2"]) == 0
    plain = open_study(url, "plain").get_trials()
    assert [t.state for t in plain] == [States.COMPLETE, States.COMPLETE]
    assert all(t.user_attrs.get("train_passes") is None for t in plain)
    assert main(args + ["--study-name", "capped", "--n-trials", "4", "--budget", "2.5"]) == 0
    capped = open_study(url, "capped").get_trials()
    assert sum(trial_cost(t) for t in capped) <= 2.5 * 1 + 1e-9
    assert capped[-1].user_attrs.get("final_of") is not None


def test_cli_infinite_budget_is_one_line_before_any_write(tmp_path: Path, capsys):
    """--budget inf passes the option's range check; the study's own check refuses it before a
    database exists (an existing one would keep its bytes)."""
    db = tmp_path / "inf.sqlite"
    args = ["search", "--study-config", str(_preset(tmp_path)), "--storage", f"sqlite:///{db}",
            "--device", "cpu", "--no-report", "--budget", "inf"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "budget: trainings: must be a positive number, got inf" in err and "\n" not in err
    assert not db.exists()


def test_the_shipped_default_preset_is_budgeted():
    cfg = study_preset("synthetic")
    assert cfg.budget is not None and cfg.budget.trainings == 3 and cfg.budget.finals == 1
    assert len(cfg.enqueue) + cfg.budget.finals < cfg.budget.trainings


def test_a_worker_stops_when_the_budget_is_spent(tmp_path: Path):
    """A worker of a budgeted study stops at the budget, not at the (larger) trial target."""
    from automtl.search.distributed import prepare_shared_study, run_worker

    cfg = load_study_config(_preset(tmp_path, budget={"trainings": 2.5, "rows_fraction": 0.3},
                                    epochs=1))
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    prepare_shared_study(cfg, url)
    result = run_worker(url, "bud", device="cpu")
    trials = open_study(url, "bud").get_trials()
    assert result.stopped_by == "budget" and len(trials) < cfg.n_trials
    # baseline (1 pass), the preset's probe (0.32), its final (1 pass): 0.5 left < 2 probes
    assert [t.state for t in trials] == [States.COMPLETE, States.PRUNED, States.COMPLETE]
    assert sum(trial_cost(t) for t in trials) <= 2.5 + 1e-9


def test_cli_resume_spent_budget_says_so_and_a_larger_budget_extends(tmp_path: Path, capsys):
    """Re-running a spent study: one line naming the --budget that extends it, exit 0, no trial;
    a --budget too small to buy a final: that line, exit 2, the database untouched; a larger
    --budget: a new round of probes and the next final, within the new budget."""
    db = tmp_path / "r.sqlite"
    url = f"sqlite:///{db}"
    args = ["search", "--study-config", str(_preset(tmp_path)), "--storage", url,
            "--device", "cpu", "--no-report", "--epochs", "1"]
    assert main(args) == 0
    first = open_study(url, "bud").get_trials()
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("budget spent: study 'bud' has trained") and "\n" not in err
    assert len(open_study(url, "bud").get_trials()) == len(first)
    at_least = float(err.split("--budget ")[1].split(" ")[0])  # a final of the next best probe
    assert 3 < at_least <= 3 + sum(trial_cost(t) for t in first) - 2 + 1 + 0.01
    before = db.read_bytes()
    assert main(args + ["--budget", f"{at_least - 0.05:g}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: budget spent:") and "\n" not in err
    assert db.read_bytes() == before
    assert main(args + ["--budget", "5"]) == 0
    trials = open_study(url, "bud").get_trials()
    finals = [t for t in trials if t.user_attrs.get("final_of") is not None]
    assert len(trials) > len(first) + 1 and len(finals) == 2
    assert finals[0].user_attrs["final_of"] != finals[1].user_attrs["final_of"]
    assert trials[-1].number == finals[1].number and trials[-1].state == States.COMPLETE
    assert sum(trial_cost(t) for t in trials) <= 5 + 1e-9


def test_a_final_stopped_by_ctrl_c_is_redone_on_resume():
    """An interrupted final counts for nothing: its probe is a candidate again and the round
    promotes it, where a final that failed otherwise is not retried."""
    from automtl.search.budget import budget_state
    from automtl.search.study_config import BudgetConfig

    def study(final_reason: str) -> optuna.Study:
        st = optuna.create_study(directions=["maximize", "maximize"])
        add = lambda state, **attrs: st.add_trial(optuna.trial.create_trial(  # noqa: E731
            state=state, values=[0.6, 0.6] if state == States.COMPLETE else None,
            intermediate_values={0: 0.5} if state == States.PRUNED else None, user_attrs=attrs))
        add(States.COMPLETE, enqueued="baseline base.yaml", train_passes=2.0,
            rung_seconds_per_row=1e-4)
        for k in range(5):  # 1.6 passes: the probe share (6 - 2 x 2) holds no sixth
            add(States.PRUNED, train_passes=0.32, rung_seconds_per_row=(0.5, 2.0)[k % 2] * 1e-4)
        add(States.FAIL, enqueued="final of probe #1", final_of=1, train_passes=1.5,
            fail_reason=final_reason)
        return st

    budget = BudgetConfig(trainings=3, rows_fraction=0.3, finals=1)
    redo = budget_state(study("interrupted by the user (Ctrl-C)"), budget, 2, 10)
    assert redo.finals == [] and redo.candidates == 5 and redo.action(0.3) == "promote"
    failed = budget_state(study("out of memory: CUDA"), budget, 2, 10)
    assert failed.finals == [6] and failed.candidates == 4 and failed.action(0.3) == "stop"
    # final_cost: probes slower per row than that multiple of the baseline are no candidates
    capped = BudgetConfig(trainings=3, rows_fraction=0.3, finals=1, final_cost=1.0)
    assert budget_state(study("out of memory: CUDA"), capped, 2, 10).candidates == 2  # #3, #5


def test_a_trial_killed_under_heartbeats_counts_for_nothing_as_on_one_process():
    """A worker killed mid-trial: Optuna's heartbeat check FAILs the trial without a reason
    and queues its retry (a copy of its attributes). Its passes count for nothing, exactly as
    a killed single-process trial marked "stale: ..." on resume (the rule is one)."""
    from automtl.search.budget import budget_state
    from automtl.search.study_config import BudgetConfig

    def study(dead: dict) -> optuna.Study:
        st = optuna.create_study(directions=["maximize", "maximize"])
        add = lambda state, system=None, **attrs: st.add_trial(  # noqa: E731
            optuna.trial.create_trial(
                state=state, values=[0.6, 0.6] if state == States.COMPLETE else None,
                intermediate_values={0: 0.5} if state == States.PRUNED else None,
                user_attrs=attrs, system_attrs=system or {}))
        add(States.FAIL, enqueued="baseline base.yaml", train_passes=1.2, **dead)  # killed
        add(States.PRUNED, train_passes=0.32)
        add(States.FAIL, train_passes=0.2, **dead)  # a probe killed before its rung
        if not dead:  # Optuna's retries: WAITING copies of the dead trials' attributes
            add(States.WAITING, {"failed_trial": 0, "retry_history": [0]},
                enqueued="baseline base.yaml", train_passes=1.2)
            add(States.WAITING, {"failed_trial": 2, "retry_history": [2]}, train_passes=0.2)
        else:  # redo_trial's copy of the enqueued one (a sampled probe is re-sampled)
            add(States.WAITING, {"failed_trial": 0, "retry_history": [0]},
                enqueued="baseline base.yaml")
        return st

    budget = BudgetConfig(trainings=3, rows_fraction=0.3, finals=1)
    heartbeat = budget_state(study({}), budget, 2, 10)
    repaired = budget_state(study({"fail_reason": "stale: its process host:1 is gone"}),
                            budget, 2, 10)
    assert heartbeat.spent == pytest.approx(0.32) == repaired.spent
    # the baseline's retry reserves one full training; the killed attempt nothing
    assert heartbeat.committed == pytest.approx(2 + 0.32) == repaired.committed
    assert heartbeat.probe_share == pytest.approx(6 - 2 * 2) == repaired.probe_share
    assert heartbeat.waiting == 2 and heartbeat.probes == 1 and heartbeat.probes_all == 1


def test_resuming_a_budgeted_study_at_other_epochs_is_refused(searched, tmp_path: Path, capsys):
    """The budget's unit is one baseline training = `epochs` passes: at other epochs the full
    trainings already made would be re-counted in the new unit. Refused in one line naming the
    stored epochs, before any write (with --budget too); the same epochs resume."""
    import shutil

    from automtl.errors import AutomtlError

    url, _ = searched
    db = tmp_path / "copy.sqlite"
    shutil.copy(url.removeprefix("sqlite:///"), db)
    preset = Path(url.removeprefix("sqlite:///")).parent / "preset.yaml"
    args = ["search", "--study-config", str(preset), "--storage", f"sqlite:///{db}",
            "--device", "cpu", "--no-report"]
    before = db.read_bytes()
    for extra in (["--epochs", "3"], ["--epochs", "1", "--budget", "6"]):
        assert main(args + extra) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "trained its trials at 2 epochs" in err, err
        assert "resume it with --epochs 2" in err
        assert db.read_bytes() == before
    cfg = load_study_config(preset)
    cfg.epochs = 1
    with pytest.raises(AutomtlError, match="--epochs 2"):  # the library path: before the repair
        run_search(cfg, storage=f"sqlite:///{db}", device="cpu")
    assert db.read_bytes() == before
    assert main(args + ["--epochs", "2"]) == 0  # spent: the note, no trial, no refusal
    assert capsys.readouterr().err.startswith("budget spent")


def test_final_cost_caps_the_finals_by_time_per_row_at_the_rung(searched):
    """Every trial records its training time per row at the rung; `final_cost` drops the probes
    slower than that multiple of the baseline's from the choice of finals."""
    from automtl.search.budget import cost_ratios, pick_finals

    url, _ = searched
    study = open_study(url, "bud")
    trials = study.get_trials(deepcopy=False)
    ratio = cost_ratios(trials)
    assert set(ratio) == {t.number for t in trials} and ratio[0] == pytest.approx(1.0)
    assert all(v > 0 for v in ratio.values())
    store = Store(url)
    objectives = ["ctr_auc", "cvr_auc"]
    ranked = pick_finals(study, store, objectives, 99)  # the probes not yet trained in full
    assert ranked and trials[-1].user_attrs["final_of"] not in [t.number for t in ranked]
    best = ranked[0]
    assert pick_finals(study, store, objectives, 1, final_cost=1e9) == [best]
    capped = pick_finals(study, store, objectives, 1, final_cost=ratio[best.number] * 0.999)
    assert best not in capped
    assert all(ratio[t.number] <= ratio[best.number] * 0.999 for t in capped)
    assert pick_finals(study, store, objectives, 1, final_cost=1e-12) == []


def test_probe_weight_decay_scales_with_the_training_rows(tmp_path: Path):
    """`probe_l2_rows: K`: a probe's weight decay is the space's value nearest K / training rows
    (2,400 here), whatever its file says."""
    from automtl.search import prepare_study
    from automtl.search.prepare import scaled_weight_decay
    from automtl.search.space import parse_space

    space = parse_space({**SPACE, "params": {**SPACE["params"], "train.weight_decay": {
        "choices": [0.0, 1.0e-5, 1.0e-4, 3.0e-4]}}}, where="test")
    assert scaled_weight_decay(space, 10 / 40_000) == 3.0e-4
    assert scaled_weight_decay(space, 10 / 160_000) == 1.0e-4
    assert scaled_weight_decay(space, 10 / 800_000) == 1.0e-5
    assert scaled_weight_decay(parse_space(SPACE, where="test"), 2e-5) == 2e-5  # not sampled
    preset = _preset(tmp_path, probe_l2_rows=0.06)  # 0.06 / 2,400 = 2.5e-5 -> 1e-5
    _write(tmp_path, "space.yaml", {**SPACE, "params": {**SPACE["params"], "train.weight_decay": {
        "choices": [0.0, 1.0e-5, 1.0e-4, 3.0e-4]}}})
    cfg = load_study_config(preset)
    url = f"sqlite:///{tmp_path / 'l2.sqlite'}"
    study = prepare_study(cfg, url)
    waiting = study.get_trials(deepcopy=False)
    assert [t.user_attrs["enqueued"].split()[0] for t in waiting] == ["baseline", "probe"]
    fixed = [t.system_attrs["fixed_params"] for t in waiting]  # what each will train
    assert fixed[0]["train.weight_decay"] == 0.0  # a baseline keeps its own
    assert fixed[1]["train.weight_decay"] == 1.0e-5
    with pytest.raises(ConfigError, match="probe_l2_rows: must be a positive number"):
        load_study_config(_preset(tmp_path, probe_l2_rows=0))
