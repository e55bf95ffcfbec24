"""Plotly figures of a study snapshot: Pareto front, history, learning curves, importance,
architecture/loss breakdown, validation vs test, re-evaluation error bars.

Every builder takes a `StudySnapshot` and returns a `plotly.graph_objects.Figure` (or None when
the study has nothing to show for it). Every user-provided string (study name, params, values)
is HTML-escaped before it reaches plotly, because plotly renders a subset of HTML in text.
Scatter points carry the trial number as `customdata[0]` so a click can find the trial.
"""

from __future__ import annotations

import html
import json
import math
import warnings
from collections import Counter
from typing import Any, Callable

import optuna
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from automtl.report.snapshot import StudySnapshot, TrialRow

# Importance needs a few completed trials to mean anything; below this a note is shown instead.
MIN_IMPORTANCE_TRIALS = 4
# Learning curves list trials in the legend only up to this many (hover names them anyway).
_LEGEND_TRIALS = 30
# Hover text shows at most this many params (the rest are in the trial's YAML).
_HOVER_PARAMS = 8

FRONT_COLOR = "#d62728"
DOMINATED_COLOR = "#1f77b4"


def plain_text(value: Any) -> str:
    """Display text of a value: floats to 5 significant digits."""
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def escape_html(value: Any) -> str:
    """HTML-escaped display text of any value (plotly interprets a subset of HTML in labels;
    the static report is HTML): the one escaping helper of the reports."""
    return html.escape(plain_text(value), quote=True)


def _hover(t: TrialRow, snap: StudySnapshot) -> str:
    lines = [f"<b>trial {t.number}</b> ({escape_html(t.state.lower())})", f"arch: {escape_html(t.arch)}"]
    if t.values is not None:
        lines += [f"{escape_html(n)}: {escape_html(v)}" for n, v in zip(snap.objectives, t.values)]
    for k, v in list(sorted(t.params.items()))[:_HOVER_PARAMS]:
        lines.append(f"{escape_html(k)} = {escape_html(v)}")
    return "<br>".join(lines)


def _title(snap: StudySnapshot, what: str) -> str:
    return f"{what} — {escape_html(snap.name)}"


def _empty(title: str, note: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        title=title, xaxis_visible=False, yaxis_visible=False,
        annotations=[dict(text=escape_html(note), showarrow=False, x=0.5, y=0.5, xref="paper",
                          yref="paper", font=dict(size=14))],
    )
    return fig


def pareto_figure(snap: StudySnapshot) -> go.Figure | None:
    """2 objectives: scatter of completed trials, dominated faded, front as a line; 3+: 3-D
    scatter of the first three objectives (with conditioned trials: their sweep points,
    `points3d`). None for single-objective studies."""
    n = len(snap.objectives)
    if n < 2:
        return None
    rows = snap.complete
    front = snap.front_set
    on = [t for t in rows if t.number in front]
    off = [t for t in rows if t.number not in front]
    title = _title(snap, "Pareto front")
    if not rows:
        return _empty(title, "no completed trials yet")
    if n == 2 and snap.sweeps:
        return _points_figure(snap, title)
    if snap.sweeps:  # 3+ objectives with conditioned trials: their points in 3-D
        from automtl.report.points3d import points_figure_3d

        return points_figure_3d(snap, title)
    if n == 2:
        on = sorted(on, key=lambda t: (t.values[0], t.values[1]))  # type: ignore[index]
        fig = go.Figure()
        for name, group, style in (
            ("dominated", off, dict(mode="markers", opacity=0.35,
                                    marker=dict(color=DOMINATED_COLOR, size=8))),
            ("Pareto front", on, dict(mode="lines+markers", opacity=1.0,
                                      marker=dict(color=FRONT_COLOR, size=11),
                                      line=dict(color=FRONT_COLOR, shape="hv"))),
        ):
            fig.add_trace(go.Scatter(
                name=name,
                x=[t.values[0] for t in group],  # type: ignore[index]
                y=[t.values[1] for t in group],  # type: ignore[index]
                customdata=[[t.number] for t in group],
                hovertext=[_hover(t, snap) for t in group],
                hoverinfo="text",
                **style,
            ))
        fig.update_layout(title=title, xaxis_title=escape_html(snap.objectives[0]),
                          yaxis_title=escape_html(snap.objectives[1]), clickmode="event")
        return fig
    fig = go.Figure()
    for name, group, color, opacity in (("dominated", off, DOMINATED_COLOR, 0.35),
                                         ("Pareto front", on, FRONT_COLOR, 1.0)):
        fig.add_trace(go.Scatter3d(
            name=name, mode="markers", opacity=opacity,
            x=[t.values[0] for t in group],  # type: ignore[index]
            y=[t.values[1] for t in group],  # type: ignore[index]
            z=[t.values[2] for t in group],  # type: ignore[index]
            customdata=[[t.number] for t in group],
            hovertext=[_hover(t, snap) for t in group], hoverinfo="text",
            marker=dict(color=color, size=5 if name == "dominated" else 7),
        ))
    fig.update_layout(title=title, scene=dict(
        xaxis_title=escape_html(snap.objectives[0]), yaxis_title=escape_html(snap.objectives[1]),
        zaxis_title=escape_html(snap.objectives[2])))
    return fig


def _weights_text(weights: dict[str, float]) -> str:
    return ", ".join(f"{escape_html(k)}={v:.3g}" for k, v in weights.items())


def _points_figure(snap: StudySnapshot, title: str) -> go.Figure:
    """2 objectives with preference-conditioned trials (issue 16): each such trial is a curve
    through its sweep points (hover: the task-weight vector); ordinary trials are points; the
    front is the non-dominated set over all points. customdata = [trial, sweep point or None]."""
    o0, o1 = snap.objectives[:2]
    fig = go.Figure()
    front = set(snap.point_front)
    plain = [t for t in snap.complete if t.number not in snap.sweeps]
    off = [t for t in plain if (t.number, None) not in front]
    fig.add_trace(go.Scatter(
        name="dominated", mode="markers", opacity=0.35,
        marker=dict(color=DOMINATED_COLOR, size=8),
        x=[t.values[0] for t in off], y=[t.values[1] for t in off],  # type: ignore[index]
        customdata=[[t.number, None] for t in off],
        hovertext=[_hover(t, snap) for t in off], hoverinfo="text"))
    done = {t.number: t for t in snap.complete}
    for number, sweep in sorted(snap.sweeps.items()):
        t = done.get(number)
        if t is None:
            continue
        pts = [sp for sp in sweep if all(math.isfinite(sp.val.get(o, math.nan)) for o in (o0, o1))]
        fig.add_trace(go.Scatter(
            name=f"trial {number} (conditioned)", mode="lines+markers", opacity=0.8,
            line=dict(dash="dot", width=1.5), marker=dict(size=7, symbol="diamond"),
            x=[sp.val[o0] for sp in pts], y=[sp.val[o1] for sp in pts],
            customdata=[[number, sp.point] for sp in pts],
            hovertext=[f"{_hover(t, snap)}<br><b>task weights</b>: {_weights_text(sp.weights)}"
                       f"<br>{escape_html(o0)} here: {escape_html(sp.val[o0])}<br>{escape_html(o1)} here: {escape_html(sp.val[o1])}"
                       for sp in pts], hoverinfo="text"))
    on = []  # (x, y, trial, point, hover)
    for number, point in snap.point_front:
        t = done.get(number)
        if t is None:
            continue
        sp = snap.sweep_point(number, point) if point is not None else None
        if sp is not None:
            on.append((sp.val[o0], sp.val[o1], number, point,
                       f"<b>trial {number}</b> at task weights {_weights_text(sp.weights)}"))
        else:
            on.append((t.values[0], t.values[1], number, None, _hover(t, snap)))  # type: ignore
    on.sort(key=lambda p: (p[0], p[1]))
    fig.add_trace(go.Scatter(
        name="Pareto front (points)", mode="lines+markers",
        marker=dict(color=FRONT_COLOR, size=11), line=dict(color=FRONT_COLOR, shape="hv"),
        x=[p[0] for p in on], y=[p[1] for p in on], customdata=[[p[2], p[3]] for p in on],
        hovertext=[p[4] for p in on], hoverinfo="text"))
    fig.update_layout(title=title, xaxis_title=escape_html(o0), yaxis_title=escape_html(o1), clickmode="event")
    return fig


def parallel_figure(snap: StudySnapshot) -> go.Figure | None:
    """Parallel coordinates over all objectives (3+ objectives), front trials highlighted."""
    if len(snap.objectives) < 3:
        return None
    rows = snap.complete
    title = _title(snap, "Objectives, parallel coordinates")
    if not rows:
        return _empty(title, "no completed trials yet")
    front = snap.front_set
    dims = [dict(label=escape_html(name), values=[t.values[i] for t in rows])  # type: ignore[index]
            for i, name in enumerate(snap.objectives)]
    dims.insert(0, dict(label="trial", values=[t.number for t in rows]))
    color = [1 if t.number in front else 0 for t in rows]
    fig = go.Figure(go.Parcoords(
        dimensions=dims,
        line=dict(color=color, colorscale=[[0, DOMINATED_COLOR], [1, FRONT_COLOR]], cmin=0,
                  cmax=1, showscale=False),
    ))
    fig.update_layout(title=title + " (red: Pareto front)")
    return fig


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
            hovertext=[_hover(t, snap) for t in rows], hoverinfo="text",
            marker=dict(color=DOMINATED_COLOR), showlegend=False), row=i + 1, col=1)
        fig.add_trace(go.Scatter(
            name=f"best {escape_html(name)}", mode="lines", x=[t.number for t in rows], y=best,
            line=dict(color=FRONT_COLOR, shape="hv"), showlegend=False), row=i + 1, col=1)
    fig.update_xaxes(title_text="trial", row=n, col=1)
    fig.update_layout(title=_title(snap, "Optimisation history"), height=260 * n + 80)
    return fig


def learning_curves_figure(snap: StudySnapshot) -> go.Figure:
    """Per-trial validation curves (one panel per objective metric) from the per-epoch table.

    Completed trials are solid; pruned trials dashed and ending in an x where they were cut;
    failed ones dotted. One trace per (objective, trial) that has a history.
    """
    n = len(snap.objectives)
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True,
                        subplot_titles=[escape_html(o) for o in snap.objectives])
    states = {t.number: t.state for t in snap.trials}
    front = snap.front_set
    styles = {
        "PRUNED": dict(line=dict(dash="dash", width=1), marker=dict(symbol="x", size=9)),
        "FAIL": dict(line=dict(dash="dot", width=1), marker=dict(symbol="circle-open")),
    }
    many_ok = len(snap.histories) <= _LEGEND_TRIALS
    for i, metric in enumerate(snap.objectives):
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
    title = _title(snap, "Learning curves (validation; dashed = pruned, x = cut)")
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
    title = _title(snap, "Parameter importance (fANOVA)")
    imp = param_importances(snap) if importances is None else importances
    if isinstance(imp, str):
        return _empty(title, imp)
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
    fig.update_layout(title=_title(snap, "Architectures and loss terms: front vs all"),
                      barmode="group")
    return fig


def val_test_figure(snap: StudySnapshot) -> go.Figure | None:
    """Validation vs test value of each objective metric for front trials, with y = x."""
    front = [t for t in snap.complete if t.number in snap.front_set]
    pts: list[tuple[str, TrialRow, float, float]] = []
    for t in front:
        test = t.meta.test_metrics
        for i, name in enumerate(snap.objectives):
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
    fig.update_layout(title=_title(snap, "Front: validation vs test (below the line: selection "
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
    fig.update_layout(title=_title(snap, "Seed re-evaluation (mean ± std)"), yaxis_title="AUC")
    return fig


# name -> builder, in the order the report and the dashboard show them
FIGURES: dict[str, Callable[[StudySnapshot], go.Figure | None]] = {
    "pareto": pareto_figure,
    "parallel": parallel_figure,
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
    "FIGURES", "MIN_IMPORTANCE_TRIALS", "breakdown_figure", "build_figures", "escape_html",
    "figure_json",
    "history_figure", "importance_figure", "learning_curves_figure", "param_importances",
    "parallel_figure", "pareto_figure", "plain_text", "reeval_figure", "val_test_figure",
]
