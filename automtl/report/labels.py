"""Shared pieces of the report figures: display text, HTML escaping, hover text, titles, the
empty-figure placeholder and the front/dominated colours (one definition for every figure module).

Every user-provided string (study name, params, values) is HTML-escaped before it reaches plotly,
because plotly renders a subset of HTML in text.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from automtl.report.snapshot import StudySnapshot, TrialRow

# Hover text shows at most this many params (the rest are in the trial's YAML).
HOVER_PARAMS = 8

FRONT_COLOR = "#d62728"
DOMINATED_COLOR = "#1f77b4"


def plain_text(value: Any) -> str:
    """Display text of a value: floats to 5 significant digits."""
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def escape_html(value: Any) -> str:
    """HTML-escaped display text of any value (plotly interprets a subset of HTML in labels;
    the static report is HTML): the one escaping helper of the reports."""
    return html.escape(plain_text(value), quote=True)



def hover_text(t: TrialRow, snap: StudySnapshot) -> str:
    """Hover text of one trial: number, state, arch, objective values, the first params."""
    lines = [f"<b>trial {t.number}</b> ({escape_html(t.state.lower())})", f"arch: {escape_html(t.arch)}"]
    if t.values is not None:
        lines += [f"{escape_html(n)}: {escape_html(v)}" for n, v in zip(snap.objectives, t.values)]
    for k, v in list(sorted(t.params.items()))[:HOVER_PARAMS]:
        lines.append(f"{escape_html(k)} = {escape_html(v)}")
    return "<br>".join(lines)


def figure_title(snap: StudySnapshot, what: str) -> str:
    """A figure's title: what it shows and the (escaped) study name."""
    return f"{what} — {escape_html(snap.name)}"


def empty_figure(title: str, note: str) -> go.Figure:
    """A titled placeholder figure that says why there is nothing to plot."""
    fig = go.Figure()
    fig.update_layout(
        title=title, xaxis_visible=False, yaxis_visible=False,
        annotations=[dict(text=escape_html(note), showarrow=False, x=0.5, y=0.5, xref="paper",
                          yref="paper", font=dict(size=14))],
    )
    return fig


def weights_text(weights: dict[str, float]) -> str:
    """A task-weight vector as hover text, e.g. ``ctr=0.75, ctcvr=0.25``."""
    return ", ".join(f"{escape_html(k)}={v:.3g}" for k, v in weights.items())
