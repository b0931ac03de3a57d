"""What is being served, in the JupyterLab extension: `GET /mlops-workbench/served` through pytest-jupyter's `jp_fetch`,
and the sidebar's Models section in headless Chromium against a real `jupyter lab` process, each registered model
listing the endpoints that serve it (endpoint, reference, the version answering now, port).

The workspace is the Serving page's (`test_dashboard_serving.write_serving_data`): `credit_default` v1 (production)
and v2 (candidate), a running gateway (a stand-in process owning the registration file `mlw serve` writes) with the
endpoints `credit` (candidate) and `credit-prod` (production). The fixtures and helpers of `test_extension` are reused;
this module's `recorded_ws` replaces the workspace they read.
"""
import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

# pytest-jupyter's fixtures first, then test_extension's, which replace some of them (jp_server_config, jp_asyncio_loop)
from pytest_jupyter.jupyter_server import *  # noqa: F403
from test_dashboard_serving import write_serving_data
from test_extension import BrowserOnly, assert_missing_workspace, TestSidebar as _Sidebar, fetch, jp_asyncio_loop, jp_server_config, lab_server, lab_workspace  # noqa: F401,E402


@pytest.fixture(scope="module")
def recorded_ws(tmp_path_factory):
    "A workspace with two versions of `credit_default` served by a running gateway (and its logged predictions); the gateway is stopped at teardown."
    from mlops_workbench.core.workspace import Workspace
    root = tmp_path_factory.mktemp("ext-serving")
    gateway = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    ws = Workspace.init(root / "ws")
    try:
        write_serving_data(ws, gateway.pid, port=8765)
    finally:
        ws.close()
    try:
        yield SimpleNamespace(root=ws.root, gateway=gateway)
    finally:
        gateway.kill(); gateway.wait()


def test_served_are_the_librarys_served_models(fetch, recorded_ws):
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.ui.serving import served_models

    r = fetch("mlops-workbench", "served")
    assert r.code == 200 and r.headers["Content-Type"].startswith("application/json")
    body = json.loads(r.body)
    assert body["workspace"] == str(recorded_ws.root)
    ws = Workspace.open(recorded_ws.root)
    try:
        expected = served_models(ws)
    finally:
        ws.close()
    assert body["served"] == json.loads(json.dumps(expected, default=str))
    assert [(s["endpoint"], s["ref"], s["model"], s["alias"], s["version"], s["port"], s["pid"], s["problem"]) for s in body["served"]] == [
        ("credit", "credit_default@candidate", "credit_default", "candidate", 2, 8765, recorded_ws.gateway.pid, None),
        ("credit-prod", "credit_default@production", "credit_default", "production", 1, 8765, recorded_ws.gateway.pid, None)]


class TestMissingWorkspace:
    @pytest.fixture
    def lab_workspace(self, tmp_path):
        return tmp_path / "no-such-workspace"

    def test_mlwerror_becomes_json_with_its_status(self, fetch, lab_workspace):
        assert_missing_workspace(fetch, lab_workspace, "served")


class TestServedInSidebar(BrowserOnly):

    def test_models_show_what_is_served(self, lab_server, recorded_ws, page, shot):
        from playwright.sync_api import expect
        from mlops_workbench.core.workspace import Workspace
        from mlops_workbench.registry.versions import promote

        load = 60_000
        panel = _Sidebar._open_sidebar(page, lab_server, load)
        _Sidebar._sections_answered(panel, lab_server, load)
        models = panel.locator("#mlw-section-models")
        model = models.locator('.mlw-model[data-model="credit_default"]')
        expect(models.locator(".mlw-model")).to_have_count(1, timeout=load)
        served = model.locator(".mlw-served")
        expect(served).to_have_count(2)
        expect(served.locator(".mlw-served-endpoint")).to_have_text(["credit", "credit-prod"])
        expect(served.nth(0)).to_have_attribute("data-ref", "credit_default@candidate")
        expect(served.nth(1)).to_have_attribute("data-ref", "credit_default@production")
        expect(served.locator(".mlw-served-ref")).to_have_text(["@candidate", "@production"])  # under the model's name
        expect(served.locator(".mlw-served-version")).to_have_text(["v2", "v1"])
        expect(served.locator(".mlw-served-port")).to_have_text([":8765", ":8765"])
        expect(served.locator(".mlw-badge")).to_have_text(["serving", "serving"])
        expect(served.nth(0)).to_have_attribute("title", re.compile(
            f"^endpoint credit serves credit_default@candidate \\(v2 now\\) on port 8765\ngateway pid {recorded_ws.gateway.pid}, up since 20"))
        versions = model.locator(".mlw-version")
        expect(versions).to_have_count(2)
        expect(versions.nth(0).locator(".mlw-version-served")).to_have_attribute("aria-label", "served")  # v2, newest first
        expect(versions.nth(1).locator(".mlw-version-served")).to_have_attribute("aria-label", "served")
        expect(panel.locator(".mlw-served-error")).to_have_count(0)
        models.scroll_into_view_if_needed()
        shot(page, "lab-sidebar-served")

        # The candidate alias moves to v1: the running gateway follows it, and `mlw:refresh-models` shows it.
        ws = Workspace.open(recorded_ws.root)
        try:
            promote(ws, "credit_default", 1, "candidate", who="alice", reason="v2 rolled back")
        finally:
            ws.close()
        _Sidebar._run_command(page, "Refresh Models")
        expect(served.locator(".mlw-served-version")).to_have_text(["v1", "v1"], timeout=load)
        expect(versions.nth(0).locator(".mlw-version-served")).to_have_count(0)  # nothing answers with v2 any more
        # The gateway stops (killed: its file stays behind): nothing is served.
        recorded_ws.gateway.kill(); recorded_ws.gateway.wait()
        _Sidebar._run_command(page, "Refresh Models")
        expect(served).to_have_count(0, timeout=load)
        expect(model.locator(".mlw-version-served")).to_have_count(0)
        assert page.offsite == []
