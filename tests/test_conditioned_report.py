"""The report and dashboard with preference-conditioned trials (issue 16), on a constructed study
(known values, no training): the front over points, one curve per conditioned trial, points that
carry their weight vector, and (in Chromium) a click on a curve point showing its weights and
export command: on the 2-D figure (SVG) and on the 3-objective 3-D figure (WebGL; headless
Chromium renders it with SwiftShader, the same pick buffer plotly uses in a real browser)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from automtl.config import LossConfig, ModelConfig, TrialConfig, WeightingConfig, to_dict
from automtl.report import build_report_html, load_snapshot
from automtl.report.dashboard import create_app, trial_json
from automtl.report.pareto_figures import pareto_figure
from automtl.search.store import Store

OBJ = ["ctr_auc", "cvr_auc"]
# ordinary trials: (ctr, cvr)
PLAIN = {0: (0.70, 0.60), 1: (0.66, 0.655)}
# conditioned trials: (ctr, cvr) per sweep vector ctr weight 1, .75, .5, .25, 0
CURVES = {2: [(0.72, 0.55), (0.715, 0.58), (0.705, 0.62), (0.69, 0.64), (0.60, 0.66)],
          3: [(0.69, 0.50), (0.685, 0.52), (0.68, 0.55), (0.67, 0.57), (0.65, 0.58)]}
WEIGHTS = [1.0, 0.75, 0.5, 0.25, 0.0]


def make_study(db: Path) -> str:
    url = f"sqlite:///{db}"
    study = optuna.create_study(study_name="cond", storage=url, directions=["maximize"] * 2)
    study.set_user_attr("objectives", OBJ)
    store = Store(url)
    for number in range(4):
        scheme = "conditioned" if number in CURVES else "fixed"
        cfg = TrialConfig(model=ModelConfig(arch="mmoe"),
                          loss=LossConfig(weighting=WeightingConfig(scheme=scheme)))
        values = PLAIN.get(number) or CURVES[number][2]  # Optuna sees the knee (middle point)
        attrs = {"config": to_dict(cfg), "arch": "mmoe", "test_metrics": {}}
        if number in CURVES:
            attrs["preference"] = {"ctr": 0.5, "ctcvr": 0.5}
            attrs["weight_names"] = {"ctr": "ctr", "cvr": "ctcvr", "ctcvr": "ctcvr"}
        study.add_trial(optuna.trial.create_trial(values=list(values), params={},
                                                  distributions={}, user_attrs=attrs))
        if number in CURVES:
            store.record_sweep("cond", number, [
                {"weights": {"ctr": w, "ctcvr": 1 - w},
                 "val": {"ctr_auc": a, "cvr_auc": b, "mean_auc": (a + b) / 2},
                 "test": {"ctr_auc": a - 0.01, "cvr_auc": b - 0.01}}
                for w, (a, b) in zip(WEIGHTS, CURVES[number])], OBJ)
    store.refresh_front(study)
    store.dispose()
    return url


def brute_front() -> set[tuple[int, int | None]]:
    pts = [(n, None, a, b) for n, (a, b) in PLAIN.items()]
    pts += [(n, i, a, b) for n, c in CURVES.items() for i, (a, b) in enumerate(c)]
    return {(n, i) for n, i, a, b in pts
            if not any(x >= a and y >= b and (x > a or y > b) for _, _, x, y in pts)}


def test_front_over_points_and_a_curve_per_conditioned_trial(tmp_path: Path) -> None:
    url = make_study(tmp_path / "c.db")
    snap = load_snapshot(url, "cond")
    assert set(snap.point_front) == brute_front()
    # trial 0 (0.70, 0.60) is dominated by trial 2's point (0.705, 0.62); trial 3's curve
    # everywhere; trial 1 (0.66, 0.655) is not (trial 2 ends at (0.60, 0.66))
    assert {n for n, _ in snap.point_front} == {1, 2}
    fig = pareto_figure(snap)
    traces = {t.name: t for t in fig.data}
    for number, curve in CURVES.items():
        tr = traces[f"trial {number} (conditioned)"]
        assert list(tr.x) == [a for a, _ in curve] and list(tr.y) == [b for _, b in curve]
        assert [list(c) for c in tr.customdata] == [[number, i] for i in range(5)]
        assert "task weights</b>: ctr=0.75, ctcvr=0.25" in tr.hovertext[1]
    front = traces["Pareto front (points)"]
    assert {(c[0], c[1]) for c in front.customdata} == brute_front()
    assert [c[0] for c in traces["dominated"].customdata] == [0]
    html_text = build_report_html(snap)
    assert f"Pareto front over points ({len(brute_front())} points" in html_text
    assert "ctr=0.25 ctcvr=0.75" in html_text


def test_dashboard_detail_of_a_curve_point(tmp_path: Path) -> None:
    url = make_study(tmp_path / "c.db")
    snap = load_snapshot(url, "cond")
    d = trial_json(snap, 2, point=3)
    assert d["weights"] == {"ctr": 0.25, "ctcvr": 0.75}
    assert d["values"] == {"ctr_auc": 0.69, "cvr_auc": 0.64} and d["on_front"]
    assert "--trial 2 --weights ctr=0.25,ctcvr=0.75 --format yaml" in d["export"]
    assert "weights" not in trial_json(snap, 0)
    from automtl.report.dashboard import summary_json

    points = summary_json(snap)["point_front"]
    assert {(p["trial"], None if p["weights"] is None else p["weights"]["ctr"])
            for p in points} == {(n, None if i is None else WEIGHTS[i]) for n, i in brute_front()}


CHROMIUM = "/usr/bin/chromium"
# --enable-unsafe-swiftshader: newer Chromium no longer falls back to software WebGL on its own;
# the 3-D figure needs WebGL (Debian's chromium 156 renders it with or without the flag)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--enable-unsafe-swiftshader"]


@pytest.fixture()
def page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        pytest.fail("chromium missing: run scripts/system_deps.sh (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        ctx = b.new_context(viewport={"width": 1500, "height": 1000})
        pg = ctx.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg
        ctx.close()
        b.close()
        assert not errors, f"JavaScript errors: {errors}"


# whether the element at (x, y) belongs to the figure div: the figure is shown there
ON_TOP = """([id, x, y]) => {
  const hit = document.elementFromPoint(x, y);
  return hit !== null && document.getElementById(id).contains(hit);
}"""
# figures whose div is shorter than the plot (its card, which clips, would hide the rest; a
# responsive plot in a div without a height collapsed to 0 px and the user saw nothing)
CLIPPED = """() => Array.from(document.querySelectorAll('#figures .js-plotly-plot'))
  .filter(d => d.getBoundingClientRect().height < d._fullLayout.height - 1).map(d => d.id)"""


def test_browser_click_on_a_curve_point_shows_weights_and_export(tmp_path: Path, page) -> None:
    from report_study import serve_in_thread
    from test_dashboard_browser import WAIT_MS, _hover

    url = make_study(tmp_path / "c.db")
    with serve_in_thread(create_app(url, "cond", refresh_s=0.5)) as base:
        page.goto(base)
        page.wait_for_selector("body[data-version]", timeout=WAIT_MS)
        assert page.evaluate(CLIPPED) == []
        names = page.evaluate("document.getElementById('fig-pareto').data.map(t => t.name)")
        idx = names.index("trial 3 (conditioned)")
        point = page.locator("#fig-pareto .scatterlayer .trace").nth(idx).locator(
            ".points path").nth(1)
        x, y = _hover(page, point)
        # the point is drawn on top where it is clicked (not clipped away by its card)
        assert page.evaluate(ON_TOP, ["fig-pareto", x, y]), "the Pareto point is not visible"
        page.mouse.click(x, y)
        page.wait_for_selector("#trial-card[data-trial='3']", timeout=WAIT_MS)
        page.wait_for_function("document.getElementById('trial-title').textContent"
                               ".includes('task weights')", timeout=WAIT_MS)
        assert "Trial 3 at task weights ctr=0.750, ctcvr=0.250" in page.inner_text("#trial-title")
        assert page.inner_text("#trial-export").strip() == (
            f"automtl export --storage {url} --study cond --trial 3 --weights "
            "ctr=0.75,ctcvr=0.25 --format yaml -o trial_3.yaml")


# 3 tasks (issue 16: a 3-D figure over sweep points): one conditioned trial swept over the
# lattice n = 2 (6 vectors), two ordinary trials
OBJ3 = ["ctr_auc", "cvr_auc", "purchase_auc"]
LATTICE = [(1.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 1.0, 0.0), (0.0, 0.5, 0.5),
           (0.0, 0.0, 1.0)]
SURFACE = [(0.72, 0.55, 0.50), (0.70, 0.60, 0.52), (0.70, 0.56, 0.58), (0.62, 0.66, 0.53),
           (0.63, 0.62, 0.60), (0.60, 0.55, 0.64)]
PLAIN3 = {0: (0.71, 0.61, 0.55), 1: (0.65, 0.57, 0.55)}  # 0 on the front, 1 dominated


def make_study3(db: Path) -> str:
    url = f"sqlite:///{db}"
    study = optuna.create_study(study_name="cond3", storage=url, directions=["maximize"] * 3)
    study.set_user_attr("objectives", OBJ3)
    store = Store(url)
    for number in range(3):
        scheme = "conditioned" if number == 2 else "fixed"
        cfg = TrialConfig(model=ModelConfig(arch="mmoe"),
                          loss=LossConfig(weighting=WeightingConfig(scheme=scheme)))
        values = PLAIN3.get(number) or SURFACE[4]
        attrs = {"config": to_dict(cfg), "arch": "mmoe", "test_metrics": {}}
        study.add_trial(optuna.trial.create_trial(values=list(values), params={},
                                                  distributions={}, user_attrs=attrs))
    store.record_sweep("cond3", 2, [
        {"weights": dict(zip(("ctr", "cvr", "purchase"), w)),
         "val": dict(zip(OBJ3, v)), "test": dict(zip(OBJ3, v))}
        for w, v in zip(LATTICE, SURFACE)], OBJ3)
    store.refresh_front(study)
    store.dispose()
    return url


def test_three_objectives_draw_the_sweep_points_in_3d(tmp_path: Path) -> None:
    from automtl.report.points3d import lattice_triangles

    url = make_study3(tmp_path / "c3.db")
    snap = load_snapshot(url, "cond3")
    pts = [(n, None, *v) for n, v in PLAIN3.items()] + [
        (2, i, *v) for i, v in enumerate(SURFACE)]
    brute = {(n, i) for n, i, *v in pts
             if not any(all(a >= b for a, b in zip(q, v)) and q != v for _, _, *q in pts)}
    assert set(snap.point_front) == brute and (0, None) in brute and (1, None) not in brute
    fig = pareto_figure(snap)
    traces = {t.name: t for t in fig.data}
    cloud = traces["trial 2 (conditioned)"]
    assert cloud.type == "scatter3d"
    assert [(a, b, c) for a, b, c in zip(cloud.x, cloud.y, cloud.z)] == SURFACE
    assert [list(c) for c in cloud.customdata] == [[2, i] for i in range(6)]
    assert "task weights</b>: ctr=0.5, cvr=0, purchase=0.5" in cloud.hovertext[2]
    # the surface joins lattice neighbours: n = 2 gives 4 triangles over the 6 points
    mesh = traces["trial 2 surface"]
    tris = sorted(tuple(sorted(t)) for t in zip(mesh.i, mesh.j, mesh.k))
    assert tris == sorted(tuple(sorted(t)) for t in lattice_triangles(
        [dict(zip("abc", w)) for w in LATTICE])) and len(tris) == 4
    assert all(LATTICE[a] != LATTICE[b] for a, b, _ in tris)
    front = traces["Pareto front (points)"]
    assert {(c[0], c[1]) for c in front.customdata} == brute
    assert [c[0] for c in traces["dominated"].customdata] == [1]
    html_text = build_report_html(snap)
    assert f"Pareto front over points ({len(brute)} points" in html_text
    assert "ctr=0.5 cvr=0 purchase=0.5" in html_text
    d = trial_json(snap, 2, point=4)
    assert d["weights"] == {"ctr": 0.0, "cvr": 0.5, "purchase": 0.5}
    assert "--trial 2 --weights ctr=0,cvr=0.5,purchase=0.5" in d["export"]


def test_lattice_triangles_only_for_a_3_task_lattice() -> None:
    from automtl.losses import simplex_grid
    from automtl.report.points3d import lattice_triangles

    grid = [dict(zip("abc", v)) for v in simplex_grid(3)]  # default: n = 4, 15 points
    tris = lattice_triangles(grid)
    assert len(grid) == 15 and len(tris) == 16  # n^2 triangles
    assert lattice_triangles([dict(zip("ab", v)) for v in simplex_grid(2)]) == []
    assert lattice_triangles([{"a": 0.3, "b": 0.3, "c": 0.4}] * 3) == []


# Screen position of point `index` of a scatter3d trace, as plotly's gl3d draws it: the data
# scaled by the scene's dataScale, then the camera's model, view and projection matrices
# (column-major 4x4), then the canvas box.
PROJECT_3D = """([trace, index]) => {
  const gd = document.getElementById('fig-pareto');
  const scene = gd._fullLayout.scene._scene, tr = gd.data.find(d => d.name === trace);
  const cam = scene.glplot.cameraParams, ds = scene.dataScale;
  const mul = (m, a) => [0, 1, 2, 3].map(
    r => m[r] * a[0] + m[4 + r] * a[1] + m[8 + r] * a[2] + m[12 + r] * a[3]);
  const v = [tr.x[index] * ds[0], tr.y[index] * ds[1], tr.z[index] * ds[2], 1];
  const c = mul(cam.projection, mul(cam.view, mul(cam.model, v)));
  const box = scene.glplot.canvas.getBoundingClientRect();
  return [box.left + (c[0] / c[3] + 1) / 2 * box.width,
          box.top + (1 - c[1] / c[3]) / 2 * box.height];
}"""


def test_browser_click_on_a_3d_sweep_point_shows_weights_and_export(tmp_path: Path,
                                                                    page) -> None:
    """The 3-objective figure is WebGL (scatter3d): plotly picks the point under the mouse from
    a pick buffer on its next frame and emits plotly_click from there while the button is down,
    so the test hovers the projected point until plotly reports it, then presses the button."""
    from report_study import serve_in_thread
    from test_dashboard_browser import WAIT_MS

    url = make_study3(tmp_path / "c3.db")
    with serve_in_thread(create_app(url, "cond3", refresh_s=0.5)) as base:
        page.goto(base)
        page.wait_for_selector("body[data-version]", timeout=WAIT_MS)
        assert page.evaluate("!!document.createElement('canvas').getContext('webgl')"), (
            "no WebGL in this Chromium: the 3-D figure cannot be drawn (flags: ARGS)")
        assert page.evaluate(CLIPPED) == []
        assert "scatter3d" in page.evaluate(
            "document.getElementById('fig-pareto').data.map(t => t.type)")
        page.evaluate("""() => { window.hovered = null; document.getElementById('fig-pareto')
            .on('plotly_hover', ev => { window.hovered = ev.points[0].customdata; }); }""")
        index = 4  # lattice vector (0, 1/2, 1/2)
        for _ in range(WAIT_MS // 2000):
            x, y = page.evaluate(PROJECT_3D, ["trial 2 (conditioned)", index])
            page.mouse.move(x - 30, y - 30)
            page.mouse.move(x, y, steps=3)
            try:  # plotly reports the point under the mouse (and not a neighbour on the way)
                page.wait_for_function("JSON.stringify(window.hovered) === "
                                       f"'{json.dumps([2, index], separators=(',', ':'))}'",
                                       timeout=2000)
                break
            except PlaywrightTimeout:
                continue
        assert page.evaluate("window.hovered") == [2, index]
        assert page.evaluate(ON_TOP, ["fig-pareto", x, y]), "the 3-D figure is not visible"
        page.mouse.down()
        try:
            page.wait_for_selector("#trial-card[data-trial='2']", timeout=WAIT_MS)
        finally:
            page.mouse.up()
        page.wait_for_function("document.getElementById('trial-title').textContent"
                               ".includes('task weights')", timeout=WAIT_MS)
        assert page.inner_text("#trial-title").startswith(
            "Trial 2 at task weights ctr=0.00, cvr=0.500, purchase=0.500")
        assert page.inner_text("#trial-export").strip() == (
            f"automtl export --storage {url} --study cond3 --trial 2 --weights "
            "ctr=0,cvr=0.5,purchase=0.5 --format yaml -o trial_2.yaml")
