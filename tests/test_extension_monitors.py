"""The model monitors in the JupyterLab extension: `GET /mlops-workbench/monitors` through pytest-jupyter's `jp_fetch`,
and the sidebar's Monitors section in headless Chromium against a real `jupyter lab` process.

The workspace is `monitoring_world.write_monitoring`'s, made with the real library: `credit_watch` on the demo
credit-default model (binary; its newest run breached data and prediction drift, three features of eleven drifted)
and `delivery_watch` on a regression model (two of three features drifted), each with its alerts; plus `quiet_watch`,
defined and never run. An empty workspace answers no monitors. The fixtures and helpers of `test_extension` are reused;
this module's `recorded_ws` replaces the workspace they read.
"""
import json
import re
from types import SimpleNamespace

import pytest

# pytest-jupyter's fixtures first, then test_extension's, which replace some of them (jp_server_config, jp_asyncio_loop)
from pytest_jupyter.jupyter_server import *  # noqa: F403
from test_extension import BrowserOnly, assert_missing_workspace, TestSidebar as _Sidebar, fetch, jp_asyncio_loop, jp_server_config, lab_server, lab_workspace  # noqa: F401,E402
from test_extension_deployments import _get, _library  # noqa: E402
from monitoring_world import write_monitoring  # noqa: E402


@pytest.fixture(scope="module")
def recorded_ws(tmp_path_factory):
    "The monitored workspace the module docstring describes."
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.monitoring.monitors import Monitor, define_monitor
    ws = Workspace.init(tmp_path_factory.mktemp("ext-monitors") / "ws")
    try:
        made = write_monitoring(ws)
        define_monitor(ws, Monitor("quiet_watch", "delivery_time", window="1d"), who="alice")
    finally:
        ws.close()
    return SimpleNamespace(root=ws.root, made=made)


def test_monitors_are_the_librarys_summaries(fetch, recorded_ws):
    from mlops_workbench.ui.monitoring import monitor_summaries

    body = _get(fetch, "monitors", recorded_ws.root)
    assert body["monitors"] == _library(recorded_ws.root, monitor_summaries)
    m = {x["name"]: x for x in body["monitors"]}
    assert list(m) == ["credit_watch", "delivery_watch", "quiet_watch"]  # by name
    credit, delivery, quiet = m["credit_watch"], m["delivery_watch"], m["quiet_watch"]
    last = credit["last_run"]
    run = recorded_ws.made.credit.runs[-1]
    assert (credit["model"], credit["environment"], credit["window"], credit["schedule"], credit["open_alerts"]) == ("credit_default", "production", "1h", "1h", 2)
    assert (last["id"], last["status"], last["version"], last["current_rows"], last["features"], last["drift_bound"]) == (run.id, "breached", 1, 400, 11, 0.25)
    assert sorted(last["drifted_columns"]) == ["amount", "amount_to_spend_7d", "interest_rate"] and last["breached"] == ["data_drift", "prediction_drift"]
    assert abs(last["drift_share"] - 3 / 11) < 1e-9 and last["run_at"] == run.run_at.isoformat() and last["note"] is None
    assert (delivery["last_run"]["status"], delivery["last_run"]["drifted_columns"], delivery["last_run"]["features"]) == ("breached", ["distance_km", "zone"], 3)
    assert (quiet["last_run"], quiet["open_alerts"], quiet["schedule"]) == (None, 0, None)


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

    def test_no_monitors(self, fetch, empty_root):
        assert _get(fetch, "monitors", empty_root)["monitors"] == []


class TestMissingWorkspace:
    @pytest.fixture
    def lab_workspace(self, tmp_path):
        return tmp_path / "no-such-workspace"

    def test_mlwerror_becomes_json_with_its_status(self, fetch, lab_workspace):
        assert_missing_workspace(fetch, lab_workspace, "monitors")


class TestMonitorsInSidebar(BrowserOnly):

    def test_monitors(self, lab_server, recorded_ws, page, shot):
        from playwright.sync_api import expect
        from mlops_workbench.core.workspace import Workspace
        from mlops_workbench.monitoring.monitors import run_monitor
        from monitoring_world import HOUR, T0

        load = 60_000
        panel = _Sidebar._open_sidebar(page, lab_server, load)
        expect(panel.locator(".mlw-section-title")).to_have_text(["Pipeline runs", "Datasets", "Feature views", "Experiments", "Models", "Environments", "Monitors", "Alerts"])
        _Sidebar._sections_answered(panel, lab_server, load)

        section = panel.locator("#mlw-section-monitors")
        items = section.locator(".mlw-monitor")
        expect(items).to_have_count(3, timeout=load)
        expect(items.locator(".mlw-monitor-name")).to_have_text(["credit_watch", "delivery_watch", "quiet_watch"])
        expect(items.locator(".mlw-badge")).to_have_text(["breached", "breached", "never ran"])
        credit = section.locator('.mlw-monitor[data-monitor="credit_watch"]')
        expect(credit).to_have_attribute("data-status", "breached")
        expect(credit.locator(".mlw-monitor-model")).to_have_text("credit_default v1")
        expect(credit.locator(".mlw-monitor-share")).to_have_text("drift 27.3%")
        expect(credit.locator(".mlw-monitor-share")).to_have_attribute("data-over", "true")
        expect(credit.locator(".mlw-monitor-count")).to_have_text("3 of 11 features")
        expect(credit.locator(".mlw-monitor-drifted")).to_have_text("amount, interest_rate, amount_to_spend_7d")
        expect(credit.locator(".mlw-monitor-alerts")).to_have_text("2 open alerts")
        expect(credit.locator(".mlw-monitor-age")).to_have_text(re.compile(r"^\d+ (s|min|h|d) ago$"))
        quiet = section.locator('.mlw-monitor[data-monitor="quiet_watch"]')
        expect(quiet.locator(".mlw-monitor-model")).to_have_text("delivery_time")
        expect(quiet.locator(".mlw-monitor-share, .mlw-monitor-alerts, .mlw-monitor-age")).to_have_count(0)
        expect(section.locator(".mlw-monitor-list")).to_have_attribute("aria-label", "Monitors")
        expect(section.locator(".mlw-error")).to_be_hidden()
        section.scroll_into_view_if_needed()
        shot(page, "lab-sidebar-monitors")

        # a healthy run of delivery_watch (its first hour again) resolves its alerts; the refresh command shows it
        ws = Workspace.open(recorded_ws.root)
        try:
            run_monitor(ws, "delivery_watch", since=T0, until=T0 + HOUR)
        finally:
            ws.close()
        _Sidebar._run_command(page, "Refresh Monitors")
        delivery = section.locator('.mlw-monitor[data-monitor="delivery_watch"]')
        expect(delivery.locator(".mlw-badge")).to_have_text("ok", timeout=load)
        expect(delivery.locator(".mlw-monitor-share")).to_have_attribute("data-over", "false")
        expect(delivery.locator(".mlw-monitor-alerts")).to_have_count(0)
        assert page.offsite == []
