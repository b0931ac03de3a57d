"""The Serving dashboard page in a browser: served for real (as `mlw dashboards` serves it) on a workspace holding a
registered model with two versions, a running gateway's registration file, and an hour of predictions written through
the real `InferenceLog` on two endpoints, two versions, with some refused requests.

The figures the page shows (request counts, latency percentiles, error counts) are checked against numpy on what was
sent. The gateway process here is a stand-in (a sleeping Python process that owns the registration file), because the
figures are about the log; `mlw serve` writes the same file. Waits are Playwright waits, never timed assertions.
"""
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import free_port
from test_dashboards import FIGURES_JS, _fit_viewport, _stop, serve_workspace

LOAD = 60_000  # ms: a Panel page renders in seconds, but 2 shared cores are slow


def write_serving_data(ws, gateway_pid: int, port: int = 8765, seed: int = 7):
    """What serving leaves behind, made with the real library: `credit_default` trained twice and registered (v2 holds
    `candidate`, v1 is promoted to `production`); the registration file of a gateway (`gateway_pid`) serving
    `credit` (candidate) and `credit-prod` (production) on `port`; and the last 50 minutes of its predictions in the
    inference log: `credit-prod` by v1, `credit` by v1 until 25 minutes ago and by v2 since, some batches of 2-3 rows,
    about one request in twenty refused (422 or 503, null prediction). Returns what was sent, one tuple per request."""
    from mlops_workbench.data.synthetic import generate_lending
    from mlops_workbench.experiments.definition import Experiment, FloatParam, TimeSplit
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import validate_model
    from mlops_workbench.registry.versions import promote, register_model
    from mlops_workbench.serving.inference_log import InferenceLog
    from mlops_workbench.training.fit import train
    world = generate_lending(1_200, seed=11)
    loans = world.applications.join(world.labels.select("application_id", "defaulted"), on="application_id")
    exp = Experiment("credit_default", target="defaulted", exclude=["application_id", "customer_id"], split=TimeSplit("event_timestamp", valid_size=0.25),
                     search_space={"learning_rate": FloatParam(0.02, 0.3, log=True)}, params={"num_threads": 1, "num_leaves": 8}, num_boost_round=40)
    for lr in (0.1, 0.05):
        fit = train(ws, exp, {"learning_rate": lr}, data=loans)
        register_model(ws, fit.run_id, "credit_default", validate_model(ws, fit.run_id, default_gates("binary")), owner="alice", who="alice")
    promote(ws, "credit_default", 1, "production", who="alice", reason="first release")

    ws.path("serving").mkdir(exist_ok=True)
    ws.path("serving", f"gateway-{gateway_pid}.json").write_text(json.dumps({
        "pid": gateway_pid, "port": port, "started_at": (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)).isoformat(),
        "endpoints": {"credit": "credit_default@candidate", "credit-prod": "credit_default@production"}}))

    now, rng, sent = dt.datetime.now(dt.timezone.utc), np.random.default_rng(seed), []
    def traffic(endpoint, version, n, start_min, end_min, caller):
        for i in range(n):
            at = now - dt.timedelta(minutes=float(rng.uniform(end_min, start_min)))
            status = int(rng.choice([200] * 19 + [422]) if rng.random() > 0.01 else 503)
            sent.append(SimpleNamespace(id=f"{endpoint}-{version}-{i}", endpoint=endpoint, version=version, at=at, rows=int(rng.choice([1, 1, 1, 2, 3])),
                                        latency_us=int(rng.lognormal(np.log(450 if status == 200 else 120), 0.5)), status=status, caller=caller))
    traffic("credit-prod", 1, 500, 50, 0.5, "loan-app")
    traffic("credit", 1, 120, 50, 25, "risk-batch")
    traffic("credit", 2, 200, 25, 0.5, "risk-batch")
    with InferenceLog(ws, flush_interval_s=0.2) as log:
        for s in sent:
            for r in range(s.rows):
                p = None if s.status >= 400 else float(rng.random())
                log.log({"request_id": s.id, "row": r, "at": s.at, "model": "credit_default", "version": s.version, "endpoint": s.endpoint,
                         "caller": s.caller, "inputs": {"amount": 1000 + r}, "features": None,
                         "output": {"probability": p} if p is not None else {"error": "invalid input"}, "prediction": p,
                         "label": None if p is None else str(int(p > 0.5)), "latency_us": s.latency_us, "status": s.status})
    return sent


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    "A workspace with served models and logged predictions (`write_serving_data`), its stand-in gateway process, and the dashboards on it."
    from mlops_workbench.core.workspace import Workspace
    d = tmp_path_factory.mktemp("serving")
    gateway = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    ws = Workspace.init(d / "ws")
    try:
        sent = write_serving_data(ws, gateway.pid)
        port = free_port()
        proc = serve_workspace(ws.root, port, d / "panel.log")
        try:
            yield SimpleNamespace(ws=ws, sent=sent, url=f"http://127.0.0.1:{port}", gateway=gateway, dir=d)
        finally:
            _stop(proc)
    finally:
        gateway.kill(); gateway.wait()
        ws.close()


def _ms(v):
    "As the page's tiles write a latency (`ui.serving._ms`)."
    return f"{v:.3g} ms"




def _charts(page):
    """The page's Bokeh charts as the browser holds them, by title: the time axis (`x0`, `x1`: ms since the epoch, UTC),
    the glyphs drawn and how minute ticks are written."""
    page.wait_for_function(f"() => ({FIGURES_JS})().length >= 2", timeout=LOAD)
    return {c["title"]: c for c in page.evaluate(f"""() => ({FIGURES_JS})().map(m => ({{title: m.title.text, x0: m.x_range.start, x1: m.x_range.end,
        glyphs: m.renderers.map(r => r.glyph.type), ticks: m.below.filter(a => a.formatter)[0].formatter.minutes}}))""")}


def _check_charts(page, minutes: float, ticks: str):
    "Both charts: a line and a marker per series, a time axis `minutes` wide, ticks written as `ticks`."
    charts = _charts(page)
    assert set(charts) == {"Requests per minute", "Latency percentiles (ms)"}, charts
    for c in charts.values():
        assert c["glyphs"].count("Line") == c["glyphs"].count("Scatter") >= 1, c
        assert (c["x1"] - c["x0"]) == minutes * 60_000 and c["ticks"] == ticks, c
    return charts


def test_serving_page(serving, page, shot):
    from playwright.sync_api import expect
    sent = serving.sent
    page.goto(f"{serving.url}/serving")
    # the running gateway, each endpoint with the version its alias resolves to now
    gateways = page.locator(".tabulator").filter(has=page.locator('[tabulator-field="ref"]'))
    expect(gateways.locator(".tabulator-row")).to_have_count(2, timeout=LOAD)
    def gw(endpoint): return gateways.locator(".tabulator-row", has=page.locator('[tabulator-field="endpoint"]', has_text=re.compile(f"^{endpoint}$")))
    expect(gw("credit").locator('[tabulator-field="ref"]')).to_have_text("credit_default@candidate")
    expect(gw("credit").locator('[tabulator-field="version"]')).to_have_text("v2")
    expect(gw("credit-prod").locator('[tabulator-field="version"]')).to_have_text("v1")
    expect(gw("credit").locator('[tabulator-field="port"]')).to_have_text("8765")
    expect(gw("credit").locator('[tabulator-field="pid"]')).to_have_text(str(serving.gateway.pid))

    # the last hour's figures, against numpy on what was sent
    lat = np.array([s.latency_us for s in sent])
    def tile(figure): return page.locator(f".mlw-tile[data-figure={figure}] .mlw-tile-value")
    expect(tile("requests")).to_have_text(f"{len(sent):,}")
    page.get_by_text("requests, last hour").wait_for()
    expect(tile("predictions")).to_have_text(f"{sum(s.rows for s in sent):,}")
    errors = sum(s.status >= 400 for s in sent)
    expect(tile("errors")).to_have_text(f"{100 * errors / len(sent):.3g}%")
    page.get_by_text(f"errors ({errors} with status >= 400)").wait_for()
    for p in (50, 95, 99): expect(tile(f"p{p}")).to_have_text(_ms(np.percentile(lat, p) / 1000))
    stats = page.locator(".tabulator").filter(has=page.locator('[tabulator-field="p99 (ms)"]'))
    rows = stats.locator(".tabulator-row")
    expect(rows).to_have_count(3)
    for i, (endpoint, version) in enumerate([("credit", 1), ("credit", 2), ("credit-prod", 1)]):
        mine = [s for s in sent if (s.endpoint, s.version) == (endpoint, version)]
        expect(rows.nth(i).locator('[tabulator-field="endpoint"]')).to_have_text(endpoint)
        expect(rows.nth(i).locator('[tabulator-field="version"]')).to_have_text(str(version))
        expect(rows.nth(i).locator('[tabulator-field="requests"]')).to_have_text(str(len(mine)))
        expect(rows.nth(i).locator('[tabulator-field="errors"]')).to_have_text(str(sum(s.status >= 400 for s in mine)))
        expect(rows.nth(i).locator('[tabulator-field="p99 (ms)"]')).to_have_text(f"{float(f'{np.percentile([s.latency_us for s in mine], 99) / 1000:.3g}'):g}")
    # the charts (Bokeh canvases) and the newest predictions, newest first
    expect(page.locator(".bk-Figure, .bk-Canvas").first).to_be_attached()
    page.locator("canvas").first.wait_for()
    newest = max(sent, key=lambda s: s.at)
    recent = page.locator(".tabulator").filter(has=page.locator('[tabulator-field="caller"]'))
    expect(recent.locator(".tabulator-row").first.locator('[tabulator-field="request"]')).to_have_text(newest.id)
    page.get_by_text("Newest predictions (50 shown; errors in red)").wait_for()
    _fit_viewport(page)
    page.locator("canvas").nth(1).wait_for()
    _check_charts(page, 62, "%H:%M")  # one-minute points 60 minutes from the first to the last, and a minute each side
    shot(page, "dashboards-serving")

    # one endpoint, then the last 15 minutes
    page.locator("select").select_option("credit")
    expect(rows).to_have_count(2, timeout=LOAD)
    expect(page.locator(".mlw-tile[data-figure=requests] .mlw-tile-value")).to_have_text(f"{sum(s.endpoint == 'credit' for s in sent):,}")
    def in_15_min(): return sum(s.endpoint == "credit" and s.at >= dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=15) for s in sent)
    most = in_15_min()
    page.get_by_role("button", name="last 15 min").click()
    expect(rows).to_have_count(1, timeout=LOAD)  # only v2 answered `credit` in the last 25 minutes
    expect(rows.nth(0).locator('[tabulator-field="version"]')).to_have_text("2")
    page.get_by_text("requests, last 15 min").wait_for()
    # the window starts 15 minutes before the click: between the counts just before and just after it
    assert in_15_min() <= int(rows.nth(0).locator('[tabulator-field="requests"]').inner_text()) <= most
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_serving_page_query_and_problems(serving, page):
    from playwright.sync_api import expect
    page.goto(f"{serving.url}/serving?window=24h&endpoint=credit-prod")
    page.get_by_text("requests, last 24 h").wait_for(timeout=LOAD)
    expect(page.locator(".mlw-tile[data-figure=requests] .mlw-tile-value")).to_have_text(f"{sum(s.endpoint == 'credit-prod' for s in serving.sent):,}")
    _check_charts(page, 24 * 60 + 30, "%m-%d %H:%M")  # 15-minute points over 24 h and one bucket each side; more than a day: dated ticks
    page.goto(f"{serving.url}/serving?endpoint=fraud")
    page.get_by_text("No predictions on endpoint fraud in the last hour; endpoints with predictions: credit, credit-prod.").wait_for(timeout=LOAD)
    page.goto(f"{serving.url}/serving?window=year")
    page.get_by_text("query parameter 'window' is 'year'; expected one of 15m, 1h, 24h, all").wait_for(timeout=LOAD)
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_serving_page_on_an_empty_workspace(tmp_path, browser, shot):
    "Nothing served, nothing logged: the page says how to start, with the command to run."
    from mlops_workbench.core.workspace import Workspace
    ws = Workspace.init(tmp_path / "ws")
    ws.close()
    port = free_port()
    proc = serve_workspace(ws.root, port, tmp_path / "panel.log")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/serving?window=all")
        page.get_by_text(re.compile(r"^No gateway is running on workspace .*Start one with mlw serve credit_default@candidate")).wait_for(timeout=LOAD)
        page.get_by_text(re.compile(r"^No predictions logged yet in workspace .*Start a gateway with mlw serve credit_default@candidate")).wait_for()
        shot(page, "dashboards-serving-empty")
        assert "Traceback" not in page.content()
    finally:
        ctx.close()
        _stop(proc)


def test_the_demos_requests_and_deployments_on_the_pages(tmp_path, browser, shot):
    """`mlw demo` serves its candidate and calls it by customer key, then stages it and rolls it out to production by canary
    (replacing the untuned baseline it put there first): the Serving page shows the client's requests, the Deployments
    page the canary's record."""
    import polars as pl
    from playwright.sync_api import expect
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.serving.inference_log import read_inference_log
    demo = tmp_path / "demo"
    p = subprocess.run([str(Path(sys.executable).with_name("mlw")), "demo", "--path", str(demo), "--n_applications", "1000", "--quiet"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = (demo / "reports" / "demo_summary.md").read_text()
    assert "answered 20 authenticated requests by customer key" in summary and "20 predictions in the inference log" in summary, summary
    assert "**Deployment 2**: `credit_default` v2 to `production` by canary, replacing v1: **succeeded**" in summary, summary
    ws = Workspace.open(demo)
    from mlops_workbench.deploy.deployments import get_deployment, get_traffic
    canary = get_deployment(ws, 2)
    assert [s["share"] for s in canary.steps] == [0.1, 0.5, 1.0] and all(s["analysis"]["passed"] for s in canary.steps), canary.steps
    assert canary.checks["integration"]["passed"] and canary.checks["performance"]["passed"]
    serving = get_traffic(ws, "production", "credit_default").describe()
    # the closed loop: the monitor flagged the replayed traffic from after the drift date; its alert started a retraining
    from mlops_workbench.monitoring.monitors import monitor_history
    from mlops_workbench.monitoring.retraining import get_retraining
    from mlops_workbench.pipelines.runner import get_run
    run = monitor_history(ws, "credit_default_production")[0]
    assert run.status == "breached" and "data_drift" in run.breached and run.report["performance"]["labels"]["arrived"] == 300, run.summary()
    assert "amount" in run.report["data_drift"]["drifted_columns"]
    r = get_retraining(ws, 1)
    assert (r.monitor, r.trigger, r.state) == ("credit_default_production", "data_drift", "succeeded") and r.outcome in ("deployed", "candidate", "rejected"), r
    assert get_run(ws, r.pipeline_run_id).status == "succeeded" and r.version == 3 and r.window["dataset"] == "loan_outcomes"
    assert f"Retraining 1, triggered by the data drift alert {r.alert_id}: **{r.outcome}**" in summary, summary
    assert serving == ("v3 100%" if r.outcome == "deployed" else "v2 100%"), (serving, r)  # a winner went out by canary; else v2 stays
    everything = read_inference_log(ws, model="credit_default")
    requests = everything["request_id"].n_unique()
    log = everything.filter(pl.col("caller") == "demo-client")  # the others: staging checks, replayed traffic
    assert log.height == 20 and set(log["status"]) == {200} and requests > 1000
    assert all(json.loads(f)["customer_id"] is not None for f in log["inputs"])  # by key: the client sent ids, the store gave features
    ws.close()
    port = free_port()
    proc = serve_workspace(demo, port, tmp_path / "panel.log")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/serving?window=all")
        # every request of the demo: the client's 20 by key, the staging checks' and the canary's replayed traffic
        expect(page.locator(".mlw-tile[data-figure=requests] .mlw-tile-value")).to_have_text(f"{requests:,}", timeout=LOAD)
        recent = page.locator(".tabulator").filter(has=page.locator('[tabulator-field="caller"]'))
        newest, last = recent.locator(".tabulator-row").first, everything.sort("at").row(-1, named=True)  # the last canary's (or the monitor's) traffic
        expect(newest.locator('[tabulator-field="version"]')).to_have_text(str(last["version"]))
        expect(newest.locator('[tabulator-field="caller"]')).to_have_text(last["caller"])
        charts = _charts(page)
        first = everything["at"].min().replace(second=0, microsecond=0).timestamp() * 1000
        for c in charts.values():
            assert "Scatter" in c["glyphs"] and c["x0"] == first - 60_000 and c["x1"] - c["x0"] >= 2 * 60_000 and c["ticks"] == "%H:%M", c
        _fit_viewport(page)
        shot(page, "dashboards-serving-demo")
        assert "Traceback" not in page.content()
        page.goto(f"http://127.0.0.1:{port}/deployments")
        envs = page.locator(".tabulator").filter(has=page.locator('[tabulator-field="active deployment"]'))
        prod = envs.locator(".tabulator-row").nth(1)
        primary = serving.split()[0]
        for field, text in (("environment", "production"), ("primary", primary), ("candidate", "")):
            expect(prod.locator(f'[tabulator-field="{field}"]')).to_have_text(text, timeout=LOAD)
        hist = page.locator(".tabulator").filter(has=page.locator('[tabulator-field="strategy"]')).locator(".tabulator-row")
        history = ([("canary", "3")] if r.outcome == "deployed" else []) + [("canary", "2"), ("direct", "1")]  # newest first
        expect(hist).to_have_count(len(history))
        for i, (strategy, version) in enumerate(history):
            expect(hist.nth(i).locator('[tabulator-field="strategy"]')).to_have_text(strategy)
            expect(hist.nth(i).locator('[tabulator-field="version"]')).to_have_text(version)
            expect(hist.nth(i).locator('[tabulator-field="state"]')).to_have_text("succeeded")
        hist.nth(len(history) - 2).locator('[tabulator-field="model"]').click()  # the searched model's canary
        page.get_by_role("heading", name="Deployment 2: credit_default v2 to production").wait_for(timeout=LOAD)
        page.get_by_text("17 of 17 cases passed").wait_for()
        _fit_viewport(page)
        shot(page, "dashboards-deployments-demo")
        assert "Traceback" not in page.content()
        # the monitor's run on the replayed traffic and the retraining its alert started
        page.goto(f"http://127.0.0.1:{port}/monitoring?monitor=credit_default_production")
        tile = lambda label: page.locator(f'[data-tile="{label}"] .mlw-tile-value')
        expect(tile("Last run")).to_have_text("breached", timeout=LOAD)
        expect(tile("Drift share")).to_have_text(f"{run.report['data_drift']['share']:.1%}")
        expect(tile("Last retraining")).to_have_text("succeeded")
        page.get_by_role("link", name=r.pipeline_run_id).wait_for()
        _fit_viewport(page)
        shot(page, "dashboards-monitoring-demo")
        assert "Traceback" not in page.content()
    finally:
        ctx.close()
        _stop(proc)
