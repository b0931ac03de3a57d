"""The JupyterLab extension: its REST handlers through pytest-jupyter's `jp_fetch`, and the
"MLOps Workbench" sidebar in headless Chromium against a real `jupyter lab` process.

Both read a workspace whose runs the real runner recorded (one succeeded, one failed), whose datasets the
real storage, validation and quality modules wrote (`test_dashboards.write_quality_data`), whose feature views
the real feature store applied, built and materialized (`test_dashboards.write_feature_data`), and whose experiment
and models a real search, training, validation and registration left (`test_dashboards.write_model_data`).
The tests use the installed `mlops_workbench_lab` (`pip install ./extensions/mlops_workbench_lab`).
"""
import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from conftest import ROOT, free_port
from test_dashboards import write_feature_data, write_model_data, write_quality_data  # what pipelines leave behind, shared with the dashboard tests
from jupyter_core.utils import ensure_event_loop

# pytest-jupyter's fixtures (jp_fetch, jp_serverapp, http_server_client...), imported into this
# module only. Registering the plugin for the session (`pytest_plugins`) would give every test
# its autouse event-loop fixture, which breaks Playwright tests: it finds the sync API's loop
# marked as running in this thread and closes it at teardown.
from pytest_jupyter.jupyter_server import *  # noqa: E402,F403

EXT = ROOT / "extensions" / "mlops_workbench_lab"


@pytest.fixture
def jp_asyncio_loop():
    """pytest-jupyter's loop for the in-process server, safe after a Playwright test: the sync API
    leaves its own loop marked as running in this thread between calls, so set that aside meanwhile."""
    outer = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    loop = ensure_event_loop(prefer_selector_loop=True)
    try:
        yield loop
    finally:
        loop.close()
        asyncio._set_running_loop(outer)


@pytest.fixture
def fetch(jp_fetch, jp_asyncio_loop):
    "`jp_fetch` (token-authenticated), run to completion: the response, whatever its status."
    def _fetch(*parts, **kwargs):
        return jp_asyncio_loop.run_until_complete(jp_fetch(*parts, raise_error=False, **kwargs))
    return _fetch


# ---------------------------------------------------------------- a workspace with real runs

@pytest.fixture(scope="module")
def recorded_ws(tmp_path_factory):
    "A workspace holding two runs recorded by `run_pipeline` (`lab-train` succeeded, then `lab-boom` failed), datasets and feature views."
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.pipelines.runner import PipelineSpec, make_notebook, run_pipeline

    root = tmp_path_factory.mktemp("ext")
    nbs = root / "notebooks"
    rec = "from mlops_workbench.pipelines.runner import record_output"
    make_notebook(nbs / "prepare.ipynb", "rows = 10", rec, "record_output('rows', rows * 2)")
    make_notebook(nbs / "train.ipynb", "rows = 0", rec, "record_output('score', rows / 100)")
    make_notebook(nbs / "divide.ipynb", "d = 1", "total = 10", "total / (d - 1)")
    train = PipelineSpec.from_dict({"name": "lab-train", "steps": {
        "prepare": {"notebook": "prepare.ipynb"},
        "train": {"notebook": "train.ipynb", "depends_on": ["prepare"],
                  "parameters": {"rows": "${steps.prepare.outputs.rows}"}}}}, nbs)
    boom = PipelineSpec.from_dict({"name": "lab-boom", "steps": {
        "divide": {"notebook": "divide.ipynb"},
        "report": {"notebook": "prepare.ipynb", "depends_on": ["divide"]}}}, nbs)

    ws = Workspace.init(root / "ws")
    try:
        ok = run_pipeline(ws, train, progress=False)
        bad = run_pipeline(ws, boom, progress=False)
        write_quality_data(ws)
        features = write_feature_data(ws)
        models = write_model_data(ws)
    finally:
        ws.close()
    assert (ok.status, bad.status) == ("succeeded", "failed"), (ok.to_dict(), bad.to_dict())
    return SimpleNamespace(root=ws.root, ok=ok, bad=bad, features=features, models=models)


def test_versions_agree():
    "The Python package and the npm package carry the same version."
    from mlops_workbench_lab import __version__
    assert json.loads((EXT / "package.json").read_text())["version"] == __version__


# ---------------------------------------------------------------- handlers, through jp_fetch

@pytest.fixture
def lab_workspace(recorded_ws):
    "The path `MLWLab.workspace` is set to (overridden below for the missing-workspace case)."
    return recorded_ws.root


@pytest.fixture
def jp_server_config(lab_workspace):
    return Config({"ServerApp": {"jpserver_extensions": {"mlops_workbench_lab": True}},
                   "MLWLab": {"workspace": str(lab_workspace)}})


def test_runs_are_the_librarys_records_newest_first(fetch, recorded_ws):
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.pipelines.runner import list_runs

    r = fetch("mlops-workbench", "runs", params={"limit": "10"})
    assert r.code == 200 and r.headers["Content-Type"].startswith("application/json")
    body = json.loads(r.body)
    assert body["workspace"] == str(recorded_ws.root)
    assert [(x["pipeline"], x["status"]) for x in body["runs"]] == [("lab-boom", "failed"), ("lab-train", "succeeded")]
    ws = Workspace.open(recorded_ws.root)
    try:
        expected = [run.to_dict() for run in list_runs(ws, limit=10)]
    finally:
        ws.close()
    assert body["runs"] == json.loads(json.dumps(expected))
    boom = body["runs"][0]
    assert [(s["name"], s["status"]) for s in boom["steps"]] == [("divide", "failed"), ("report", "skipped")]
    assert boom["steps"][0]["error"]["type"] == "ZeroDivisionError"


def test_limit_is_applied_and_checked(fetch, recorded_ws):
    r = fetch("mlops-workbench", "runs", params={"limit": "1"})
    assert [x["id"] for x in json.loads(r.body)["runs"]] == [recorded_ws.bad.id]
    r = fetch("mlops-workbench", "runs", params={"limit": "many"})
    assert r.code == 400
    assert json.loads(r.body) == {
        "error": "InvalidInput", "message": "query parameter 'limit' is 'many'; expected a whole number from 1 to 500"}


def test_datasets_are_the_librarys_summaries(fetch, recorded_ws):
    from mlops_workbench.alerts import list_alerts
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.data.quality import validation_history
    from mlops_workbench.core.storage import latest_version

    r = fetch("mlops-workbench", "datasets")
    assert r.code == 200 and r.headers["Content-Type"].startswith("application/json")
    body = json.loads(r.body)
    assert body["workspace"] == str(recorded_ws.root)
    got = {d["name"]: d for d in body["datasets"]}
    assert list(got) == ["applications", "applications_quarantine", "applications_validated", "customers", "fv_customer_spend", "transactions"]
    ws = Workspace.open(recorded_ws.root)
    try:
        for name, d in got.items():
            v, reports = latest_version(ws, name), validation_history(ws, name, limit=1)
            assert (d["version"], d["rows"]) == (v.version, v.row_count)
            assert (d["validation"], d["validated_version"]) == ((reports[0]["status"], reports[0]["version"]) if reports else (None, None))
            assert d["open_alerts"] == len(list_alerts(ws, status="open", source=f"dataset:{name}"))
    finally:
        ws.close()
    apps = got["applications"]
    assert (apps["kind"], apps["version"], apps["rows"], apps["validation"], apps["validated_version"]) == ("raw", 1, 2000, "quarantined", 1)
    assert apps["open_alerts"] > 0
    assert (got["customers"]["validation"], got["customers"]["open_alerts"]) == (None, 0)
    assert got["applications_quarantine"]["kind"] == "quarantine"
    assert got["applications_quarantine"]["rows"] + got["applications_validated"]["rows"] == 2000


def _answer(fetch, recorded_ws, route, summaries):
    """`GET mlops-workbench/<route>` checked as JSON for the recorded workspace, and what `summaries(ws)` of the library
    says now, through the same JSON round trip the handler uses."""
    from mlops_workbench.core.workspace import Workspace
    r = fetch("mlops-workbench", route)
    assert r.code == 200 and r.headers["Content-Type"].startswith("application/json")
    body = json.loads(r.body)
    assert body["workspace"] == str(recorded_ws.root)
    ws = Workspace.open(recorded_ws.root)
    try:
        expected = summaries(ws)
    finally:
        ws.close()
    return body, json.loads(json.dumps(expected, default=str))


def test_features_are_the_librarys_summaries(fetch, recorded_ws):
    from mlops_workbench.ui.features import feature_view_summaries

    body, expected = _answer(fetch, recorded_ws, "features", feature_view_summaries)
    # the same summaries, but for the age of the newest event, which the server measured a moment earlier
    assert [{**v, "freshness_s": None} for v in body["views"]] == [{**v, "freshness_s": None} for v in expected]
    assert 0 <= expected[1]["freshness_s"] - body["views"][1]["freshness_s"] < 300
    got = {v["name"]: v for v in body["views"]}
    assert list(got) == ["application_ratios", "customer_spend"]
    spend, f = got["customer_spend"], recorded_ws.features
    b, m = f.builds[-1], f.mats[-1]
    assert (spend["version"], spend["kind"], spend["entity"], spend["source"], spend["ttl"]) == (2, "batch", "customer", "transactions", "60d")
    assert spend["features"] == f.features
    assert (spend["build"]["id"], spend["build"]["rows"], spend["build"]["table_version"]) == (b.id, b.rows, b.table_version)
    assert spend["build"]["max_event_time"] == b.max_event_time.isoformat()
    assert (spend["materialization"]["status"], spend["materialization"]["rows"], spend["online_until"]) == ("complete", m.rows, m.end.isoformat())
    assert spend["materialization"]["store"].startswith("sqlite:///") and spend["note"] == ""
    ondemand = got["application_ratios"]
    assert (ondemand["kind"], ondemand["build"], ondemand["materialization"]) == ("on_demand", None, None)


def test_experiments_are_the_librarys_summaries(fetch, recorded_ws):
    from mlops_workbench.ui.models import experiment_summaries

    body, expected = _answer(fetch, recorded_ws, "experiments", experiment_summaries)
    assert body["experiments"] == expected
    m = recorded_ws.models
    (x,) = body["experiments"]
    assert (x["name"], x["task"], x["metric"], x["direction"], x["state"]) == ("credit_default", "binary", "auc", "maximize", "finished")
    assert (x["trials"], x["complete"] + x["pruned"] + x["failed"], x["best_trial"], x["best_value"]) == (6, 6, m.search.best_trial, m.search.best_value)
    assert x["parent_run_id"] == m.search.parent_run_id and x["report"] == str(m.search.report_path)


def test_models_are_the_librarys_summaries(fetch, recorded_ws):
    from mlops_workbench.ui.models import model_summaries

    body, expected = _answer(fetch, recorded_ws, "models", model_summaries)
    assert body["models"] == expected
    m = recorded_ws.models
    (model,) = body["models"]
    assert (model["name"], model["versions"], model["latest"], model["aliases"], model["owner"]) == ("credit_default", 2, 2, {"candidate": 1}, "alice")
    assert [(v["version"], v["status"], v["aliases"], v["run_id"]) for v in model["version_records"]] == [
        (2, "rejected", [], m.flat.run_id), (1, "passed", ["candidate"], m.best.run_id)]
    assert model["version_records"][1]["gates"] == m.report.summary()


def assert_missing_workspace(fetch, lab_workspace, path: str) -> dict:
    "Route `path` on a workspace that does not exist answers 404 with the JSON error naming it; the body."
    r = fetch("mlops-workbench", path)
    assert r.code == 404 and r.headers["Content-Type"].startswith("application/json")
    body = json.loads(r.body)
    assert body["error"] == "NotFound" and str(lab_workspace) in body["message"], body
    return body


class TestMissingWorkspace:
    @pytest.fixture
    def lab_workspace(self, tmp_path):
        return tmp_path / "no-such-workspace"

    @pytest.mark.parametrize("path", ["runs", "datasets", "features", "experiments", "models"])
    def test_mlwerror_becomes_json_with_its_status(self, fetch, lab_workspace, path):
        assert "does not exist" in assert_missing_workspace(fetch, lab_workspace, path)["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "token not-the-token"}], ids=["no-token", "wrong-token"])
def test_unauthenticated_requests_are_refused(jp_asyncio_loop, http_server_client, jp_base_url, headers):
    r = jp_asyncio_loop.run_until_complete(
        http_server_client.fetch(f"{jp_base_url}mlops-workbench/runs", headers=headers, raise_error=False))
    assert r.code == 403
    assert b"lab-train" not in r.body


# ---------------------------------------------------------------- the sidebar, in a browser

@pytest.fixture(scope="module")
def lab_server(recorded_ws, tmp_path_factory):
    "A real `jupyter lab` on a free loopback port, reading `recorded_ws`; stopped at teardown."
    home = tmp_path_factory.mktemp("jupyter-lab")
    (home / "root").mkdir()
    # Own config/data/runtime folders: no user settings or saved layout leak in. The
    # installed extension is still found under sys.prefix (share/jupyter, etc/jupyter).
    labconfig = home / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    # The news-consent toast would cover part of the page in screenshots.
    (labconfig / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "HOME": str(home)}
    env.pop("MLW_HOME", None)
    token, port = secrets.token_hex(16), free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = home / "jupyter-lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", f"--IdentityProvider.token={token}",
             f"--port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.root_dir={home / 'root'}", f"--MLWLab.workspace={recorded_ws.root}"],
            cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(proc, f"{url}/api/status", token, log_path)
        yield SimpleNamespace(url=url, token=token, log=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_up(proc, status_url, token, log_path, patience=180):
    "Poll the server until it answers (a start-up wait, not a timing assertion)."
    req = urllib.request.Request(status_url, headers={"Authorization": f"token {token}"})
    give_up = time.monotonic() + patience
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer within {patience}s:\n{log_path.read_text()[-3000:]}")


class BrowserOnly:
    """Base of the test classes that drive a real `jupyter lab` in Chromium: nothing there runs an in-process server, so this
    module's pytest-jupyter autouse fixtures are switched off (they would fight Playwright's sync API over the event loop)."""
    @pytest.fixture
    def jp_asyncio_loop(self):
        yield None

    @pytest.fixture
    def jp_server_cleanup(self):
        yield


class TestSidebar(BrowserOnly):

    def test_sidebar_shows_recorded_runs_datasets_and_server_errors(self, lab_server, recorded_ws, page, shot):
        from playwright.sync_api import expect

        load = 60_000  # ms Playwright may wait for JupyterLab (and the first REST call) to load
        ok, bad = recorded_ws.ok, recorded_ws.bad
        panel = self._open_sidebar(page, lab_server, load)
        self._sections_answered(panel, lab_server, load)
        section = panel.locator("#mlw-section-runs")
        expect(panel.locator(".mlw-panel-title")).to_have_text("MLOps Workbench")
        expect(panel.locator(".mlw-section-title")).to_have_text(["Pipeline runs", "Datasets", "Feature views", "Experiments", "Models", "Environments", "Monitors", "Alerts"])

        runs = section.locator(".mlw-run")
        expect(runs).to_have_count(2, timeout=load)
        expect(runs.nth(0)).to_have_attribute("data-run-id", bad.id)  # newest first
        train, boom = runs.nth(1), runs.nth(0)
        expect(train.locator(".mlw-run-pipeline")).to_have_text("lab-train")
        expect(train.locator(".mlw-run-summary .mlw-badge")).to_have_text("succeeded")
        expect(train.locator(".mlw-run-id")).to_have_text(ok.id.rsplit("-", 1)[-1])
        expect(boom.locator(".mlw-run-pipeline")).to_have_text("lab-boom")
        expect(boom.locator(".mlw-run-summary .mlw-badge")).to_have_text("failed")
        expect(section.locator(".mlw-workspace")).to_have_text(str(recorded_ws.root))
        expect(panel.locator(".mlw-error")).to_have_count(8)
        for error in panel.locator(".mlw-error").all():
            expect(error).to_be_hidden()

        # Clicking a run shows its steps with their status.
        steps = boom.locator(".mlw-step")
        expect(steps.first).to_be_hidden()
        boom.locator(".mlw-run-summary").click()
        expect(steps).to_have_count(2)
        expect(boom.locator('.mlw-step[data-step="divide"] .mlw-badge')).to_have_text("failed")
        expect(boom.locator('.mlw-step[data-step="report"] .mlw-badge')).to_have_text("skipped")
        expect(boom.locator('.mlw-step[data-step="divide"] .mlw-step-error')).to_contain_text(
            "ZeroDivisionError in cell 2: division by zero")
        shot(page, "lab-sidebar")

        self._datasets(page, panel, recorded_ws, shot, load)
        self._features(page, panel, recorded_ws, shot, load)

        # A failing call shows the server's error in the error box; the next good refresh clears it. Every section has
        # answered first: one still loading when the folder moves could recreate part of it (MLflow's store makes its
        # artifact folder when opened), and the folder could not move back.
        expect(panel.locator('.mlw-section[aria-busy="false"]')).to_have_count(8, timeout=load)
        moved = recorded_ws.root.with_name(recorded_ws.root.name + "-moved")
        recorded_ws.root.rename(moved)
        try:
            section.locator(".mlw-refresh").click()
            error = section.locator(".mlw-error")
            expect(error).to_be_visible(timeout=load)
            expect(error.locator(".mlw-error-kind")).to_have_text("NotFound (HTTP 404)")
            expect(error.locator(".mlw-error-message")).to_contain_text(f"workspace '{recorded_ws.root}' does not exist")
            expect(section).to_have_class(re.compile(r"\bmlw-mod-stale\b"))  # old list dimmed
            shot(page, "lab-sidebar-error")
        finally:
            moved.rename(recorded_ws.root)
        section.locator(".mlw-refresh").click()
        expect(section.locator(".mlw-error")).to_be_hidden(timeout=load)
        expect(section).not_to_have_class(re.compile(r"\bmlw-mod-stale\b"))
        expect(runs).to_have_count(2)
        expect(boom.locator(".mlw-step").first).to_be_visible()  # the expanded run stays expanded

        assert page.offsite == []

    def test_sidebar_shows_experiments_and_models(self, lab_server, recorded_ws, page, shot):
        load = 60_000
        self._open_sidebar(page, lab_server, load)
        self._experiments_and_models(page, page.locator("#mlw-sidebar"), recorded_ws, shot, load)

    @staticmethod
    def _open_sidebar(page, lab_server, load):
        """Open JupyterLab with a fresh layout and show the MLOps Workbench sidebar.

        `?reset` matters: the server keeps each test's layout, and JupyterLab's layout restorer would reopen the
        sidebar an earlier test left open, so the tab click below would close it again (its sections then stay
        unloaded and hidden). The Launcher a fresh layout opens once JupyterLab is restored takes the focus, which would
        close a command palette opened before it; so the sidebar is used only after it is there. A fresh layout shows
        the sidebar by itself (the extension's first launch), so its tab is clicked only if it is not showing: a click
        on the tab of the panel shown would close it."""
        from playwright.sync_api import expect
        page.goto(f"{lab_server.url}/lab?reset&token={lab_server.token}")
        expect(page.locator(".jp-Launcher")).to_be_visible(timeout=load)
        panel = page.locator("#mlw-sidebar")
        tab = page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="mlw-sidebar"]')
        try:
            expect(tab).to_have_class(re.compile(r"\blm-mod-current\b"), timeout=10_000)
        except AssertionError:
            tab.click(timeout=load)
        expect(panel).to_be_visible(timeout=load)
        return panel

    @staticmethod
    def _sections_answered(panel, lab_server, load):
        """Wait until every section has answered, and fail naming each section that shows an error, with its message and
        the tracebacks in the lab server's log: the error a section shows in the browser says what broke, the log says where."""
        from playwright.sync_api import expect
        expect(panel.locator('.mlw-section[aria-busy="false"]')).to_have_count(8, timeout=load)
        shown = [(s.get_attribute("id"), s.locator(".mlw-error").inner_text()) for s in panel.locator(".mlw-section").all()
                 if s.locator(".mlw-error").count() and s.locator(".mlw-error").is_visible()]
        if shown:
            log = lab_server.log.read_text(errors="replace")
            tracebacks = log[log.find("Traceback"):][-6000:] if "Traceback" in log else log[-3000:]
            pytest.fail(f"sections answered with an error: {shown}\nthe lab server's log:\n{tracebacks}")

    @staticmethod
    def _run_command(page, label):
        """Run a command from JupyterLab's command palette by its label, as a person would: type it, see it chosen, press Enter.

        Not a click on the item: the palette re-renders its items whenever any command changes, and on a busy machine
        JupyterLab's own polling did that often enough to keep detaching the item for a whole 30 s click timeout."""
        from playwright.sync_api import expect
        page.keyboard.press("Control+Shift+C")
        page.locator(".lm-CommandPalette-input").fill(label)
        expect(page.locator(".lm-CommandPalette-item.lm-mod-active .lm-CommandPalette-itemLabel")).to_have_text(label)
        page.keyboard.press("Enter")
        expect(page.locator(".lm-CommandPalette-input")).to_be_hidden()

    def _datasets(self, page, panel, recorded_ws, shot, load):
        "The Datasets section: the library's summaries with a validation badge; `mlw:refresh-datasets` reloads it."
        from playwright.sync_api import expect
        from mlops_workbench.core.workspace import Workspace
        from mlops_workbench.core.storage import write_dataset
        from mlops_workbench.ui.data_quality import dataset_summaries

        ws = Workspace.open(recorded_ws.root)
        try:
            expected = dataset_summaries(ws)
        finally:
            ws.close()
        section = panel.locator("#mlw-section-datasets")
        items = section.locator(".mlw-dataset")
        expect(items).to_have_count(len(expected), timeout=load)
        for i, d in enumerate(expected):  # by name, each with its validation badge, version, rows and open alerts
            item = items.nth(i)
            expect(item).to_have_attribute("data-dataset", d["name"])
            expect(item.locator(".mlw-dataset-name")).to_have_text(d["name"])
            expect(item.locator(".mlw-badge")).to_have_text(d["validation"] or "not validated")
            expect(item.locator(".mlw-dataset-version")).to_have_text(f"v{d['version']}")
            expect(item.locator(".mlw-dataset-rows")).to_have_text(f"{d['rows']:,} rows")
            n = d["open_alerts"]  # shown when there are any
            expect(item.locator(".mlw-dataset-alerts")).to_have_text([f"{n} open alert{'' if n == 1 else 's'}"] if n else [])
        apps = section.locator('.mlw-dataset[data-dataset="applications"]')
        expect(apps).to_have_attribute("data-validation", "quarantined")
        expect(apps.locator(".mlw-dataset-alerts")).to_be_visible()
        expect(section.locator('.mlw-dataset[data-dataset="customers"] .mlw-badge')).to_have_text("not validated")
        section.scroll_into_view_if_needed()
        shot(page, "lab-sidebar-datasets")

        # A dataset written now appears after `mlw:refresh-datasets`, run from the command palette.
        import polars as pl
        ws = Workspace.open(recorded_ws.root)
        try:
            write_dataset(ws, "labels", pl.DataFrame({"application_id": [1, 2], "defaulted": [False, True]}), source={"kind": "test", "location": "inline"})
        finally:
            ws.close()
        expect(items).to_have_count(len(expected))  # nothing polls
        self._run_command(page, "Refresh Datasets")
        expect(items).to_have_count(len(expected) + 1, timeout=load)
        expect(section.locator('.mlw-dataset[data-dataset="labels"] .mlw-dataset-rows')).to_have_text("2 rows")

    def _features(self, page, panel, recorded_ws, shot, load):
        "The Feature views section: each view's version, features, newest build and materialization; `mlw:refresh-features` reloads it."
        from playwright.sync_api import expect
        import polars as pl
        from mlops_workbench.core.workspace import Workspace
        from mlops_workbench.features.definitions import FeatureView, apply

        f = recorded_ws.features
        b, m = f.builds[-1], f.mats[-1]
        section = panel.locator("#mlw-section-features")
        items = section.locator(".mlw-feature-view")
        expect(items).to_have_count(2, timeout=load)
        expect(items.nth(0)).to_have_attribute("data-view", "application_ratios")  # by name
        spend = section.locator('.mlw-feature-view[data-view="customer_spend"]')
        expect(spend.locator(".mlw-feature-name")).to_have_text("customer_spend")
        expect(spend.locator(".mlw-badge")).to_have_text("complete")
        expect(spend).to_have_attribute("data-materialization", "complete")
        expect(spend.locator(".mlw-feature-version")).to_have_text("v2")
        expect(spend.locator(".mlw-feature-count")).to_have_text(f"{len(f.features)} features")
        expect(spend.locator(".mlw-feature-rows")).to_have_text(f"{b.rows:,} rows")
        expect(spend.locator(".mlw-feature-freshness")).to_have_text(re.compile(r"^newest event \d+ (s|min|h|d) ago$"))
        import datetime as dt
        expired = dt.datetime.now(dt.timezone.utc) - b.max_event_time > dt.timedelta(days=60)  # the TTL of v2 (the demo's events end in January 2026)
        expect(spend.locator(".mlw-feature-expired")).to_have_text(["past its 60d TTL"] if expired else [])
        expect(spend.locator(".mlw-feature-online time")).to_have_attribute("datetime", m.end.isoformat())
        expect(spend.locator(".mlw-feature-note")).to_have_count(0)  # nothing to do
        ondemand = section.locator('.mlw-feature-view[data-view="application_ratios"]')
        expect(ondemand.locator(".mlw-badge")).to_have_text("on demand")
        expect(ondemand.locator(".mlw-feature-count")).to_have_text("1 feature")
        section.scroll_into_view_if_needed()
        shot(page, "lab-sidebar-features")

        # A view applied now (not built) appears after `mlw:refresh-features`, run from the command palette, saying what to run.
        ws = Workspace.open(recorded_ws.root)
        try:
            apply(ws, FeatureView("customer_merchants", entity="customer", source="transactions",
                                  features={"category": pl.col("merchant_category").cast(pl.String)}))
        finally:
            ws.close()
        expect(items).to_have_count(2)  # nothing polls
        self._run_command(page, "Refresh Feature Views")
        expect(items).to_have_count(3, timeout=load)
        merchants = section.locator('.mlw-feature-view[data-view="customer_merchants"]')
        expect(merchants.locator(".mlw-badge")).to_have_text("not materialized")
        expect(merchants.locator(".mlw-feature-freshness")).to_have_text("not built")
        expect(merchants.locator(".mlw-feature-note")).to_have_text("not built yet; run build_features(ws, 'customer_merchants')")

    def _experiments_and_models(self, page, panel, recorded_ws, shot, load):
        """The Experiments section (trials, best value, state of each search) and the Models section (versions with their
        validation status and aliases as badges); `mlw:refresh-experiments` and `mlw:refresh-models` reload them."""
        import dataclasses
        from playwright.sync_api import expect
        from mlops_workbench.core.workspace import Workspace
        from mlops_workbench.experiments.search import search
        from mlops_workbench.registry.versions import promote

        m = recorded_ws.models
        experiments = panel.locator("#mlw-section-experiments")
        x = experiments.locator('.mlw-experiment[data-experiment="credit_default"]')
        expect(experiments.locator(".mlw-experiment")).to_have_count(1, timeout=load)
        expect(x.locator(".mlw-experiment-name")).to_have_text("credit_default")
        expect(x.locator(".mlw-badge")).to_have_text("finished")
        expect(x.locator(".mlw-experiment-trials")).to_have_text("6 trials")
        expect(x.locator(".mlw-experiment-best")).to_have_text(f"best auc {float(f'{m.search.best_value:.4g}'):g}")
        pruned = sum(t.state.name == "PRUNED" for t in m.search.study.get_trials(deepcopy=False))
        expect(x.locator(".mlw-experiment-pruned")).to_have_text([f"{pruned} pruned"] if pruned else [])

        models = panel.locator("#mlw-section-models")
        model = models.locator('.mlw-model[data-model="credit_default"]')
        expect(models.locator(".mlw-model")).to_have_count(1, timeout=load)
        expect(model.locator(".mlw-model-name")).to_have_text("credit_default")
        expect(model.locator(".mlw-model-aliases .mlw-alias")).to_have_text(["candidate v1"])
        expect(model.locator(".mlw-model-count")).to_have_text("2 versions")
        versions = model.locator(".mlw-version")
        expect(versions).to_have_count(2)
        expect(versions.nth(0)).to_have_attribute("data-version", "2")  # newest first
        expect(versions.nth(0).locator(".mlw-badge")).to_have_text(["rejected"])
        expect(versions.nth(1).locator(".mlw-badge")).to_have_text(["passed", "candidate"])
        expect(versions.nth(1).locator(".mlw-alias-candidate")).to_be_visible()
        models.scroll_into_view_if_needed()
        shot(page, "lab-sidebar-models")

        # The registry and the search change; `mlw:refresh-models` and `mlw:refresh-experiments`, from the palette, show it.
        ws = Workspace.open(recorded_ws.root)
        try:
            promote(ws, "credit_default", 1, "staging", who="alice", reason="integration tests next")
            search(ws, dataclasses.replace(m.exp, trials=7), data=m.loans, progress=False)  # one more trial: a resumed search
        finally:
            ws.close()
        expect(model.locator(".mlw-model-aliases .mlw-alias")).to_have_text(["candidate v1"])  # nothing polls
        for label in ("Refresh Models", "Refresh Experiments"):
            self._run_command(page, label)
        expect(model.locator(".mlw-model-aliases .mlw-alias")).to_have_text(["candidate v1", "staging v1"], timeout=load)
        expect(versions.nth(1).locator(".mlw-badge")).to_have_text(["passed", "candidate", "staging"])
        expect(x.locator(".mlw-experiment-trials")).to_have_text("7 trials", timeout=load)
        expect(x.locator(".mlw-badge")).to_have_text("finished")
