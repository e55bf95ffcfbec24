"""3-D Pareto figure over points for studies with 3+ objectives and preference-conditioned
trials (issue 16; the 2-objective version, a curve per trial, is `pareto_figures.pareto_figure`).

A conditioned trial is drawn as its own marker cloud at its sweep points (the first three
objectives; hover: the task-weight vector) and, when its sweep is the 3-task simplex lattice, as
a faint surface through them (triangulated in weight space, so neighbours in weight are joined:
the trial's trade-off surface, as a curve is for two tasks). Ordinary trials are single markers;
the study front is the non-dominated set over all points, drawn on top. Every marker carries
``customdata = [trial, sweep point or None]``, the convention the dashboard's click handler
reads (a click shows the trial, or the point with its weights and export command).
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from automtl.report.labels import DOMINATED_COLOR, FRONT_COLOR, weights_text
from automtl.report.labels import escape_html as _esc
from automtl.report.snapshot import StudySnapshot
from automtl.search.front import SweepRow


def lattice_triangles(weights: list[dict[str, float]]) -> list[tuple[int, int, int]]:
    """Triangles (point indices) of a 3-task simplex lattice {k/n}, joining neighbours in weight
    space; [] when the vectors are not such a lattice (other task counts, custom grids)."""
    if len(weights) < 3 or any(len(w) != 3 for w in weights):
        return []
    vecs = [list(w.values()) for w in weights]
    n = max(round(1 / min((x for v in vecs for x in v if x > 1e-9), default=1.0)), 1)
    index: dict[tuple[int, int], int] = {}
    for i, v in enumerate(vecs):
        a, b = round(v[0] * n), round(v[1] * n)
        if any(abs(x * n - round(x * n)) > 1e-6 for x in v) or a + b > n:
            return []
        index[(a, b)] = i
    tris = []
    for (a, b), i in index.items():
        right, up, diag = index.get((a + 1, b)), index.get((a, b + 1)), index.get((a + 1, b + 1))
        if right is not None and up is not None:
            tris.append((i, right, up))
            if diag is not None:
                tris.append((right, diag, up))
    return tris


def _coords(values: list[list[float]]) -> dict[str, list[float]]:
    return {"x": [v[0] for v in values], "y": [v[1] for v in values],
            "z": [v[2] for v in values]}


def points_figure_3d(snap: StudySnapshot, title: str) -> go.Figure:
    """The front over points in 3-D (first three objectives); see the module docstring."""
    objs = snap.objectives[:3]
    done = {t.number: t for t in snap.complete}
    front = set(snap.point_front)
    fig = go.Figure()

    def trial_hover(number: int) -> str:
        t = done[number]
        return f"<b>trial {number}</b> ({_esc(t.arch)})"

    def point_values(number: int, sp: SweepRow | None) -> list[float]:
        t = done[number]
        own = dict(zip(snap.objectives, t.values or []))
        if sp is None:
            return [own.get(o, math.nan) for o in objs]
        # a metric the sweep does not record (a cost) is the trial's, the same at every point
        return [sp.val.get(o, own.get(o, math.nan)) for o in objs]

    def hover(number: int, sp: SweepRow | None, vals: list[float]) -> str:
        lines = [trial_hover(number)]
        if sp is not None:
            lines.append(f"<b>task weights</b>: {weights_text(sp.weights)}")
        lines += [f"{_esc(o)}: {_esc(v)}" for o, v in zip(objs, vals)]
        return "<br>".join(lines)

    plain = [n for n in done if n not in snap.sweeps and (n, None) not in front]
    vals = [point_values(n, None) for n in plain]
    fig.add_trace(go.Scatter3d(
        name="dominated", mode="markers", opacity=0.35,
        marker=dict(color=DOMINATED_COLOR, size=5), **_coords(vals),
        customdata=[[n, None] for n in plain],
        hovertext=[hover(n, None, v) for n, v in zip(plain, vals)], hoverinfo="text"))
    for number, sweep in sorted(snap.sweeps.items()):
        if number not in done:
            continue
        pts = [(sp, point_values(number, sp)) for sp in sweep]
        pts = [(sp, v) for sp, v in pts if all(math.isfinite(x) for x in v)]
        if not pts:
            continue
        xyz = _coords([v for _, v in pts])
        tris = lattice_triangles([sp.weights for sp, _ in pts])
        if tris:
            fig.add_trace(go.Mesh3d(
                name=f"trial {number} surface", opacity=0.18, hoverinfo="skip",
                showlegend=False, i=[a for a, _, _ in tris], j=[b for _, b, _ in tris],
                k=[c for _, _, c in tris], **xyz))
        fig.add_trace(go.Scatter3d(
            name=f"trial {number} (conditioned)", mode="markers", opacity=0.85,
            marker=dict(size=4, symbol="diamond"), **xyz,
            customdata=[[number, sp.point] for sp, _ in pts],
            hovertext=[hover(number, sp, v) for sp, v in pts], hoverinfo="text"))
    on = []
    for number, point in snap.point_front:
        if number not in done:
            continue
        sp = snap.sweep_point(number, point) if point is not None else None
        on.append((number, point, sp, point_values(number, sp)))
    fig.add_trace(go.Scatter3d(
        name="Pareto front (points)", mode="markers",
        marker=dict(color=FRONT_COLOR, size=7), **_coords([v for *_, v in on]),
        customdata=[[n, p] for n, p, _, _ in on],
        hovertext=[hover(n, sp, v) for n, _, sp, v in on], hoverinfo="text"))
    fig.update_layout(title=title, clickmode="event", scene=dict(
        xaxis_title=_esc(objs[0]), yaxis_title=_esc(objs[1]), zaxis_title=_esc(objs[2])))
    return fig


__all__ = ["lattice_triangles", "points_figure_3d"]
