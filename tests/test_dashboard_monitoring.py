"""The Monitoring dashboard page and the Voila drift report in a browser: served for real (as `mlw dashboards` and
`mlw dashboards --voila drift` serve them) on a workspace whose monitors ran with the real library
(`monitoring_world.write_monitoring`): `credit_watch` on the demo credit-default model (binary, late labels, two
healthy hours then a drifted one, a retraining linked to its runs) and `delivery_watch` on a regression model (text
categories, nulls; a healthy hour then a drifted one, no labels). Also an empty workspace, a monitor that never ran,
and a bad `?monitor=`. Charts are read as the browser holds them (Bokeh models). Waits are Playwright waits, never
timed assertions.
"""
import re
from types import SimpleNamespace

import pytest

from conftest import free_port
from monitoring_world import write_monitoring
from test_dashboards import FIGURES_JS, _fit_viewport, _stop, dashboards_and_report, serve_workspace

LOAD = 60_000  # ms: a Panel page or a Voila kernel starts in seconds, but 2 shared cores are slow
VOILA = 120_000  # the drift report also reads both windows and runs Evidently


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    "A workspace with both monitored models, the dashboards and the Voila drift report on it."
    from mlops_workbench.core.workspace import Workspace
    d = tmp_path_factory.mktemp("monitoring")
    ws = Workspace.init(d / "ws")
    try:
        w = write_monitoring(ws)
        assert [r.status for r in w.credit.runs] == ["ok", "ok", "breached"] and [r.status for r in w.delivery.runs] == ["ok", "breached"]
        with dashboards_and_report(ws, "drift", d) as (url, voila):
            yield SimpleNamespace(ws=ws, w=w, url=url, voila=voila)
    finally:
        ws.close()




def _charts(page, n: int, runs: int):
    "The page's Bokeh charts by title (glyphs drawn, y categories), once there are `n` and the heatmap shows `runs` runs."
    from mlops_workbench.ui.monitoring import DRIFT_TITLE
    page.wait_for_function(f"""() => {{ const f = ({FIGURES_JS})(); const h = f.find(m => m.title.text == "{DRIFT_TITLE}");
        return f.length == {n} && h && h.x_range.factors.length == {runs}; }}""", timeout=LOAD)
    return {c["title"]: c for c in page.evaluate(f"""() => ({FIGURES_JS})().map(m => ({{title: m.title.text,
        glyphs: m.renderers.map(r => r.glyph.type), x: m.x_range.factors || null, y: m.y_range.factors || null}}))""")}


def _tile(page, label):
    return page.locator(f'[data-tile="{label}"]')


def _table(page, field):
    "The Tabulator table that has a column `field`."
    return page.locator(".tabulator").filter(has=page.locator(f'[tabulator-field="{field}"]'))


def _expect_tiles(page, values: dict):
    from playwright.sync_api import expect
    for label, value in values.items():
        expect(_tile(page, label).locator(".mlw-tile-value")).to_have_text(value, timeout=LOAD)


def test_monitoring_page_binary_model(monitored, page, shot):
    from playwright.sync_api import expect
    from mlops_workbench.ui.monitoring import DRIFT_TITLE, HISTOGRAM_TITLE, PERFORMANCE_TITLE, SHARE_TITLE
    c = monitored.w.credit
    drifted = sorted(c.runs[-1].report["data_drift"]["drifted_columns"])
    assert drifted == ["amount", "amount_to_spend_7d", "interest_rate"]
    page.goto(f"{monitored.url}/monitoring?monitor=credit_watch")
    _expect_tiles(page, {"Last run": "breached", "Drift share": "27.3%", "Drifted features": "3 of 11", "Open alerts": "2", "Last retraining": "succeeded"})
    expect(_tile(page, "Drift share").locator(".mlw-tile-detail")).to_have_text(f"bound 25%; run {c.runs[-1].id}")
    expect(_tile(page, "Last run").locator(".mlw-tile-detail")).to_contain_text("data_drift, prediction_drift breached")
    expect(_tile(page, "Open alerts").locator(".mlw-tile-detail")).to_have_text("2 warning")
    # the latest run's features: the three drifted first, the rest stable
    rows = _table(page, "verdict").locator(".tabulator-row")
    expect(rows).to_have_count(11)
    expect(rows.locator('[tabulator-field="verdict"]')).to_have_text(["drifted"] * 3 + ["stable"] * 8)
    assert sorted(rows.locator('[tabulator-field="feature"]').all_inner_texts()[:3]) == drifted
    expect(rows.nth(0).locator('[tabulator-field="method"]')).to_have_text("K-S p_value")
    # the charts: heatmap (a column per run, the most drifted feature on top), share with its bound, histogram, performance
    charts = _charts(page, 4, 3)
    assert set(charts) == {DRIFT_TITLE, SHARE_TITLE, HISTOGRAM_TITLE, PERFORMANCE_TITLE}, charts
    assert charts[DRIFT_TITLE]["glyphs"] == ["Rect", "Text"] and len(charts[DRIFT_TITLE]["x"]) == 3, charts
    assert charts[DRIFT_TITLE]["y"][-1] in drifted and len(charts[DRIFT_TITLE]["y"]) == 11, charts  # categorical axes list bottom to top
    assert charts[SHARE_TITLE]["glyphs"] == ["Line", "Scatter", "Line"], charts
    assert charts[HISTOGRAM_TITLE]["glyphs"] == ["Quad", "Quad"], charts
    assert charts[PERFORMANCE_TITLE]["glyphs"] == ["Line", "Scatter", "Line", "Scatter", "Line"], charts  # roc_auc realised, estimated, its min bound
    # the model's open alerts and its retraining, linked to what it made
    alerts = _table(page, "severity").locator(".tabulator-row")
    expect(alerts).to_have_count(2)
    expect(alerts.locator('[tabulator-field="kind"]')).to_have_text(["prediction drift", "data drift"])
    ret = _table(page, "pipeline run")
    expect(ret.locator(".tabulator-row")).to_have_count(1)
    expect(ret.get_by_role("link", name="20260301-1100-train")).to_have_attribute("href", "pipelines?run=20260301-1100-train")
    expect(ret.get_by_role("link", name=str(c.deployment.id), exact=True)).to_have_attribute("href", f"deployments?deployment={c.deployment.id}")
    expect(ret.get_by_role("link", name="v1")).to_have_attribute("href", "model-quality?model=credit_default&version=1")
    expect(ret.get_by_role("link", name=c.run_id[:8])).to_have_attribute("href", f"http://127.0.0.1:5000/#/runs/{c.run_id}")
    expect(_table(page, "breached").locator(".tabulator-row")).to_have_count(3)  # the runs, newest first
    expect(_table(page, "breached").locator('.tabulator-row [tabulator-field="status"]')).to_have_text(["breached", "ok", "ok"])
    _fit_viewport(page)
    page.locator("canvas").nth(3).wait_for()
    shot(page, "dashboards-monitoring-credit")
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_monitoring_page_regression_model(monitored, page, shot):
    "The second shape: a regression model with text categories and nulls, no labels (so no performance to plot), never retrained; then picked from the list."
    from playwright.sync_api import expect
    from mlops_workbench.ui.monitoring import DRIFT_TITLE, HISTOGRAM_TITLE, SHARE_TITLE
    page.goto(f"{monitored.url}/monitoring?monitor=delivery_watch")
    _expect_tiles(page, {"Last run": "breached", "Drift share": "66.7%", "Drifted features": "2 of 3", "Open alerts": "2", "Last retraining": "none"})
    expect(_tile(page, "Drifted features").locator(".mlw-tile-detail")).to_have_text("distance_km, zone")
    rows = _table(page, "verdict").locator(".tabulator-row")
    expect(rows.locator('[tabulator-field="feature"]')).to_have_text(["zone", "distance_km", "items"])
    expect(rows.locator('[tabulator-field="verdict"]')).to_have_text(["drifted", "drifted", "stable"])
    expect(rows.nth(0).locator('[tabulator-field="note"]')).to_have_text("new levels in current: harbour")
    charts = _charts(page, 3, 2)
    assert set(charts) == {DRIFT_TITLE, SHARE_TITLE, HISTOGRAM_TITLE}, charts
    page.get_by_text("No performance figures to plot. realised: no labels source in the monitor").wait_for()
    page.get_by_text("delivery_time was not retrained yet.").wait_for()
    _fit_viewport(page)
    page.locator("canvas").nth(2).wait_for()
    shot(page, "dashboards-monitoring-delivery")
    # picking the other monitor in the list shows it
    page.locator("select").select_option(label="credit_watch (credit_default)")
    _expect_tiles(page, {"Drifted features": "3 of 11", "Last retraining": "succeeded"})
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_monitoring_page_bad_monitor(monitored, page):
    page.goto(f"{monitored.url}/monitoring?monitor=nope")
    page.get_by_text("monitor 'nope' not found; defined: credit_watch, delivery_watch (define one with define_monitor or mlw monitor define FILE.yaml)").wait_for(timeout=LOAD)
    page.get_by_role("heading", name="All monitors").wait_for()  # the rest of the page stays, listing what exists
    from playwright.sync_api import expect
    expect(_table(page, "drifted features").locator('.tabulator-row [tabulator-field="monitor"]')).to_have_text(["credit_watch", "delivery_watch"])
    expect(page.locator("[data-tile]")).to_have_count(0)
    assert "Traceback" not in page.content()


def test_voila_drift_report(monitored, page, shot):
    from playwright.sync_api import expect
    c, dl = monitored.w.credit, monitored.w.delivery
    page.goto(f"{monitored.voila}/?run={c.runs[-1].id}", timeout=VOILA)
    page.get_by_role("heading", name=f"Monitor run {c.runs[-1].id}: credit_watch on credit_default v1").wait_for(timeout=VOILA)
    page.get_by_text("3 of 11 features drifted", exact=True).wait_for()
    for title in ("Verdicts", "Features", "Predictions", "Evidently's report (a sample of each window)"):
        page.get_by_role("heading", name=title, exact=True).wait_for()
    page.get_by_role("img", name="drift score by feature").wait_for()
    page.get_by_role("img", name="prediction distribution").wait_for()
    # Evidently's own report, in its frame, computed on the same windows
    ev = page.frame_locator("iframe[title='Evidently data drift report']")
    ev.get_by_text("Dataset Drift", exact=True).wait_for(timeout=VOILA)
    ev.get_by_text("Drift is detected for 27.273% of columns (3 out of 11).").wait_for()
    page.get_by_role("link", name=f"{dl.runs[-1].id}: delivery_watch at 2026-03-01 11:00:00 (breached)").wait_for()
    assert "Traceback" not in page.inner_text("body")
    _fit_viewport(page)
    shot(page, "voila-drift-credit")
    # the regression model's drifted run, by its link's href (JupyterLab's renderer opens links in a new tab)
    href = page.get_by_role("link", name=f"{dl.runs[-1].id}: delivery_watch at 2026-03-01 11:00:00 (breached)").get_attribute("href")
    assert href == f"?run={dl.runs[-1].id}", href
    page.goto(f"{monitored.voila}/{href}", timeout=VOILA)
    page.get_by_text("2 of 3 features drifted", exact=True).wait_for(timeout=VOILA)
    page.get_by_role("cell", name="new levels in current: harbour").wait_for()
    page.frame_locator("iframe[title='Evidently data drift report']").get_by_text("Dataset Drift", exact=True).wait_for(timeout=VOILA)
    _fit_viewport(page)
    shot(page, "voila-drift-delivery")
    page.goto(f"{monitored.voila}/?run=999", timeout=VOILA)
    page.get_by_role("alert").filter(has_text="monitor run 999 not found").wait_for(timeout=VOILA)
    assert "Traceback" not in page.inner_text("body")
    assert page.offsite == []


def test_monitoring_page_on_an_empty_workspace(tmp_path, browser, shot):
    "No monitor: the page says how to define one; a monitor defined but never run: how to run it."
    from playwright.sync_api import expect
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.monitoring.monitors import Monitor, define_monitor
    ws = Workspace.init(tmp_path / "ws")
    port = free_port()
    proc = serve_workspace(ws.root, port, tmp_path / "panel.log")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/monitoring")
        page.get_by_text(re.compile(r"^No monitors yet in workspace .*Define one with mlw monitor define FILE.yaml .*then run it with mlw run monitor -p monitor NAME")).wait_for(timeout=LOAD)
        expect(page.locator("[data-tile]")).to_have_count(0)
        assert page.locator(".tabulator:visible").count() == 0
        expect(page.get_by_role("heading", name="All monitors")).to_be_hidden()
        shot(page, "dashboards-monitoring-empty")
        define_monitor(ws, Monitor("churn_watch", "churn", window="1d", schedule="1d"), who="alice")
        page.get_by_role("button", name="Refresh").click()
        page.get_by_text("Monitor churn_watch has not run yet. Run it with mlw run monitor -p monitor churn_watch").wait_for(timeout=LOAD)
        _expect_tiles(page, {"Last run": "never", "Drift share": "–", "Open alerts": "0", "Last retraining": "none"})
        shot(page, "dashboards-monitoring-never-ran")
        assert "Traceback" not in page.content()
    finally:
        ctx.close()
        _stop(proc)
        ws.close()
