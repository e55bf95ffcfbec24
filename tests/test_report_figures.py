"""Figure builders on a stored study with known trials (real SQLite, real Store tables)."""

from __future__ import annotations

import optuna
import pytest
from report_study import EVIL, EVIL_VALUE, FRONT, N_COMPLETE, TRIALS, make_study

from automtl.errors import AutomtlError
from automtl.report import (
    breakdown_figure,
    build_figures,
    history_figure,
    importance_figure,
    learning_curves_figure,
    load_snapshot,
    param_importances,
    parallel_figure,
    pareto_figure,
    reeval_figure,
    val_test_figure,
)
from automtl.report.snapshot import StudySnapshot

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def snap2(tmp_path_factory: pytest.TempPathFactory) -> StudySnapshot:
    url, _ = make_study(tmp_path_factory.mktemp("s2") / "s.db", n_objectives=2)
    return load_snapshot(url, "known")


@pytest.fixture(scope="module")
def snap3(tmp_path_factory: pytest.TempPathFactory) -> StudySnapshot:
    url, _ = make_study(tmp_path_factory.mktemp("s3") / "s.db", n_objectives=3)
    return load_snapshot(url, "known")


def _numbers(trace) -> set[int]:
    return {int(c[0]) for c in trace.customdata}


def test_snapshot_reads_store_tables(snap2: StudySnapshot) -> None:
    assert snap2.objectives == ["ctr_auc", "cvr_auc"]
    assert set(snap2.front) == FRONT[2]
    assert snap2.state_counts()["COMPLETE"] == N_COMPLETE
    assert snap2.state_counts()["PRUNED"] == 1 and snap2.state_counts()["FAIL"] == 1
    assert snap2.reeval[0]["val/ctr_auc"]["n"] == 3
    assert snap2.best()["ctr_auc"].number == 1 and snap2.best()["cvr_auc"].number == 3


def test_pareto_2d_front_and_dominated(snap2: StudySnapshot) -> None:
    fig = pareto_figure(snap2)
    assert fig is not None
    names = [t.name for t in fig.data]
    assert names == ["dominated", "Pareto front"]
    dominated, front = fig.data
    assert _numbers(front) == FRONT[2]
    assert _numbers(dominated) == {0, 1, 2, 3, 4, 7} - FRONT[2]
    assert dominated.opacity < front.opacity  # dominated trials faded
    assert "lines" in front.mode and dominated.mode == "markers"
    # the front line is drawn in objective order
    assert list(front.x) == sorted(front.x)
    hover = " ".join(front.hovertext)
    assert "arch: ple" in hover and "n_experts = 8" in hover


def test_pareto_3d_and_parallel(snap2: StudySnapshot, snap3: StudySnapshot) -> None:
    fig = pareto_figure(snap3)
    assert fig is not None and [t.type for t in fig.data] == ["scatter3d", "scatter3d"]
    assert _numbers(fig.data[1]) == FRONT[3]
    assert len(fig.data[0].x) == N_COMPLETE - len(FRONT[3])
    par = parallel_figure(snap3)
    assert par is not None and par.data[0].type == "parcoords"
    dims = par.data[0].dimensions
    assert [d.label for d in dims] == ["trial", "ctr_auc", "cvr_auc", "ctcvr_auc"]
    assert len(dims[0].values) == N_COMPLETE
    # two objectives have no parallel-coordinates figure
    assert parallel_figure(snap2) is None


def test_history_per_objective_best_so_far(snap2: StudySnapshot) -> None:
    fig = history_figure(snap2)
    assert len(fig.data) == 4  # (values, best so far) per objective
    values, best = fig.data[0], fig.data[1]
    assert list(values.x) == [0, 1, 2, 3, 4, 7]
    assert list(best.y) == [0.70, 0.72, 0.72, 0.72, 0.72, 0.72]
    assert list(fig.data[3].y) == [0.60, 0.60, 0.60, 0.65, 0.65, 0.65]


def test_learning_curves_lengths_equal_epochs_run(snap2: StudySnapshot) -> None:
    fig = learning_curves_figure(snap2)
    per_metric = [t for t in fig.data if t.yaxis in ("y", None)]
    assert len(fig.data) == 2 * len(TRIALS)  # one curve per trial per objective
    for trace in per_metric:
        number = int(trace.customdata[0][0])
        assert len(trace.x) == TRIALS[number][6]  # epochs run
    pruned = next(t for t in per_metric if int(t.customdata[0][0]) == 5)
    assert pruned.line.dash == "dash" and "pruned" in pruned.name
    assert pruned.marker.symbol == "x"
    done = next(t for t in per_metric if int(t.customdata[0][0]) == 0)
    assert done.line.dash is None
    assert list(done.y) == pytest.approx([0.66, 0.68, 0.70])


def test_importance_per_objective_and_too_few_trials(snap2: StudySnapshot,
                                                     tmp_path) -> None:
    imp = param_importances(snap2)
    assert isinstance(imp, dict) and set(imp) == {"ctr_auc", "cvr_auc"}
    assert set(imp["ctr_auc"]) == {"arch", "lr", "n_experts"}
    assert sum(imp["ctr_auc"].values()) == pytest.approx(1.0)
    fig = importance_figure(snap2, imp)
    assert [t.name for t in fig.data] == ["ctr_auc", "cvr_auc"]
    # two completed trials: a note instead of an exception
    study = optuna.create_study(directions=["maximize", "maximize"],
                                storage=f"sqlite:///{tmp_path / 'few.db'}")
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 0.5), n_trials=2)
    few = StudySnapshot.from_study(study)
    msg = param_importances(few)
    assert isinstance(msg, str) and "at least" in msg
    fig = importance_figure(few)
    assert not fig.data and "at least" in fig.layout.annotations[0].text


def test_breakdown_front_vs_all(snap2: StudySnapshot) -> None:
    fig = breakdown_figure(snap2)
    arch_all, arch_front = fig.data[0], fig.data[1]
    assert arch_all.name == "all trials" and arch_front.name == "Pareto front"
    counts_all = dict(zip(arch_all.x, (c[0] for c in arch_all.customdata)))
    counts_front = dict(zip(arch_front.x, (c[0] for c in arch_front.customdata)))
    assert counts_all == {"mmoe": 3, "ple": 2, "shared_bottom": 1}
    assert counts_front == {"mmoe": 1, "ple": 1, "shared_bottom": 1}
    loss_front = dict(zip(fig.data[3].x, (c[0] for c in fig.data[3].customdata)))
    assert loss_front["pwiser"] == 2 and loss_front["bce"] == 3


def test_val_test_of_front_points(snap2: StudySnapshot) -> None:
    fig = val_test_figure(snap2)
    assert fig is not None
    ctr = fig.data[0]
    assert ctr.name == "ctr_auc" and _numbers(ctr) == FRONT[2]
    for x, y in zip(ctr.x, ctr.y):
        assert y == pytest.approx(x - 0.01)
    assert fig.data[-1].name == "test = val"


def test_reeval_error_bars(snap2: StudySnapshot) -> None:
    fig = reeval_figure(snap2)
    assert fig is not None
    val = next(t for t in fig.data if t.name == "ctr_auc val re-eval mean ± std")
    assert list(val.x) == ["trial 0"]
    assert val.y[0] == pytest.approx(0.71)
    assert val.error_y.array[0] == pytest.approx(0.01)
    run = next(t for t in fig.data if t.name == "ctr_auc search run (val)")
    assert run.y[0] == pytest.approx(0.70)


def test_all_figures_and_escaping(tmp_path) -> None:
    url, _ = make_study(tmp_path / "evil.db", name=EVIL, evil=True)
    snap = load_snapshot(url, EVIL)
    figs = build_figures(snap)
    assert set(figs) == {"pareto", "history", "learning_curves", "importance", "breakdown",
                         "val_test", "reeval"}
    text = "".join(f.to_json() for f in figs.values())
    assert "<script" not in text and "<img" not in text  # escaped before reaching plotly
    assert "&lt;img src=x" in " ".join(figs["pareto"].data[1].hovertext)
    assert "&lt;script&gt;" in figs["pareto"].layout.title.text


def test_missing_study_and_file_are_one_line_errors(tmp_path) -> None:
    url, _ = make_study(tmp_path / "s.db")
    with pytest.raises(AutomtlError, match=r"no study named 'nope'.*available: known"):
        load_snapshot(url, "nope")
    with pytest.raises(AutomtlError, match="no database file"):
        load_snapshot(f"sqlite:///{tmp_path / 'missing.db'}", "known")


def test_snapshot_is_read_only(tmp_path) -> None:
    url, _ = make_study(tmp_path / "s.db")
    snap = load_snapshot(url, "known")
    assert snap.study is not None
    with pytest.raises(Exception):
        snap.study.set_user_attr("x", 1)  # SQLite opened with mode=ro refuses writes
    assert "x" not in optuna.load_study(study_name="known", storage=url).user_attrs


def test_arch_label_names_non_plain_heads() -> None:
    from automtl.report import TrialRow

    cfg = {"model": {"arch": "ple", "head": "esmm"}}
    assert TrialRow(0, "COMPLETE", [0.5], {}, {"config": cfg, "arch": "ple"}).arch == "ple+esmm"
    assert TrialRow(1, "COMPLETE", [0.5], {"arch": "mmoe"}, {}).arch == "mmoe"
    assert TrialRow(2, "COMPLETE", [0.5], {}, {}).arch == "?"
