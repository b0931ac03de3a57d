"""The Deployments dashboard page and the Voila deployment report in a browser: served for real (as `mlw dashboards`
and `mlw dashboards --voila deployment` serve them) on a workspace whose deployments were made through the
`deploy.deployments` API with a real registered model: the demo credit-default experiment trained twice, both
versions validated and registered, deployed to the two built-in environments (staging and production): a direct
deployment to each, a canary to staging with passing integration and performance checks and three steps, a canary to
production that failed two integration cases, one rolled back after a failing canary step, and one rolling out now
with a quarter of production's traffic. The check reports are `deploy.checks` reports as a live endpoint fills them
(running the checks themselves is `test_deploy_checks.py`'s job). Waits are Playwright waits, never timed assertions.
"""
import os
import re
import sys
from types import SimpleNamespace

import pytest

from conftest import free_port
from test_dashboards import FIGURES_JS, _fit_viewport, _stop, dashboards_and_report, serve_workspace

LOAD = 60_000  # ms: a Panel page or a Voila kernel starts in seconds, but 2 shared cores are slow
CASES = [("schema", "version endpoint names the model"), ("schema", "response matches the OpenAPI schema"), ("predictions", "golden rows equal offline"),
         ("predictions", "keyed rows equal offline"), ("bad requests", "unseen level is 422"), ("auth", "no key is 401")]
FAILING = ("golden rows equal offline", "unseen level is 422")


def _integration(version, failing=()):
    from mlops_workbench.deploy.checks import CheckCase, CheckReport
    cases = [CheckCase(n, g, n not in failing, expected=0.1375 if g == "predictions" else None,
                       got=(0.2 if n in failing else 0.1375) if g == "predictions" else None,
                       detail=f"{n}: " + ("differs from offline" if n in failing else "as expected")) for g, n in CASES]
    return CheckReport(f"credit_default/{version}", "credit_default", version, "credit_default", "http://127.0.0.1:8000",
                       "2026-12-01T10:00:00+00:00", 2.5, cases).to_dict()


def _performance(p50, p99, rps, baseline=None):
    from mlops_workbench.deploy.checks import PerfReport, PerformanceSLO
    lat = [p50, p50 * 1.2, p50 * 1.6, p50 * 2, p99, p99 * 1.5]
    r = PerfReport("http://127.0.0.1:8000/v1/models/credit_default/predict", 8, 2, {"requests": None, "duration_s": 10}, "time", int(rps * 10), 10.0, rps,
                   lat[0], lat[2], lat[3], p99, lat[5], p50 * 1.1, {}, 0.0, [[p, ms] for p, ms in zip([50, 75, 90, 95, 99, 99.9], lat)], "2026-12-01T10:01:00+00:00")
    return r.judge(PerformanceSLO(p99_ms=250, max_error_rate=0.01), baseline, tolerance=0.25).to_dict()


def write_deployments(ws):
    "The six deployments the module docstring describes, made through the deploy.deployments API; returns them by role."
    from mlops_workbench.deploy import deployments as dep
    from mlops_workbench.experiments.definition import demo_experiment
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import validate_model
    from mlops_workbench.registry.versions import register_model
    from mlops_workbench.training.fit import train
    exp = demo_experiment(ws, n_applications=1500)
    for leaves in (7, 15):
        run_id = train(ws, exp, {"num_leaves": leaves, "n_estimators": 20}).run_id
        register_model(ws, run_id, "credit_default", validate_model(ws, run_id, default_gates("binary")), who="alice")

    def deploy(ref, env, strategy="direct", checks=(), steps=(), end="finish", reason=None, traffic=None):
        d = dep.start_deployment(ws, ref, env, strategy, who="alice")
        for s in ("staging", "testing"): dep.transition_deployment(ws, d.id, s, who="alice")
        for name, r in checks: dep.record_check(ws, d.id, name, r, who="ci")
        if end == "fail": return dep.fail_deployment(ws, d.id, reason, who="ci")
        dep.transition_deployment(ws, d.id, "rolling_out", who="alice")
        if traffic: dep.set_traffic(ws, env, d.model, *traffic, who="alice", deployment_id=d.id)
        for share, analysis in steps: dep.record_step(ws, d.id, share, analysis, who="ci")
        if end == "rollback": return dep.rollback(ws, env, who="bob", reason=reason)
        return dep.finish_deployment(ws, d.id, who="alice") if end == "finish" else dep.get_deployment(ws, d.id)

    ok = lambda share, p99: {"passed": True, "judged": True, "reasons": [], "canary": {"version": 2, "p99_ms": p99, "error_rate": 0.0}, "requests": int(2000 * share)}
    out = SimpleNamespace()
    out.staging_v1 = deploy("credit_default/1", "staging")
    out.production_v1 = deploy("credit_default/1", "production")
    out.canary = deploy("credit_default/2", "staging", "canary",
                        [("integration", _integration(2)), ("performance", _performance(4.0, 9.5, 1200, {"rps": 1100, "p99_ms": 9.0, "error_rate": 0}))],
                        [(0.1, ok(0.1, 9.1)), (0.5, ok(0.5, 9.4)), (1.0, ok(1.0, 9.6))])
    out.failed = deploy("credit_default/2", "production", "canary", [("integration", _integration(2, FAILING))],
                        end="fail", reason="integration checks failed: 2 of 6 cases")
    out.rolled_back = deploy("credit_default/2", "production", "canary", [("integration", _integration(2)), ("performance", _performance(4.2, 11.0, 1150))],
                             [(0.1, {"passed": False, "judged": True, "reasons": ["canary v2 p99 410 ms over the SLO's 250 ms"], "canary": {"version": 2, "p99_ms": 410.0}})],
                             end="rollback", reason="canary analysis failed at 10%: canary v2 p99 410 ms over the SLO's 250 ms")
    out.active = deploy("credit_default/2", "production", "canary", [("integration", _integration(2))], [(0.25, ok(0.25, 9.8))], end=None, traffic=(1, 2, 0.25))
    return out


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    "A workspace with the deployments (`write_deployments`), the dashboards and the Voila deployment report on it."
    from mlops_workbench.core.workspace import Workspace
    d = tmp_path_factory.mktemp("deployments")
    ws = Workspace.init(d / "ws")
    try:
        ds = write_deployments(ws)
        with dashboards_and_report(ws, "deployment", d) as (url, voila):
            yield SimpleNamespace(ws=ws, d=ds, url=url, voila=voila)
    finally:
        ws.close()




STEPS = "Candidate share by rollout step (marker: the step's analysis verdict)"


def _charts(page, steps: int):
    """The page's Bokeh charts as the browser holds them, by title (the glyphs drawn, the time axis in ms), once the
    steps chart shows the chosen deployment's `steps` markers (a chart is replaced a moment after the HTML above it)."""
    page.wait_for_function(f"""() => ({FIGURES_JS})().some(m => m.title.text == "{STEPS}" && (d => d instanceof Map ? d.get("share") : d.share)(m.renderers[1].data_source.data).length == {steps})""",
                           timeout=LOAD)
    return {c["title"]: c for c in page.evaluate(f"""() => ({FIGURES_JS})().map(m => ({{title: m.title.text,
        glyphs: m.renderers.map(r => r.glyph.type), x0: m.x_range.start, x1: m.x_range.end}}))""")}


def _table(page, field):
    "The Tabulator table that has a column `field`."
    return page.locator(".tabulator").filter(has=page.locator(f'[tabulator-field="{field}"]'))


def test_deployments_page(deployed, page, shot):
    from playwright.sync_api import expect
    d = deployed.d
    page.goto(f"{deployed.url}/deployments")
    # what runs where: staging serves v2 alone; production v1 with v2 taking a quarter, by the active deployment
    envs = _table(page, "active deployment")
    expect(envs.locator(".tabulator-row")).to_have_count(2, timeout=LOAD)
    prod = envs.locator(".tabulator-row").nth(1)
    for field, text in (("environment", "production"), ("primary", "v1"), ("candidate", "v2"), ("share", "25%"), ("mode", "split"),
                        ("active deployment", f"{d.active.id}: v2 by canary, rolling_out"), ("SLO", "p99 <= 250 ms, errors <= 1.00%")):
        expect(prod.locator(f'[tabulator-field="{field}"]')).to_have_text(text)
    expect(envs.locator(".tabulator-row").nth(0).locator('[tabulator-field="primary"]')).to_have_text("v2")
    # the history, newest first, each with its outcome
    hist = _table(page, "strategy")
    rows = hist.locator(".tabulator-row")
    expect(rows).to_have_count(6)
    order = [d.active, d.rolled_back, d.failed, d.canary, d.production_v1, d.staging_v1]
    for i, (dep, state) in enumerate(zip(order, ["rolling_out", "rolled_back", "failed", "succeeded", "succeeded", "succeeded"])):
        expect(rows.nth(i).locator('[tabulator-field="id"]')).to_have_text(str(dep.id))
        expect(rows.nth(i).locator('[tabulator-field="state"]')).to_have_text(state)
    expect(rows.nth(2).locator('[tabulator-field="reason"]')).to_have_text("integration checks failed: 2 of 6 cases")
    # by default the newest deployment in detail
    page.get_by_role("heading", name=f"Deployment {d.active.id}: credit_default v2 to production").wait_for()
    # clicking the succeeded canary shows its checks, figures and steps, with both charts
    rows.nth(3).locator('[tabulator-field="model"]').click()
    page.get_by_role("heading", name=f"Deployment {d.canary.id}: credit_default v2 to staging").wait_for(timeout=LOAD)
    page.get_by_text("6 of 6 cases passed").wait_for()
    page.get_by_role("cell", name="1,200 req/s").wait_for()
    page.get_by_role("cell", name="<= 250 ms").wait_for()
    page.get_by_role("cell", name="p99_ms 9.6", exact=False).wait_for()
    charts = _charts(page, 3)
    assert set(charts) == {"Latency by percentile (performance check)", STEPS}, charts
    assert charts["Latency by percentile (performance check)"]["glyphs"] == ["Line", "Scatter", "Line"], charts  # + the baseline's p99 (the SLO is far above)
    assert charts[STEPS]["glyphs"] == ["Step", "Scatter"], charts
    _fit_viewport(page)
    page.locator("canvas").nth(1).wait_for()
    shot(page, "dashboards-deployments")
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_deployments_page_failed_and_rolled_back(deployed, page, shot):
    from playwright.sync_api import expect
    d = deployed.d
    page.goto(f"{deployed.url}/deployments?deployment={d.failed.id}")
    page.get_by_role("heading", name=f"Deployment {d.failed.id}: credit_default v2 to production").wait_for(timeout=LOAD)
    page.get_by_text("4 of 6 cases passed, 2 failed").wait_for()
    page.get_by_text("failed: integration checks failed: 2 of 6 cases").wait_for()
    for name in FAILING: page.get_by_role("cell", name=name, exact=True).wait_for()
    page.get_by_text("No performance check recorded for this deployment.").wait_for()
    page.get_by_text("No rollout steps recorded (canary deployment).").wait_for()
    expect(_table(page, "strategy").locator(".tabulator-row.tabulator-selected")).to_have_count(1)
    _fit_viewport(page)
    shot(page, "dashboards-deployments-failed")
    # the rolled-back one, chosen in the list
    page.locator("select").select_option(label=f"{d.rolled_back.id}: credit_default v2 to production (rolled_back)")
    page.get_by_role("heading", name=f"Deployment {d.rolled_back.id}: credit_default v2 to production").wait_for(timeout=LOAD)
    page.get_by_text("rolled_back: canary analysis failed at 10%: canary v2 p99 410 ms over the SLO's 250 ms").wait_for()
    page.get_by_role("cell", name="canary v2 p99 410 ms over the SLO's 250 ms", exact=True).wait_for()
    steps = _charts(page, 1)[STEPS]
    assert steps["x1"] - steps["x0"] == 10_000, steps  # one step: five seconds each side of it
    _fit_viewport(page)
    page.locator("canvas").nth(1).wait_for()
    shot(page, "dashboards-deployments-rolled-back")
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_deployments_page_bad_query(deployed, page):
    page.goto(f"{deployed.url}/deployments?deployment=latest")
    page.get_by_text("query parameter 'deployment' is 'latest'; expected a deployment id such as 3").wait_for(timeout=LOAD)
    page.goto(f"{deployed.url}/deployments?deployment=999")
    page.get_by_text("deployment 999 not found; list them with deployment_history(ws) or mlw deploy history").wait_for(timeout=LOAD)
    page.get_by_role("heading", name="Environments: what runs where").wait_for()  # the rest of the page stays
    assert "Traceback" not in page.content()


def test_voila_deployment_report(deployed, page, shot):
    d = deployed.d
    page.goto(f"{deployed.voila}/?deployment={d.canary.id}", timeout=LOAD)
    page.get_by_role("heading", name=f"Deployment {d.canary.id}: credit_default v2 to staging").wait_for(timeout=LOAD)
    page.get_by_text("6 of 6 cases passed").wait_for()
    for title in ("States", "Integration checks", "Performance", "Rollout steps"):
        page.get_by_role("heading", name=title, exact=True).wait_for()
    page.get_by_role("img", name="candidate share by step").wait_for()
    assert page.locator("svg").count() >= 2  # latency distribution and share by step, inline
    page.get_by_role("link", name=f"{d.failed.id}: credit_default v2 to production (failed)").wait_for()
    assert "Traceback" not in page.inner_text("body")
    _fit_viewport(page)
    shot(page, "voila-deployment")
    # the failed one, by its link (JupyterLab's renderer opens links in a new tab: follow its href here); the default is the newest
    href = page.get_by_role("link", name=f"{d.failed.id}: credit_default v2 to production (failed)").get_attribute("href")
    assert href == f"?deployment={d.failed.id}", href
    page.goto(f"{deployed.voila}/{href}", timeout=LOAD)
    page.get_by_text("4 of 6 cases passed, 2 failed").wait_for(timeout=LOAD)
    page.get_by_role("cell", name="golden rows equal offline", exact=True).wait_for()
    _fit_viewport(page)
    shot(page, "voila-deployment-failed")
    page.goto(f"{deployed.voila}/", timeout=LOAD)
    page.get_by_role("heading", name=f"Deployment {d.active.id}: credit_default v2 to production").wait_for(timeout=LOAD)
    page.goto(f"{deployed.voila}/?deployment=999", timeout=LOAD)
    page.get_by_role("alert").filter(has_text="deployment 999 not found").wait_for(timeout=LOAD)
    assert "Traceback" not in page.inner_text("body")
    assert page.offsite == []


def test_deployments_page_on_an_empty_workspace(tmp_path, browser, shot):
    "Nothing deployed: both environments serve nothing, and the page says what to run."
    from mlops_workbench.core.workspace import Workspace
    ws = Workspace.init(tmp_path / "ws")
    ws.close()
    port = free_port()
    proc = serve_workspace(ws.root, port, tmp_path / "panel.log")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/deployments")
        page.get_by_text(re.compile(r"^No deployments yet in workspace .*Deploy a registered version with mlw deploy credit_default@candidate --env staging")).wait_for(timeout=LOAD)
        envs = _table(page, "active deployment")
        from playwright.sync_api import expect
        expect(envs.locator(".tabulator-row")).to_have_count(2)
        expect(envs.locator('.tabulator-row [tabulator-field="environment"]')).to_have_text(["staging", "production"])
        shot(page, "dashboards-deployments-empty")
        assert "Traceback" not in page.content()
    finally:
        ctx.close()
        _stop(proc)
