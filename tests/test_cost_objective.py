"""A serving cost (latency or params) as an optional third, minimised objective (issue 15)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import optuna
import pytest
import yaml

from automtl.cli import main
from automtl.config import DataConfig
from automtl.errors import ConfigError
from automtl.search import Store, StudyConfig, open_study, run_search
from automtl.search.objectives import directions, signs
from automtl.search.pruner import decide
from automtl.search.selection import parse_selection, select
from automtl.search.study_config import PrunerConfig, resolve_objectives

ROWS = 2000
SPACE = {
    "name": "cost3",
    "params": {
        "model.arch": {"choices": {
            "shared_bottom": {"model.bottom_dims": {"choices": [[4], [16], [64, 64]]}},
            "mmoe": {"model.n_experts": {"int": [2, 4]}, "model.expert_dims": [32]},
        }},
        "model.embedding_dim": {"choices": [2, 4]},
        "model.tower_dims": [8],
        "train.lr": {"float": [1.0e-3, 1.0e-2], "log": True},
        "train.batch_size": 1024,
    },
}
States = optuna.trial.TrialState
OBJ = ["ctr_auc", "cvr_auc", "n_params"]


def _brute_front(points: dict[int, list[float]], sign: list[float]) -> set[int]:
    """Trials no other trial dominates (every objective turned into 'larger is better')."""
    s = {n: [a * b for a, b in zip(v, sign)] for n, v in points.items()}
    return {n for n, v in s.items()
            if not any(all(x >= y for x, y in zip(w, v)) and any(x > y for x, y in zip(w, v))
                       for m, w in s.items() if m != n)}


@pytest.fixture(scope="module")
def study3(tmp_path_factory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("cost3")
    space = tmp / "cost3.yaml"
    space.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    cfg = StudyConfig(name="c3", data=DataConfig("synthetic", options={"rows": ROWS}),
                      objectives=["ctr_auc", "cvr_auc"], cost_objective="params",
                      space=str(space), epochs=2, n_trials=7, sampler="random",
                      pruner=PrunerConfig(kind="pareto", min_epoch=1, warmup_trials=2))
    url = f"sqlite:///{tmp / 'c3.db'}"
    result = run_search(cfg, storage=url, device="cpu")
    assert result.objectives == OBJ
    return url, tmp


def test_params_objective_is_minimised_and_equals_the_measured_cost(study3) -> None:
    url, _ = study3
    study = open_study(url, "c3")
    assert [d.name.lower() for d in study.directions] == ["maximize", "maximize", "minimize"]
    done = [t for t in study.get_trials() if t.state == States.COMPLETE]
    assert len(done) >= 3
    for t in done:
        assert t.values[2] == t.user_attrs["n_params"] > 0
        assert t.user_attrs["test_metrics"]["n_params"] == t.user_attrs["n_params"]
    # the cost is part of every epoch's record, so the pruner ranks it with the AUCs
    for number, epochs in Store(url).epoch_history("c3").items():
        n_params = study.trials[number].user_attrs["n_params"]
        assert all(e["n_params"] == n_params for e in epochs)


def test_front_table_equals_brute_force_over_three_objectives(study3, capsys) -> None:
    url, _ = study3
    study = open_study(url, "c3")
    done = {t.number: list(t.values) for t in study.get_trials() if t.state == States.COMPLETE}
    want = _brute_front(done, [1.0, 1.0, -1.0])
    assert {r.trial_number for r in Store(url).front("c3")} == want
    # a cheaper, worse model stays on the front: the 3-D front is never smaller than the 2-D one
    assert want >= _brute_front({n: v[:2] for n, v in done.items()}, [1.0, 1.0])
    capsys.readouterr()
    assert main(["pareto", "--study", "c3", "--storage", url, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {int(r["trial"]) for r in rows} == want
    assert all(float(r["val_n_params"]) == done[int(r["trial"])][2] for r in rows)
    assert main(["pareto", "--study", "c3", "--storage", url]) == 0
    assert "c3" in capsys.readouterr().out


def test_pareto_table_has_one_cost_column_labelled_min() -> None:
    from rich.console import Console

    from automtl.cli.pareto import front_table
    from automtl.search.front import FrontRow

    rows = [FrontRow(1, {"ctr_auc": 0.7, "cvr_auc": 0.6, "n_params": 12345.0},
                     {"ctr_auc": 0.71, "cvr_auc": 0.61, "n_params": 12345.0}, {}, {})]
    console = Console(width=120, record=True)
    console.print(front_table(rows, OBJ, cost=False))
    text = console.export_text()
    assert "(min)" in text and "12.3k" in text and "0.7100" in text
    assert text.count("n_params") == 1  # no test / re-eval column for the cost


def test_selection_minimises_the_cost(study3) -> None:
    url, _ = study3
    front = Store(url).front("c3")
    cheapest = select(front, OBJ, parse_selection(weights="n_params=1"))
    assert cheapest.values["n_params"] == min(r.values["n_params"] for r in front)
    assert select(front, OBJ, parse_selection(pick="knee")) in front


def test_pruner_ranks_a_cheaper_trial_as_non_dominated() -> None:
    cfg = PrunerConfig(kind="pareto", min_epoch=1, warmup_trials=2, reduction_factor=3)
    sign = signs(OBJ)
    peers = [[0.80, 0.70, 5000.0], [0.79, 0.69, 6000.0], [0.78, 0.71, 4000.0]]
    own = [0.60, 0.60, 100.0]  # far worse AUCs, far cheaper
    signed = lambda v: [s * x for s, x in zip(sign, v)]  # noqa: E731
    assert not decide(signed(own), [signed(p) for p in peers], 1, cfg).prune
    # without the cost objective the same trial is pruned
    assert decide(own[:2], [p[:2] for p in peers], 1, cfg).prune


def test_objective_names_and_errors(tmp_path: Path, capsys) -> None:
    from automtl.data import load_dataset

    ds = load_dataset(DataConfig("synthetic", options={"rows": ROWS}))
    cfg = StudyConfig(objectives=["ctr_auc"], cost_objective="latency")
    assert resolve_objectives(cfg, ds) == ["ctr_auc", "latency_ms"]
    assert directions(["ctr_auc", "latency_ms"]) == ["maximize", "minimize"]
    with pytest.raises(ConfigError, match="cost_objective: params"):
        resolve_objectives(StudyConfig(objectives=["ctr_auc", "n_params"]), ds)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    argv = ["search", "--dataset", "synthetic", "--storage", url, "--data-option",
            f"rows={ROWS}", "--n-trials", "1", "--epochs", "1", "--device", "cpu", "--no-report"]
    assert main(argv + ["--cost-objective", "speed"]) == 2
    err = capsys.readouterr().err
    assert "--cost-objective speed: use latency or params" in err and err.count("\n") == 1
    assert not (tmp_path / "x.db").exists()


def test_cli_latency_objective_end_to_end_and_study_mismatch(tmp_path: Path, capsys) -> None:
    space = tmp_path / "s.yaml"
    space.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'lat.db'}"
    argv = ["search", "--dataset", "synthetic", "--space", str(space), "--storage", url,
            "--data-option", f"rows={ROWS}", "--n-trials", "2", "--epochs", "1",
            "--device", "cpu", "--no-report"]
    assert main(argv + ["--cost-objective", "latency"]) == 0
    study = open_study(url, "synthetic")
    assert study.user_attrs["objectives"][-1] == "latency_ms"
    for t in study.get_trials():
        assert t.state == States.COMPLETE
        assert math.isfinite(t.values[-1]) and t.values[-1] == t.user_attrs["latency_ms"] > 0
    capsys.readouterr()
    # the same study without the cost objective optimises other objectives: refused, unchanged
    assert main(argv) != 0
    assert "optimises" in capsys.readouterr().err
    assert len(open_study(url, "synthetic").get_trials()) == 2


def test_report_has_the_three_objective_figures(study3) -> None:
    from automtl.report import colour_figure, load_snapshot, projections_figure, write_report

    url, tmp = study3
    snap = load_snapshot(url, "c3")
    front = {r.trial_number for r in Store(url).front("c3")}
    fig = projections_figure(snap)
    assert fig is not None and len(fig.data) == 6  # 3 pairs x (dominated, front)
    red = [tr for tr in fig.data if tr.name == "Pareto front"]
    assert all({c[0] for c in tr.customdata} == front for tr in red)
    assert "n_params (min)" in fig.to_json()
    colour = colour_figure(snap)
    assert colour is not None
    by_trial = {c[0]: v for c, v in zip(colour.data[0].customdata, colour.data[0].marker.color)}
    study = open_study(url, "c3")
    assert by_trial == {t.number: t.values[2] for t in study.get_trials()
                        if t.state == States.COMPLETE}
    html = write_report(url, "c3", tmp / "c3.html").read_text(encoding="utf-8")
    for name in ("pareto", "parallel", "projections", "colour"):
        assert f'id="section-{name}"' in html
    # 2 objectives: no 3-objective figures
    snap.objectives, snap.directions = snap.objectives[:2], snap.directions[:2]
    assert projections_figure(snap) is None and colour_figure(snap) is None


def test_reeval_top_front_ranks_by_the_metrics_not_the_cost() -> None:
    from automtl.search.front import FrontRow
    from automtl.search.reeval import top_front

    big = FrontRow(1, {"ctr_auc": 0.6, "cvr_auc": 0.6, "n_params": 1e6}, {}, {}, {})
    good = FrontRow(2, {"ctr_auc": 0.8, "cvr_auc": 0.7, "n_params": 10.0}, {}, {}, {})
    assert [r.trial_number for r in top_front([big, good], 1)] == [2]
