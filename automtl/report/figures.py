"""Plotly figures of a study snapshot: the registry of every figure the report and the dashboard
show, and the per-trial ones (history, learning curves, importance, architecture/loss breakdown,
validation vs test, re-evaluation error bars). Objective-space figures (Pareto front, parallel
coordinates) live in `pareto_figures`; shared labels and colours in `labels`.

Every builder takes a `StudySnapshot` and returns a `plotly.graph_objects.Figure` (or None when
the study has nothing to show for it). Scatter points carry the trial number as `customdata[0]`
so a click can find the trial.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from typing import Any, Callable

import optuna
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from automtl.report.labels import (
    DOMINATED_COLOR,
    FRONT_COLOR,
    empty_figure,
    escape_html,
    figure_title,
    hover_text,
)
from automtl.report.pareto_figures import parallel_figure, pareto_figure
from automtl.report.projection_figures import colour_figure, projections_figure
from automtl.report.snapshot import StudySnapshot, TrialRow
from automtl.search.objectives import is_cost, metric_objectives

# Importance needs a few completed trials to mean anything; below this a note is shown instead.
MIN_IMPORTANCE_TRIALS = 4
# Learning curves list trials in the legend only up to this many (hover names them anyway).
_LEGEND_TRIALS = 30


def history_figure(snap: StudySnapshot) -> go.Figure:
    """One panel per objective: value of each completed trial and the best so far."""
    n = len(snap.objectives)
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True,
                        subplot_titles=[escape_html(o) for o in snap.objectives])
    rows = sorted(snap.complete, key=lambda t: t.number)
    for i, name in enumerate(snap.objectives):
        ys = [t.values[i] for t in rows]  # type: ignore[index]
        better: Callable[[float, float], float] = (
            max if snap.directions[i] == "maximize" else min)
        best: list[float] = []
        for y in ys:
            best.append(y if not best else better(best[-1], y))
        fig.add_trace(go.Scatter(
            name=f"{escape_html(name)}", mode="markers", x=[t.number for t in rows], y=ys,
            customdata=[[t.number] for t in rows],
            hovertext=[hover_text(t, snap) for t in rows], hoverinfo="text",
            marker=dict(color=DOMINATED_COLOR), showlegend=False), row=i + 1, col=1)
        fig.add_trace(go.Scatter(
            name=f"best {escape_html(name)}", mode="lines", x=[t.number for t in rows], y=best,
            line=dict(color=FRONT_COLOR, shape="hv"), showlegend=False), row=i + 1, col=1)
    fig.update_xaxes(title_text="trial", row=n, col=1)
    fig.update_layout(title=figure_title(snap, "Optimisation history"), height=260 * n + 80)
    return fig


def learning_curves_figure(snap: StudySnapshot) -> go.Figure:
    """Per-trial validation curves (one panel per objective metric) from the per-epoch table.

    Completed trials are solid; pruned trials dashed and ending in an x where they were cut;
    failed ones dotted. One trace per (objective, trial) that has a history. A cost objective
    (the same at every epoch) has no panel.
    """
    metrics = metric_objectives(snap.objectives)
    n = max(len(metrics), 1)
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True,
                        subplot_titles=[escape_html(o) for o in metrics])
    states = {t.number: t.state for t in snap.trials}
    front = snap.front_set
    styles = {
        "PRUNED": dict(line=dict(dash="dash", width=1), marker=dict(symbol="x", size=9)),
        "FAIL": dict(line=dict(dash="dot", width=1), marker=dict(symbol="circle-open")),
    }
    many_ok = len(snap.histories) <= _LEGEND_TRIALS
    for i, metric in enumerate(metrics):
        for number in sorted(snap.histories):
            recs = sorted(snap.histories[number], key=lambda r: r["epoch"])
            recs = [r for r in recs if metric in r]
            if not recs:
                continue
            state = states.get(number, "COMPLETE")
            style = styles.get(state, dict(line=dict(width=2 if number in front else 1)))
            # Only the last point of a pruned trial gets a marker: the place it was cut.
            sizes = [0] * (len(recs) - 1) + [9] if state == "PRUNED" else None
            marker = dict(style.get("marker", {}))
            if sizes is not None:
                marker["size"] = sizes
            fig.add_trace(go.Scatter(
                name=f"trial {number}" + (f" ({state.lower()})" if state != "COMPLETE" else ""),
                legendgroup=f"trial {number}", showlegend=(i == 0 and many_ok),
                mode="lines+markers" if state in styles else "lines",
                x=[r["epoch"] for r in recs], y=[r[metric] for r in recs],
                customdata=[[number] for _ in recs],
                hovertemplate=f"trial {number} ({state.lower()})<br>epoch %{{x}}<br>"
                              f"{escape_html(metric)} %{{y:.4f}}<extra></extra>",
                line=style["line"], marker=marker,
            ), row=i + 1, col=1)
    fig.update_xaxes(title_text="epoch", row=n, col=1)
    title = figure_title(snap, "Learning curves (validation; dashed = pruned, x = cut)")
    fig.update_layout(title=title, height=260 * n + 80)
    if not snap.histories:
        fig.add_annotation(text="no per-epoch metrics recorded yet", showarrow=False, x=0.5,
                           y=0.5, xref="paper", yref="paper")
    return fig


def param_importances(snap: StudySnapshot) -> dict[str, dict[str, float]] | str:
    """Optuna fANOVA importance per objective, or a one-line reason why it cannot be computed."""
    if snap.study is None:
        return "importance needs the Optuna study"
    rows = snap.complete
    if len(rows) < MIN_IMPORTANCE_TRIALS:
        return (f"parameter importance needs at least {MIN_IMPORTANCE_TRIALS} completed trials "
                f"(have {len(rows)})")
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(snap.objectives):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(
                    snap.study,
                    # 16 shallow trees: ~1 s for 500 trials; the ranking is what matters here
                    evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=16,
                                                                          max_depth=8, seed=0),
                    target=lambda t, i=i: t.values[i],
                )
        except (RuntimeError, ValueError) as exc:  # e.g. no param shared by all trials
            return f"parameter importance unavailable: {exc}"
        out[name] = {k: float(v) for k, v in imp.items() if math.isfinite(v)}
    if not any(out.values()):
        return "parameter importance unavailable: no parameter varies across completed trials"
    return out


def importance_figure(snap: StudySnapshot,
                      importances: dict[str, dict[str, float]] | str | None = None) -> go.Figure:
    """Horizontal bars of parameter importance, one group per objective (or a note)."""
    title = figure_title(snap, "Parameter importance (fANOVA)")
    imp = param_importances(snap) if importances is None else importances
    if isinstance(imp, str):
        return empty_figure(title, imp)
    params = sorted({p for d in imp.values() for p in d},
                    key=lambda p: sum(d.get(p, 0.0) for d in imp.values()))
    fig = go.Figure()
    for name, d in imp.items():
        fig.add_trace(go.Bar(name=escape_html(name), orientation="h", y=[escape_html(p) for p in params],
                             x=[d.get(p, 0.0) for p in params]))
    fig.update_layout(title=title, barmode="group", xaxis_title="importance",
                      yaxis=dict(automargin=True),
                      height=max(320, 28 * len(params) * max(1, len(imp)) + 120))
    return fig


def breakdown_figure(snap: StudySnapshot) -> go.Figure:
    """Share of architectures and of loss ingredients among all completed trials vs the front."""
    rows = snap.complete
    front = [t for t in rows if t.number in snap.front_set]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["architecture", "loss terms"])
    for col, key in ((1, lambda t: [t.arch]), (2, lambda t: t.loss_terms)):
        cats_all = Counter(c for t in rows for c in key(t))
        cats_front = Counter(c for t in front for c in key(t))
        cats = sorted(cats_all)
        for label, counts, total, color in (("all trials", cats_all, len(rows), DOMINATED_COLOR),
                                            ("Pareto front", cats_front, len(front), FRONT_COLOR)):
            fig.add_trace(go.Bar(
                name=label, legendgroup=label, showlegend=(col == 1), marker_color=color,
                x=[escape_html(c) for c in cats],
                y=[100.0 * counts.get(c, 0) / total if total else 0.0 for c in cats],
                customdata=[[counts.get(c, 0), total] for c in cats],
                hovertemplate="%{x}: %{customdata[0]} of %{customdata[1]} (%{y:.0f}%)"
                              f"<extra>{label}</extra>",
            ), row=1, col=col)
    fig.update_yaxes(title_text="% of trials", row=1, col=1)
    fig.update_layout(title=figure_title(snap, "Architectures and loss terms: front vs all"),
                      barmode="group")
    return fig


def val_test_figure(snap: StudySnapshot) -> go.Figure | None:
    """Validation vs test value of each objective metric (not a cost: it is the same on both)
    for front trials, with y = x."""
    front = [t for t in snap.complete if t.number in snap.front_set]
    pts: list[tuple[str, TrialRow, float, float]] = []
    for t in front:
        test = t.meta.test_metrics
        for i, name in enumerate(snap.objectives):
            if is_cost(name):
                continue
            v = test.get(name)
            if isinstance(v, (int, float)) and math.isfinite(v):
                pts.append((name, t, t.values[i], float(v)))  # type: ignore[index]
    if not pts:
        return None
    fig = go.Figure()
    for name in snap.objectives:
        mine = [p for p in pts if p[0] == name]
        if not mine:
            continue
        fig.add_trace(go.Scatter(
            name=escape_html(name), mode="markers", x=[p[2] for p in mine], y=[p[3] for p in mine],
            customdata=[[p[1].number] for p in mine],
            hovertext=[f"trial {p[1].number} ({escape_html(p[1].arch)})<br>{escape_html(name)} val {p[2]:.4f}"
                       f" test {p[3]:.4f}" for p in mine], hoverinfo="text",
            marker=dict(size=10)))
    lo = min(min(p[2], p[3]) for p in pts)
    hi = max(max(p[2], p[3]) for p in pts)
    fig.add_trace(go.Scatter(name="test = val", mode="lines", x=[lo, hi], y=[lo, hi],
                             line=dict(color="grey", dash="dot"), hoverinfo="skip"))
    fig.update_layout(title=figure_title(snap, "Front: validation vs test (below the line: selection "
                                         "overfit)"),
                      xaxis_title="validation", yaxis_title="test")
    return fig


def reeval_figure(snap: StudySnapshot) -> go.Figure | None:
    """Seed re-evaluation: per objective metric, mean ± std over re-run seeds (validation, and
    test where recorded) next to the search run's single validation value. None when no trial
    was re-evaluated."""
    numbers = sorted(n for n, stats in snap.reeval.items() if stats)
    if not numbers:
        return None
    fig = go.Figure()
    for i, name in enumerate(snap.objectives):
        if is_cost(name):  # not re-measured by a re-run, and not an AUC
            continue
        for split, symbol in (("val", "circle"), ("test", "square")):
            have = [n for n in numbers if isinstance(snap.reeval[n].get(f"{split}/{name}"), dict)]
            if not have:
                continue
            stats = [snap.reeval[n][f"{split}/{name}"] for n in have]
            fig.add_trace(go.Scatter(
                name=f"{escape_html(name)} {split} re-eval mean ± std", mode="markers",
                x=[f"trial {n}" for n in have], y=[s.get("mean") for s in stats],
                error_y=dict(type="data", array=[s.get("std", 0.0) for s in stats],
                             visible=True),
                customdata=[[n] for n in have],
                hovertext=[f"trial {n}: {split} {escape_html(name)} {s.get('mean', float('nan')):.4f} ± "
                           f"{s.get('std', 0.0):.4f} (n={escape_html(s.get('n', '?'))})"
                           for n, s in zip(have, stats)], hoverinfo="text",
                marker=dict(size=10, symbol=symbol)))
        runs = [t for t in (snap.trial(n) for n in numbers) if t is not None and t.values]
        if runs:
            fig.add_trace(go.Scatter(
                name=f"{escape_html(name)} search run (val)", mode="markers",
                x=[f"trial {t.number}" for t in runs],
                y=[t.values[i] for t in runs],  # type: ignore[index]
                marker=dict(symbol="diamond-open", size=11),
                customdata=[[t.number] for t in runs], hoverinfo="x+y"))
    if not fig.data:
        return None
    fig.update_layout(title=figure_title(snap, "Seed re-evaluation (mean ± std)"), yaxis_title="AUC")
    return fig


# name -> builder, in the order the report and the dashboard show them
FIGURES: dict[str, Callable[[StudySnapshot], go.Figure | None]] = {
    "pareto": pareto_figure,
    "parallel": parallel_figure,
    "projections": projections_figure,
    "colour": colour_figure,
    "history": history_figure,
    "learning_curves": learning_curves_figure,
    "importance": importance_figure,
    "breakdown": breakdown_figure,
    "val_test": val_test_figure,
    "reeval": reeval_figure,
}


def build_figures(snap: StudySnapshot,
                  importances: dict[str, dict[str, float]] | str | None = None,
                  ) -> dict[str, go.Figure]:
    """All figures that apply to this study, keyed by name (FIGURES order); `importances`
    reuses a `param_importances` result computed earlier for the same completed trials."""
    out = {}
    for name, builder in FIGURES.items():
        if name == "importance" and importances is not None:
            fig = importance_figure(snap, importances)
        else:
            fig = builder(snap)
        if fig is not None:
            out[name] = fig
    return out


def figure_json(fig: go.Figure) -> dict[str, Any]:
    """Plain JSON-ready dict of a figure (numpy arrays turned into lists)."""
    return json.loads(fig.to_json())


__all__ = [
    "FIGURES", "MIN_IMPORTANCE_TRIALS", "breakdown_figure", "build_figures", "figure_json",
    "history_figure", "importance_figure", "learning_curves_figure", "param_importances",
    "reeval_figure", "val_test_figure",
]
