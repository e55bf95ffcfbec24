"""Objective-space figures: the Pareto front (2-D, 3-D, or curves through the sweep points of
preference-conditioned trials) and parallel coordinates of all objectives.

Scatter points carry the trial number as `customdata[0]` so a click can find the trial.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from automtl.report.labels import (
    DOMINATED_COLOR,
    FRONT_COLOR,
    empty_figure,
    escape_html,
    figure_title,
    hover_text,
    weights_text,
)
from automtl.report.snapshot import StudySnapshot


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
    title = figure_title(snap, "Pareto front")
    if not rows:
        return empty_figure(title, "no completed trials yet")
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
                hovertext=[hover_text(t, snap) for t in group],
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
            hovertext=[hover_text(t, snap) for t in group], hoverinfo="text",
            marker=dict(color=color, size=5 if name == "dominated" else 7),
        ))
    fig.update_layout(title=title, scene=dict(
        xaxis_title=escape_html(snap.objectives[0]), yaxis_title=escape_html(snap.objectives[1]),
        zaxis_title=escape_html(snap.objectives[2])))
    return fig


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
        hovertext=[hover_text(t, snap) for t in off], hoverinfo="text"))
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
            hovertext=[f"{hover_text(t, snap)}<br><b>task weights</b>: {weights_text(sp.weights)}"
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
                       f"<b>trial {number}</b> at task weights {weights_text(sp.weights)}"))
        else:
            on.append((t.values[0], t.values[1], number, None, hover_text(t, snap)))  # type: ignore
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
    title = figure_title(snap, "Objectives, parallel coordinates")
    if not rows:
        return empty_figure(title, "no completed trials yet")
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
