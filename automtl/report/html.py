"""The static report: one self-contained HTML file (plotly.js inlined, works offline) with a
summary table and every figure of a study."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from automtl import __version__
from automtl.errors import AutomtlError
from automtl.report.figures import build_figures
from automtl.report.labels import escape_html, plain_text
from automtl.report.snapshot import StudySnapshot, load_snapshot

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;font-size:0.9em} th{background:#f3f3f3}
.fig{margin:12px 0;border:1px solid #eee} .muted{color:#777;font-size:0.85em}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.9em}
"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape_html(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape_html(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def dataset_label(snap: StudySnapshot) -> str:
    """Short description of the study's dataset from study user_attr "dataset"."""
    ds = snap.meta.dataset
    if isinstance(ds, dict):
        opts = ds.get("options") or {}
        extra = ", ".join(f"{k}={v}" for k, v in opts.items())
        return f"{ds.get('name', '?')}" + (f" ({extra})" if extra else "")
    return str(ds) if ds is not None else "unknown"


def summary_html(snap: StudySnapshot) -> str:
    """The summary section: dataset, trials by state, best per objective, the front."""
    counts = snap.state_counts()
    meta = [
        ["study", snap.name],
        ["storage", snap.storage or "-"],
        ["dataset", dataset_label(snap)],
        ["objectives", ", ".join(f"{o} ({d})" for o, d in zip(snap.objectives, snap.directions))],
        ["search space", snap.meta.space or "-"],
        ["trials", ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
         or "none yet"],
    ]
    parts = [_table(["", ""], meta)]
    best = snap.best()
    if best:
        parts.append("<h2>Best per objective</h2>")
        parts.append(_table(
            ["objective", "trial", "value", "arch"],
            [[o, t.number, t.values[snap.objectives.index(o)], t.arch]  # type: ignore[index]
             for o, t in best.items()]))
    front = [snap.trial(n) for n in snap.front]
    front_rows = [t for t in front if t is not None and t.values is not None]
    if front_rows:
        parts.append(f"<h2>Pareto front ({len(front_rows)} trials)</h2>")
        header = ["trial", *snap.objectives,
                  *[f"test {o}" for o in snap.objectives], "arch", "params"]
        rows = []
        for t in sorted(front_rows, key=lambda t: t.number):
            test = t.meta.test_metrics
            rows.append([t.number, *t.values, *[test.get(o, "-") for o in snap.objectives],
                         t.arch, ", ".join(f"{k}={plain_text(v)}" for k, v in sorted(t.params.items()))])
        parts.append(_table(header, rows))
    if snap.sweeps:
        parts.append(_points_html(snap))
    return "\n".join(parts)


def _points_html(snap: StudySnapshot) -> str:
    """The front over points: which trial and which task-weight vector each point is."""
    header = ["trial", "task weights", *snap.objectives, *[f"test {o}" for o in snap.objectives],
              "arch"]
    rows = []
    for number, point in snap.point_front:
        t = snap.trial(number)
        if t is None or t.values is None:
            continue
        sp = snap.sweep_point(number, point) if point is not None else None
        if sp is not None:
            weights = " ".join(f"{k}={v:.3g}" for k, v in sp.weights.items())
            vals, test = [sp.val.get(o) for o in snap.objectives], sp.test
        else:
            weights, vals = "-", list(t.values)
            test = t.meta.test_metrics
        rows.append([number, weights, *vals, *[test.get(o, "-") for o in snap.objectives],
                     t.arch])
    return (f"<h2>Pareto front over points ({len(rows)} points; a preference-conditioned "
            "trial contributes one point per task-weight vector)</h2>\n" + _table(header, rows))


def _figure_div(name: str, fig: go.Figure) -> str:
    # to_html escapes "<" and "/" inside its JSON, so user strings cannot close the script tag.
    body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
                       config={"displaylogo": False, "responsive": True})
    return f'<div class="fig" id="section-{escape_html(name)}">{body}</div>'


def build_report_html(snap: StudySnapshot) -> str:
    """The full report page as one HTML string (plotly.js inlined)."""
    figs = build_figures(snap)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>automtl report: {escape_html(snap.name)}</title>",
        f"<style>{_CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>automtl study <code>{escape_html(snap.name)}</code></h1>",
        f'<p class="muted">generated {escape_html(now)} by automtl {escape_html(__version__)}; open a trial with '
        f"<code>automtl export --study {escape_html(snap.name)} --trial N --format yaml</code></p>",
        "<h2>Summary</h2>",
        summary_html(snap),
        *[_figure_div(name, fig) for name, fig in figs.items()],
        "</body></html>",
    ])


def write_report(storage_url: str, study_name: str, path: str | Path) -> Path:
    """Write the static HTML report of a stored study to `path`; returns the path written."""
    snap = load_snapshot(storage_url, study_name)
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(build_report_html(snap), encoding="utf-8")
    except OSError as exc:
        raise AutomtlError(f"{out}: cannot write the report ({exc.strerror}); choose another "
                           "path with -o") from None
    return out


__all__ = ["build_report_html", "dataset_label", "summary_html", "write_report"]
