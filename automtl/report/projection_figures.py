"""Figures for studies with three or more objectives, e.g. two AUCs and a serving cost (issue
15): every pairwise projection of the first three objectives, and the two metrics coloured by
the third objective.

A 3-D scatter (`pareto_figure`) is hard to read on paper; the projections show each trade-off
on plain axes. The front highlighted in each panel is the front over ALL objectives (a trial on
it may look dominated in one projection: it is better on the axis not shown). Minimised
objectives (costs) are labelled "(min)". Points carry the trial number as `customdata[0]`.
"""

from __future__ import annotations

from itertools import combinations

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
from automtl.report.snapshot import StudySnapshot


def _axis_label(snap: StudySnapshot, i: int) -> str:
    name = escape_html(snap.objectives[i])
    return f"{name} (min)" if snap.directions[i] == "minimize" else name


def projections_figure(snap: StudySnapshot) -> go.Figure | None:
    """3+ objectives: one 2-D panel per pair of the first three objectives, front trials (over
    all objectives) in red, the others faded. None for fewer than 3 objectives."""
    if len(snap.objectives) < 3:
        return None
    title = figure_title(snap, "Pareto front, pairwise projections")
    rows = snap.complete
    if not rows:
        return empty_figure(title, "no completed trials yet")
    front = snap.front_set
    pairs = list(combinations(range(3), 2))
    fig = make_subplots(rows=1, cols=len(pairs), horizontal_spacing=0.08)
    for col, (i, j) in enumerate(pairs, start=1):
        for name, group, color, opacity, size in (
                ("dominated", [t for t in rows if t.number not in front], DOMINATED_COLOR, 0.35, 7),
                ("Pareto front", [t for t in rows if t.number in front], FRONT_COLOR, 1.0, 9)):
            fig.add_trace(go.Scatter(
                name=name, legendgroup=name, showlegend=col == 1, mode="markers",
                opacity=opacity, marker=dict(color=color, size=size),
                x=[t.values[i] for t in group],  # type: ignore[index]
                y=[t.values[j] for t in group],  # type: ignore[index]
                customdata=[[t.number] for t in group],
                hovertext=[hover_text(t, snap) for t in group], hoverinfo="text"), row=1, col=col)
        fig.update_xaxes(title_text=_axis_label(snap, i), row=1, col=col)
        fig.update_yaxes(title_text=_axis_label(snap, j), row=1, col=col)
    fig.update_layout(title=title, clickmode="event")
    return fig


def colour_figure(snap: StudySnapshot) -> go.Figure | None:
    """3+ objectives: the first two objectives on the axes, the third as the marker colour;
    front trials (over all objectives) drawn larger with a dark outline."""
    if len(snap.objectives) < 3:
        return None
    label = _axis_label(snap, 2)
    title = figure_title(snap, f"{escape_html(snap.objectives[0])} vs "
                               f"{escape_html(snap.objectives[1])}, colour: {label}")
    rows = snap.complete
    if not rows:
        return empty_figure(title, "no completed trials yet")
    front = snap.front_set
    colours = [t.values[2] for t in rows]  # type: ignore[index]
    fig = go.Figure(go.Scatter(
        mode="markers", name="trials",
        x=[t.values[0] for t in rows],  # type: ignore[index]
        y=[t.values[1] for t in rows],  # type: ignore[index]
        customdata=[[t.number] for t in rows],
        hovertext=[hover_text(t, snap) for t in rows], hoverinfo="text",
        marker=dict(color=colours, colorscale="Viridis", showscale=True,
                    reversescale=snap.directions[2] == "minimize",  # better = brighter
                    colorbar=dict(title=dict(text=label)),
                    size=[12 if t.number in front else 7 for t in rows],
                    line=dict(width=[2 if t.number in front else 0 for t in rows],
                              color="#222222"))))
    fig.update_layout(title=title + " (outlined: Pareto front)",
                      xaxis_title=_axis_label(snap, 0), yaxis_title=_axis_label(snap, 1),
                      clickmode="event")
    return fig


__all__ = ["colour_figure", "projections_figure"]
