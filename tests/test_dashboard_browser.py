"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright).

A real uvicorn server on a free port serves a real SQLite study with known trials; the page
must show the Pareto points, show a trial's YAML on click, sort the table, pick up new trials
while open, and render `<script>` in a study name / param value as text.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from report_study import (
    EVIL,
    EVIL_VALUE,
    FRONT,
    N_COMPLETE,
    TRIALS,
    make_study,
    serve_in_thread,
)

from automtl.report.dashboard import create_app
from automtl.search.store import Store

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 30000  # generous: CI machines are shared; waits end as soon as the page is ready
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        pytest.fail("chromium missing: run scripts/system_deps.sh (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # offline: any request that leaves 127.0.0.1 fails the test
    outside: list[str] = []
    pg.route("**/*", lambda route: (route.continue_() if route.request.url.startswith(
        "http://127.0.0.1") else (outside.append(route.request.url), route.abort())))
    yield pg
    ctx.close()
    assert not outside, f"page fetched outside resources: {outside}"
    assert not errors, f"JavaScript errors: {errors}"


def _loaded(page: Page) -> None:
    page.wait_for_selector("body[data-version]", timeout=WAIT_MS)


def _hover(page: Page, point) -> tuple[float, float]:
    """Hover a plotly point with the mouse until its hover label shows; return the position.

    plotly clicks the hovered point, so the label must be up before clicking. A live refresh
    that redraws the plot between the mouse move and the label drops the hover (plotly needs a
    new mousemove), so the move is repeated until the label appears.
    """
    for _ in range(WAIT_MS // 2000):
        point.scroll_into_view_if_needed()
        box = point.bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x - 40, y - 40)
        page.mouse.move(x, y, steps=4)
        try:
            page.wait_for_selector("#fig-pareto .hoverlayer .hovertext", timeout=2000)
            return x, y
        except PlaywrightTimeout:
            continue
    raise AssertionError("plotly never showed the hover label of the Pareto point")


def _pareto_traces(page: Page) -> dict[str, list[int]]:
    return page.evaluate("""() => Object.fromEntries(
        document.getElementById('fig-pareto').data
            .map(t => [t.name, t.customdata.map(c => c[0])]))""")


def test_pareto_click_row_click_sort_and_live_refresh(tmp_path: Path, page: Page) -> None:
    url, study = make_study(tmp_path / "s.db", running=True)
    with serve_in_thread(create_app(url, "known", refresh_s=0.5)) as base:
        page.goto(base)
        _loaded(page)
        assert page.title() == "automtl dashboard: known"
        traces = _pareto_traces(page)
        assert set(traces["Pareto front"]) == FRONT[2]
        assert len(traces["dominated"]) == N_COMPLETE - len(FRONT[2])
        # the SVG really shows all completed trials as points
        assert page.locator("#fig-pareto .scatterlayer .trace .points path").count() == N_COMPLETE
        assert "search running" in page.inner_text("#status")

        # click the Pareto point of trial 1 with the mouse (plotly's own click handling)
        idx = traces["Pareto front"].index(1)
        point = page.locator("#fig-pareto .scatterlayer .trace").nth(1).locator(
            ".points path").nth(idx)
        x, y = _hover(page, point)
        page.mouse.click(x, y)
        page.wait_for_selector("#trial-card[data-trial='1']", timeout=WAIT_MS)
        yaml_text = page.inner_text("#trial-yaml")
        assert "arch: ple" in yaml_text and "n_experts: 8" in yaml_text and "lr: 0.003" in yaml_text
        assert page.inner_text("#trial-export").strip() == (
            f"automtl export --storage {url} --study known --trial 1 --format yaml "
            "-o trial_1.yaml")
        assert "on the Pareto front" in page.inner_text("#trial-title")

        # click a table row: the pruned trial 5
        page.click("#trials tbody tr[data-trial='5']")
        page.wait_for_selector("#trial-card[data-trial='5']", timeout=WAIT_MS)
        assert "n_experts: 2" in page.inner_text("#trial-yaml")
        assert "pruned" in page.inner_text("#trial-title")

        # sort by ctr_auc: ascending puts trial 3 (0.65) first, descending trial 1 (0.72)
        header = page.locator("#trials thead th", has_text="ctr_auc")
        header.click()
        assert page.locator("#trials tbody tr").first.get_attribute("data-trial") == "3"
        header.click()
        assert page.locator("#trials tbody tr").first.get_attribute("data-trial") == "1"
        assert page.locator("#trials tbody tr").count() == 9

        # a search adds a trial that beats everything: the open page picks it up by itself
        writer = optuna.load_study(study_name="known", storage=url)
        trial = writer.ask()
        trial.suggest_categorical("arch", ["mmoe", "ple", "shared_bottom"])
        writer.tell(trial, [0.9, 0.9])
        store = Store(url)
        store.refresh_front(writer)  # as `automtl search` does after every trial
        store.dispose()
        page.wait_for_function("document.querySelectorAll('#trials tbody tr').length === 10",
                               timeout=WAIT_MS)
        page.wait_for_function("""() => document.getElementById('fig-pareto').data
            .some(t => t.name === 'Pareto front' && t.customdata.some(c => c[0] === 9))""",
                               timeout=WAIT_MS)


def test_script_in_names_renders_as_text(tmp_path: Path, page: Page) -> None:
    url, _ = make_study(tmp_path / "evil.db", name=EVIL, evil=True)
    with serve_in_thread(create_app(url, EVIL, refresh_s=0.5)) as base:
        page.goto(base)
        _loaded(page)
        assert page.title() == f"automtl dashboard: {EVIL}"
        assert page.inner_text("#study-name") == EVIL
        assert page.evaluate("window.__xss") is None  # neither payload ran
        assert page.locator("#trials td", has_text=EVIL_VALUE).count() == len(TRIALS)
        assert page.locator("img").count() == 0
        # the figure title shows the name as text too
        assert EVIL in (page.text_content("#fig-pareto .gtitle") or "")
        page.click("#trials tbody tr[data-trial='0']")
        page.wait_for_selector("#trial-card[data-trial='0']", timeout=WAIT_MS)
        assert "automtl export --storage" in page.inner_text("#trial-export")
        assert "'<script>window.__xss = 1</script>'" in page.inner_text("#trial-export")
        assert page.evaluate("window.__xss") is None
