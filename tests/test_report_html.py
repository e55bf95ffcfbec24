"""`automtl report`: one valid, self-contained, offline HTML file with the summary and figures."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
from report_study import EVIL, EVIL_VALUE, FRONT, make_study

from automtl.cli import main
from automtl.report import write_report

optuna.logging.set_verbosity(optuna.logging.WARNING)

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class StrictParser(HTMLParser):
    """Checks that every element is closed in order; collects scripts and the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.script_text: list[str] = []
        self.text: list[str] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a and a["id"]:
            self.ids.add(a["id"])
        if tag == "script":
            self.scripts.append(a)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "script":
            self.script_text.append(data)
        else:
            self.text.append(data)


def _parse(path: Path) -> tuple[StrictParser, str]:
    src = path.read_text(encoding="utf-8")
    p = StrictParser()
    p.feed(src)
    p.close()
    return p, src


def _figure_data(src: str, name: str) -> list[dict]:
    m = re.search(r'Plotly\.newPlot\(\s*"fig-' + name + r'",\s*', src)
    assert m, f"figure {name} missing"
    data, _ = json.JSONDecoder().raw_decode(src, m.end())
    return data


def test_report_cli_valid_offline_html(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url, _ = make_study(tmp_path / "s.db", n_objectives=3)
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--study", "known", "--storage", url, "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    p, src = _parse(out)
    assert not p.errors and not p.stack, (p.errors, p.stack)
    assert src.startswith("<!DOCTYPE html>")
    # offline: no script loads anything, plotly.js is inlined
    assert all(s.get("src") is None for s in p.scripts)
    assert not re.search(r"<script[^>]+src=[\"']?https?:", src)
    assert any("Plotly" in t and len(t) > 1_000_000 for t in p.script_text)
    for name in ("pareto", "parallel", "history", "learning_curves", "importance", "breakdown",
                 "val_test", "reeval"):
        assert f"fig-{name}" in p.ids
    pareto = _figure_data(src, "pareto")
    assert [t["type"] for t in pareto] == ["scatter3d", "scatter3d"]
    assert {c[0] for c in pareto[1]["customdata"]} == FRONT[3]
    curves = _figure_data(src, "learning_curves")
    assert len(curves) == 3 * 8  # 3 objectives x 8 trials with a history
    text = " ".join(p.text)
    assert "synthetic (rows=4000, n_tasks=3)" in text
    assert "6 complete, 1 pruned, 1 fail" in text
    assert "Pareto front (4 trials)" in text


def test_report_escapes_names_and_values(tmp_path: Path) -> None:
    url, _ = make_study(tmp_path / "evil.db", name=EVIL, evil=True)
    out = write_report(url, EVIL, tmp_path / "evil.html")
    p, src = _parse(out)
    assert not p.errors
    assert len(p.scripts) == 1 + 7  # plotly.js + one per figure: nothing injected
    assert "img" not in p.tags
    text = " ".join(p.text)
    assert EVIL in text and EVIL_VALUE in text  # shown as text


def test_report_missing_study_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url, _ = make_study(tmp_path / "s.db")
    rc = main(["report", "--study", "nope", "--storage", url, "-o", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert rc == 2 and "no study named 'nope'" in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_report_of_plain_optuna_study(tmp_path: Path) -> None:
    """A study made by plain Optuna (no automtl tables) still gets a report."""
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    study = optuna.create_study(study_name="plain", storage=url,
                                directions=["maximize", "maximize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)),
                   n_trials=6)
    out = write_report(url, "plain", tmp_path / "plain.html")
    p, src = _parse(out)
    assert not p.errors
    front = {t.number for t in study.best_trials}
    data = _figure_data(src, "pareto")
    assert {c[0] for c in data[1]["customdata"]} == front


def test_report_of_empty_and_single_objective_studies(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'small.db'}"
    optuna.create_study(study_name="empty", storage=url, directions=["maximize", "maximize"])
    p, src = _parse(write_report(url, "empty", tmp_path / "empty.html"))
    assert not p.errors and "no completed trials yet" in src
    single = optuna.create_study(study_name="single", storage=url, direction="maximize")
    single.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    p, src = _parse(write_report(url, "single", tmp_path / "single.html"))
    assert not p.errors
    assert "fig-pareto" not in p.ids and "fig-history" in p.ids and "fig-importance" in p.ids
    assert "Pareto front (1 trials)" in " ".join(p.text)
