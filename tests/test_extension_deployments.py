"""What each deployment environment serves and the open alerts, in the JupyterLab extension: `GET /mlops-workbench/environments`
and `GET /mlops-workbench/alerts` through pytest-jupyter's `jp_fetch`, and the sidebar's Environments and Alerts sections in
headless Chromium against a real `jupyter lab` process.

The workspace is made with the real library: `credit_default` trained twice, both versions validated and registered; through
the deployment manager's API, v1 deployed to staging (finished: succeeded) and to production (finished), then a canary of v2 to
production rolling out with 10% of the traffic (v1 90% / v2 10%); an environment `qa` defined by name with nothing deployed;
a gateway started for production (a stand-in process owning the announcement file `mlw serve --env production` writes) and one
serving a fixed reference (no environment); and three alerts fired through `mlops_workbench.alerts.fire` (one acknowledged, one
resolved). An empty workspace answers the built-in environments with nothing deployed and no alerts. The fixtures and helpers
of `test_extension` are reused; this module's `recorded_ws` replaces the workspace they read.
"""
import datetime as dt
import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

# pytest-jupyter's fixtures first, then test_extension's, which replace some of them (jp_server_config, jp_asyncio_loop)
from pytest_jupyter.jupyter_server import *  # noqa: F403
from test_extension import BrowserOnly, assert_missing_workspace, TestSidebar as _Sidebar, fetch, jp_asyncio_loop, jp_server_config, lab_server, lab_workspace  # noqa: F401,E402


def _register_two_versions(ws):
    "`credit_default` v1 and v2, trained on generated loans, validated and registered (both pass their gates)."
    from mlops_workbench.data.synthetic import generate_lending
    from mlops_workbench.experiments.definition import Experiment, FloatParam, TimeSplit
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import validate_model
    from mlops_workbench.registry.versions import register_model
    from mlops_workbench.training.fit import train
    world = generate_lending(1_200, seed=11)
    loans = world.applications.join(world.labels.select("application_id", "defaulted"), on="application_id")
    exp = Experiment("credit_default", target="defaulted", exclude=["application_id", "customer_id"], split=TimeSplit("event_timestamp", valid_size=0.25),
                     search_space={"learning_rate": FloatParam(0.02, 0.3, log=True)}, params={"num_threads": 1, "num_leaves": 8}, num_boost_round=40)
    for lr in (0.1, 0.05):
        fit = train(ws, exp, {"learning_rate": lr}, data=loans)
        register_model(ws, fit.run_id, "credit_default", validate_model(ws, fit.run_id, default_gates("binary")), owner="alice", who="alice")


def write_deployment_data(ws, gateway_pids: tuple[int, int], port: int = 8766):
    """The deployments, environment, gateways and alerts the module docstring describes; returns the deployments and alerts by role."""
    from mlops_workbench import alerts
    from mlops_workbench.deploy import deployments as dep
    _register_two_versions(ws)

    def direct(ref, env):
        d = dep.start_deployment(ws, ref, env, "direct", who="alice")
        for s in ("staging", "testing", "rolling_out"): dep.transition_deployment(ws, d.id, s, who="alice")
        return dep.finish_deployment(ws, d.id, who="alice")

    out = SimpleNamespace(staging=direct("credit_default/1", "staging"), production_v1=direct("credit_default/1", "production"))
    canary = dep.start_deployment(ws, "credit_default/2", "production", "canary", who="bob", params={"steps": [0.1, 0.5, 1.0]})
    for s in ("staging", "testing", "rolling_out"): dep.transition_deployment(ws, canary.id, s, who="bob")
    dep.set_traffic(ws, "production", "credit_default", 1, 2, 0.1, who="bob", deployment_id=canary.id)
    out.canary = dep.record_step(ws, canary.id, 0.1, {"passed": True, "judged": True, "reasons": []}, who="ci")
    dep.define_environment(ws, "qa", dep.SLO(p99_ms=800, error_rate=0.1), description="manual testing", who="alice")

    # What `mlw serve --env production` announces (its endpoints follow the traffic table), and a gateway serving a fixed reference.
    ws.path("serving").mkdir(exist_ok=True)
    started = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()
    ws.path("serving", f"gateway-{gateway_pids[0]}.json").write_text(json.dumps({
        "pid": gateway_pids[0], "port": port, "started_at": started, "endpoints": {"credit_default": "credit_default/1"},
        "environment": "production", "fault": None}))
    ws.path("serving", f"gateway-{gateway_pids[1]}.json").write_text(json.dumps({
        "pid": gateway_pids[1], "port": port + 1, "started_at": started, "endpoints": {"credit": "credit_default@candidate"},
        "environment": None, "fault": None}))

    t0 = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=30)
    p99 = alerts.AlertRule("canary_p99_high", severity="critical", description="the canary's p99 latency is over the SLO")
    nulls = alerts.AlertRule("null_share_high", severity="warning", dedup_by=["column"])
    drift = alerts.AlertRule("prediction_drift", severity="info")
    out.resolved = alerts.fire(ws, drift, "model:credit_default", "Prediction drift on credit_default v1", now=t0, deliver=False)
    alerts.resolve(ws, out.resolved.id, by="dana")
    out.nulls = alerts.fire(ws, nulls, "dataset:applications", "income is null in 12% of rows", labels={"column": "income"}, now=t0, deliver=False)
    alerts.fire(ws, nulls, "dataset:applications", "income is null in 13% of rows", labels={"column": "income"}, now=t0 + dt.timedelta(minutes=5), deliver=False)
    alerts.acknowledge(ws, out.nulls.id, by="dana")
    out.p99 = alerts.fire(ws, p99, "deployment:production", "Canary v2 p99 410 ms over the SLO's 250 ms", now=t0 + dt.timedelta(minutes=10), deliver=False)
    return out


@pytest.fixture(scope="module")
def recorded_ws(tmp_path_factory):
    "A workspace with the deployments, gateways and alerts of `write_deployment_data`; the stand-in gateways are stopped at teardown."
    from mlops_workbench.core.workspace import Workspace
    root = tmp_path_factory.mktemp("ext-deployments")
    gateways = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"]) for _ in range(2)]
    ws = Workspace.init(root / "ws")
    try:
        made = write_deployment_data(ws, (gateways[0].pid, gateways[1].pid))
    finally:
        ws.close()
    try:
        yield SimpleNamespace(root=ws.root, gateways=gateways, made=made)
    finally:
        for g in gateways:
            g.kill(); g.wait()


def _library(root, function):
    "What `function(ws)` of the library says now, through the JSON round trip the handler uses."
    from mlops_workbench.core.workspace import Workspace
    ws = Workspace.open(root)
    try:
        return json.loads(json.dumps(function(ws), default=str))
    finally:
        ws.close()


def _get(fetch, route, root):
    r = fetch("mlops-workbench", route)
    assert r.code == 200 and r.headers["Content-Type"].startswith("application/json"), (r.code, r.body[:500])
    body = json.loads(r.body)
    assert body["workspace"] == str(root)
    return body


def test_environments_are_the_librarys_summaries(fetch, recorded_ws):
    from mlops_workbench.ui.deployments import environment_summaries

    body = _get(fetch, "environments", recorded_ws.root)
    assert body["environments"] == _library(recorded_ws.root, environment_summaries)
    m = recorded_ws.made
    envs = {e["name"]: e for e in body["environments"]}
    assert list(envs) == ["staging", "production", "qa"]  # built-ins first, then those defined by name
    staging, production, qa = envs["staging"], envs["production"], envs["qa"]
    assert [(t["endpoint"], t["model"], t["primary_version"], t["candidate_version"], t["candidate_share"], t["mode"]) for t in staging["endpoints"]] == [
        ("credit_default", "credit_default", 1, None, 0.0, "split")]
    assert (staging["active"], staging["last_finished"]["id"], staging["last_finished"]["outcome"]) == (None, m.staging.id, "succeeded")
    assert staging["last_finished"]["finished_at"] == m.staging.finished_at.isoformat()
    assert [(t["primary_version"], t["candidate_version"], t["candidate_share"], t["mode"], t["traffic"], t["deployment_id"]) for t in production["endpoints"]] == [
        (1, 2, 0.1, "split", "v1 90%, v2 10%", m.canary.id)]
    a = production["active"]
    assert (a["id"], a["model"], a["version"], a["strategy"], a["state"], a["who"]) == (m.canary.id, "credit_default", 2, "canary", "rolling_out", "bob")
    assert a["started_at"] == m.canary.created_at.isoformat()
    assert (production["last_finished"]["id"], production["last_finished"]["outcome"]) == (m.production_v1.id, "succeeded")
    # only the gateway started for production; the one serving a fixed reference belongs to no environment
    assert [(g["pid"], g["port"], g["endpoints"]) for g in production["gateways"]] == [(recorded_ws.gateways[0].pid, 8766, {"credit_default": "credit_default/1"})]
    assert staging["gateways"] == [] and qa["gateways"] == []
    assert (qa["alias"], qa["endpoints"], qa["active"], qa["last_finished"], qa["slo"]) == (None, [], None, None, "p99 <= 800 ms, errors <= 10.00%")


def test_alerts_are_the_librarys_open_alerts_newest_first(fetch, recorded_ws):
    from mlops_workbench.ui.data_quality import open_alert_summaries

    body = _get(fetch, "alerts", recorded_ws.root)
    assert body["alerts"] == _library(recorded_ws.root, open_alert_summaries)
    m = recorded_ws.made
    assert [(a["id"], a["rule"], a["severity"], a["source"], a["status"], a["count"]) for a in body["alerts"]] == [
        (m.p99.id, "canary_p99_high", "critical", "deployment:production", "firing", 1),
        (m.nulls.id, "null_share_high", "warning", "dataset:applications", "acknowledged", 2)]  # the resolved one is not listed
    assert body["alerts"][0]["title"] == "Canary v2 p99 410 ms over the SLO's 250 ms"
    assert body["alerts"][1]["fired_at"] == m.nulls.first_seen.isoformat()
    assert body["alerts"][1]["last_seen"] > body["alerts"][1]["fired_at"]  # ISO 8601 UTC text orders as time


class TestEmptyWorkspace:
    @pytest.fixture
    def empty_root(self, tmp_path):
        from mlops_workbench.core.workspace import Workspace
        ws = Workspace.init(tmp_path / "ws")
        ws.close()
        return ws.root

    @pytest.fixture
    def lab_workspace(self, empty_root):
        return empty_root

    def test_nothing_deployed_and_no_alerts(self, fetch, empty_root):
        from mlops_workbench.ui.data_quality import open_alert_summaries
        from mlops_workbench.ui.deployments import environment_summaries

        envs = _get(fetch, "environments", empty_root)["environments"]
        assert envs == _library(empty_root, environment_summaries)
        assert [(e["name"], e["alias"], e["endpoints"], e["active"], e["last_finished"], e["gateways"]) for e in envs] == [
            ("staging", "staging", [], None, None, []), ("production", "production", [], None, None, [])]
        alerts = _get(fetch, "alerts", empty_root)["alerts"]
        assert alerts == _library(empty_root, open_alert_summaries) == []


class TestMissingWorkspace:
    @pytest.fixture
    def lab_workspace(self, tmp_path):
        return tmp_path / "no-such-workspace"

    @pytest.mark.parametrize("path", ["environments", "alerts"])
    def test_mlwerror_becomes_json_with_its_status(self, fetch, lab_workspace, path):
        assert_missing_workspace(fetch, lab_workspace, path)


class TestEnvironmentsAndAlertsInSidebar(BrowserOnly):

    def test_environments_and_alerts(self, lab_server, recorded_ws, page, shot):
        from playwright.sync_api import expect
        import sqlalchemy as sa
        from mlops_workbench import alerts
        from mlops_workbench.core.metadata import environments as environments_t
        from mlops_workbench.core.workspace import Workspace

        load = 60_000
        m = recorded_ws.made
        panel = _Sidebar._open_sidebar(page, lab_server, load)
        _Sidebar._sections_answered(panel, lab_server, load)

        envs = panel.locator("#mlw-section-environments")
        items = envs.locator(".mlw-environment")
        expect(items).to_have_count(3, timeout=load)
        expect(items.locator(".mlw-environment-name")).to_have_text(["staging", "production", "qa"])
        staging, production, qa = (envs.locator(f'.mlw-environment[data-environment="{n}"]') for n in ("staging", "production", "qa"))
        expect(staging.locator(".mlw-alias")).to_have_text("staging")
        expect(staging.locator(".mlw-endpoint-name")).to_have_text(["credit_default"])
        expect(staging.locator(".mlw-endpoint-traffic")).to_have_text(["v1 100%"])
        expect(staging.locator(".mlw-environment-active")).to_have_count(0)
        expect(staging.locator(".mlw-environment-last")).to_have_text(re.compile(f"^last\\s*#{m.staging.id} v1\\s*succeeded$"))
        expect(staging.locator(".mlw-environment-last")).to_have_attribute("data-outcome", "succeeded")
        expect(staging.locator(".mlw-environment-gateway")).to_have_count(0)

        expect(production.locator(".mlw-endpoint-traffic")).to_have_text(["v1 90% \u00b7 v2 10% (canary)"])
        active = production.locator(".mlw-environment-active")
        expect(active).to_have_attribute("data-state", "rolling_out")
        expect(active.locator(".mlw-badge")).to_have_text("rolling out")
        expect(active.locator(".mlw-environment-deployment")).to_have_text(f"#{m.canary.id} v2 by canary")
        expect(active.locator(".mlw-environment-who")).to_have_text(re.compile(r"^bob, \d+ (s|min|h|d) ago$"))
        expect(production.locator(".mlw-environment-last")).to_have_text(re.compile(f"^last\\s*#{m.production_v1.id} v1\\s*succeeded$"))
        expect(production.locator(".mlw-environment-gateway")).to_have_text(["gateway :8766"])
        expect(production).to_have_class(re.compile(r"\bmlw-status-rolling_out\b"))
        expect(production.locator(".mlw-endpoint-list")).to_have_attribute("aria-label", "Endpoints of production")

        expect(qa.locator(".mlw-environment-empty")).to_have_text("nothing deployed")
        expect(qa.locator(".mlw-alias, .mlw-endpoint, .mlw-environment-active, .mlw-environment-last")).to_have_count(0)

        section = panel.locator("#mlw-section-alerts")
        open_ = section.locator(".mlw-open-alert")
        expect(open_).to_have_count(2, timeout=load)
        expect(open_.locator(".mlw-badge")).to_have_text(["critical", "warning"])  # newest first
        expect(open_.locator(".mlw-open-alert-title")).to_have_text(["Canary v2 p99 410 ms over the SLO's 250 ms", "income is null in 13% of rows"])  # a repeat keeps the newest title
        expect(open_.nth(0)).to_have_attribute("data-alert", str(m.p99.id))
        expect(open_.nth(1)).to_have_attribute("data-status", "acknowledged")
        expect(open_.nth(1).locator(".mlw-open-alert-status")).to_have_text("acknowledged")
        expect(open_.nth(1).locator(".mlw-open-alert-count")).to_have_text("\u00d72")
        expect(open_.locator(".mlw-open-alert-source")).to_have_text(["deployment:production", "dataset:applications"])
        expect(section.locator(".mlw-alert-list")).to_have_attribute("aria-label", "Alerts")
        for error in panel.locator(".mlw-error").all():
            expect(error).to_be_hidden()
        envs.scroll_into_view_if_needed()
        shot(page, "lab-sidebar-environments")
        section.scroll_into_view_if_needed()
        shot(page, "lab-sidebar-alerts")

        # A broken environment record (an SLO no code writes) is that section's error; the alerts still show and refresh.
        ws = Workspace.open(recorded_ws.root)
        try:
            with ws.metadata.begin() as c:
                good = c.execute(sa.select(environments_t.c.slo).where(environments_t.c.name == "qa")).scalar()
                c.execute(environments_t.update().where(environments_t.c.name == "qa").values(slo={"kind": "slo", "p99_ms": -1}))
            try:
                _Sidebar._run_command(page, "Refresh Environments")
                error = envs.locator(".mlw-error")
                expect(error).to_be_visible(timeout=load)
                expect(error.locator(".mlw-error-kind")).to_have_text("InvalidInput (HTTP 400)")
                expect(error.locator(".mlw-error-message")).to_contain_text("p99_ms must be a positive number")
                expect(envs).to_have_class(re.compile(r"\bmlw-mod-stale\b"))
                for a in (m.p99, m.nulls):
                    alerts.resolve(ws, a.id, by="dana")
                _Sidebar._run_command(page, "Refresh Alerts")
                expect(open_).to_have_count(0, timeout=load)
                expect(section.locator(".mlw-empty")).to_have_text("no open alerts")
                expect(section.locator(".mlw-error")).to_be_hidden()
                section.scroll_into_view_if_needed()
                shot(page, "lab-sidebar-environments-error")
            finally:
                with ws.metadata.begin() as c:
                    c.execute(environments_t.update().where(environments_t.c.name == "qa").values(slo=good))
        finally:
            ws.close()
        _Sidebar._run_command(page, "Refresh Environments")
        expect(envs.locator(".mlw-error")).to_be_hidden(timeout=load)
        expect(envs).not_to_have_class(re.compile(r"\bmlw-mod-stale\b"))
        expect(items).to_have_count(3)
        assert page.offsite == []
