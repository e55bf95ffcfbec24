"""automtl.report: plotly figures of a study, the static HTML report and the live dashboard."""

from automtl.report.figures import (
    FIGURES,
    breakdown_figure,
    build_figures,
    figure_json,
    history_figure,
    importance_figure,
    learning_curves_figure,
    param_importances,
    reeval_figure,
    val_test_figure,
)
from automtl.report.html import build_report_html, write_report
from automtl.report.pareto_figures import parallel_figure, pareto_figure
from automtl.report.projection_figures import colour_figure, projections_figure
from automtl.report.snapshot import StudySnapshot, TrialRow, load_snapshot

__all__ = [
    "FIGURES", "StudySnapshot", "TrialRow", "breakdown_figure", "build_figures",
    "build_report_html", "colour_figure", "figure_json", "history_figure", "importance_figure",
    "learning_curves_figure", "load_snapshot", "param_importances",
    "parallel_figure", "pareto_figure", "projections_figure", "reeval_figure", "val_test_figure",
    "write_report",
]
