"""Click-through from the JupyterLab sidebar: a run's step opens its executed notebook in JupyterLab; a dataset, feature
view, experiment or model opens its page of the dashboards (`mlw dashboards`) in a new tab, or, when the dashboards are
not running, a notification says how to start them; and the first launch of JupyterLab shows the sidebar.

Headless Chromium against a real `jupyter lab` (its own, fresh config and data folders, a root folder that does not
hold the workspace) and, for the dashboards, a real `mlw dashboards` on the same workspace. The REST routes behind it
(`notebook`, `dashboards`) are also called through pytest-jupyter's `jp_fetch`.
"""
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from conftest import free_port
# pytest-jupyter's fixtures (jp_fetch...) for this module only, then test_extension's loop fixture over its own.
from pytest_jupyter.jupyter_server import *  # noqa: E402,F403
from test_extension import BrowserOnly, _wait_until_up, fetch, jp_asyncio_loop, recorded_ws  # noqa: F401,E402  (fixtures)

LOAD = 60_000  # ms Playwright may wait for JupyterLab, a REST call or a dashboards page


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- the routes, through jp_fetch

@pytest.fixture(scope="module")
def dash_port():
    "The port the dashboards are configured at; `mlw dashboards` runs there only inside `dashboards`."
    return free_port()


@pytest.fixture
def jp_server_config(recorded_ws, dash_port):
    return Config({"ServerApp": {"jpserver_extensions": {"mlops_workbench_lab": True}},
                   "MLWLab": {"workspace": str(recorded_ws.root), "dashboards_url": f"http://127.0.0.1:{dash_port}/"}})


def test_dashboards_route_says_where_and_whether_they_run(fetch, dash_port):
    r = fetch("mlops-workbench", "dashboards")
    assert r.code == 200
    assert json.loads(r.body) == {"url": f"http://127.0.0.1:{dash_port}", "running": False}  # trailing slash dropped
    with socket.socket() as s:  # something listening there: running
        s.bind(("127.0.0.1", dash_port))
        s.listen()
        assert json.loads(fetch("mlops-workbench", "dashboards").body)["running"] is True


def test_notebook_route_copies_a_step_notebook_from_outside_the_root(fetch, recorded_ws, jp_root_dir):
    run = recorded_ws.ok
    step = next(s for s in run.steps if s.name == "train")
    r = fetch("mlops-workbench", "notebook", params={"run": run.id, "step": "train"})
    assert r.code == 200, r.body
    body = json.loads(r.body)
    name = Path(step.notebook).name
    assert body == {"path": f"mlw-runs/{run.id}/{name}", "copied": True, "notebook": step.notebook}
    copy = Path(jp_root_dir) / body["path"]
    assert copy.read_bytes() == Path(step.notebook).read_bytes()
    assert not os.access(copy, os.W_OK) or os.geteuid() == 0  # read-only (root may write anyway)
    assert copy.stat().st_mode & 0o222 == 0
    # Asked again: the same copy, nothing left behind (no temporary files).
    assert json.loads(fetch("mlops-workbench", "notebook", params={"run": run.id, "step": "train"}).body)["path"] == body["path"]
    assert sorted(p.name for p in copy.parent.iterdir()) == [name]


@pytest.mark.parametrize("params, status, error, words", [
    ({"run": "nope", "step": "train"}, 404, "NotFound", "run 'nope' not found"),
    ({"step": "train"}, 400, "InvalidInput", "'run' and 'step' are required"),
    ({"run": "OK", "step": "nope"}, 404, "NotFound", "has no step 'nope'; its steps: prepare, train"),
    ({"run": "BAD", "step": "report"}, 404, "NotFound", "step 'report' of run BAD has no executed notebook (it skipped"),
])
def test_notebook_route_refuses_clearly(fetch, recorded_ws, params, status, error, words):
    ids = {"OK": recorded_ws.ok.id, "BAD": recorded_ws.bad.id}
    params = {k: ids.get(v, v) for k, v in params.items()}
    words = words.replace("BAD", recorded_ws.bad.id)
    r = fetch("mlops-workbench", "notebook", params=params)
    body = json.loads(r.body)
    assert (r.code, body["error"]) == (status, error), body
    assert words in body["message"]


def test_notebook_inside_the_root_opens_in_place(tmp_path):
    "A workspace under JupyterLab's root: the notebook's own path, no copy."
    from mlops_workbench_lab.handlers import contents_path
    nb = tmp_path / "workspace" / "runs" / "r1" / "train.ipynb"
    nb.parent.mkdir(parents=True)
    nb.write_text("{}")
    assert contents_path(nb, tmp_path, "mlw-runs", "r1") == ("workspace/runs/r1/train.ipynb", False)
    assert not (tmp_path / "mlw-runs").exists()


def test_a_copy_dir_outside_the_root_is_refused(tmp_path):
    from mlops_workbench.core.errors import InvalidInput
    from mlops_workbench_lab.handlers import contents_path
    nb = tmp_path / "ws" / "train.ipynb"
    nb.parent.mkdir()
    nb.write_text("{}")
    (tmp_path / "root").mkdir()
    with pytest.raises(InvalidInput, match="runs_copy_dir '../elsewhere' leaves JupyterLab's root"):
        contents_path(nb, tmp_path / "root", "../elsewhere", "r1")
    assert not (tmp_path / "elsewhere").exists()


# ---------------------------------------------------------------- in a browser

@pytest.fixture(scope="module")
def fresh_lab(recorded_ws, dash_port, tmp_path_factory):
    """A real `jupyter lab` as a first-time user starts it: empty config, data and runtime folders (no saved layout, no
    settings), a root folder apart from the workspace, and the dashboards configured at `dash_port`."""
    home = tmp_path_factory.mktemp("fresh-lab")
    (home / "root").mkdir()
    labconfig = home / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(json.dumps(  # the news-consent toast would cover the screenshots
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
             f"--ServerApp.root_dir={home / 'root'}", f"--MLWLab.workspace={recorded_ws.root}",
             f"--MLWLab.dashboards_url=http://127.0.0.1:{dash_port}"],
            cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(proc, f"{url}/api/status", token, log_path)
        yield SimpleNamespace(url=url, token=token, log=log_path, root=home / "root")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def dashboards(recorded_ws, dash_port, tmp_path):
    "A real `mlw dashboards` on the workspace at `dash_port`, stopped after the test."
    mlw = Path(sys.executable).with_name("mlw")
    log_path = tmp_path / "dashboards.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(mlw), "dashboards", "--port", str(dash_port), "--workspace", str(recorded_ws.root)],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        give_up = time.monotonic() + 180  # a start-up wait, not a timing assertion
        while not _listening(dash_port):
            if proc.poll() is not None:
                pytest.fail(f"mlw dashboards exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > give_up:
                pytest.fail(f"mlw dashboards did not listen within 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield f"http://127.0.0.1:{dash_port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class TestClickThrough(BrowserOnly):

    def test_first_launch_shows_the_sidebar_and_later_launches_keep_the_layout(self, fresh_lab, page, shot):
        """The first visit to a fresh JupyterLab shows the MLOps Workbench sidebar, loaded, with no click. A later visit
        restores the layout the user left: here the file browser, chosen after the first visit."""
        from playwright.sync_api import expect
        page.goto(f"{fresh_lab.url}/lab?token={fresh_lab.token}")
        panel = page.locator("#mlw-sidebar")
        expect(panel).to_be_visible(timeout=LOAD)
        tab = page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="mlw-sidebar"]')
        expect(tab).to_have_class(re.compile(r"\blm-mod-current\b"))
        expect(panel.locator("#mlw-section-runs .mlw-run")).to_have_count(2, timeout=LOAD)  # loaded, since shown
        expect(page.locator(".jp-Launcher")).to_be_visible(timeout=LOAD)
        shot(page, "lab-first-launch")

        page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="filebrowser"]').click()
        expect(page.locator("#filebrowser")).to_be_visible()
        expect(panel).to_be_hidden()
        time.sleep(2)  # let JupyterLab save the layout (it debounces): the wait of a user, not a timing assertion
        page.reload()
        expect(page.locator("#filebrowser")).to_be_visible(timeout=LOAD)
        expect(page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="filebrowser"]')).to_have_class(
            re.compile(r"\blm-mod-current\b"))
        expect(panel).to_be_hidden()

    def _sidebar(self, page, lab):
        "JupyterLab with a fresh layout (`?reset`): the sidebar shows by itself, as on a first launch."
        from playwright.sync_api import expect
        page.goto(f"{lab.url}/lab?reset&token={lab.token}")
        panel = page.locator("#mlw-sidebar")
        expect(panel).to_be_visible(timeout=LOAD)
        expect(page.locator(".jp-Launcher")).to_be_visible(timeout=LOAD)
        return panel

    def test_a_step_opens_its_executed_notebook(self, fresh_lab, recorded_ws, page, shot):
        from playwright.sync_api import expect
        panel = self._sidebar(page, fresh_lab)
        run = recorded_ws.ok
        item = panel.locator(f'.mlw-run[data-run-id="{run.id}"]')
        item.locator(".mlw-run-summary").click(timeout=LOAD)
        notebooks = {s.name: Path(s.notebook).name for s in run.steps}

        # A click on the step `train` opens its executed notebook in a tab of the main area.
        button = item.locator('.mlw-step[data-step="train"] .mlw-step-open')
        expect(button).to_have_attribute("aria-label", f"Open the executed notebook of step train ({notebooks['train']})")
        button.click()
        tab = page.locator(".jp-MainAreaWidget-ContainerTabBar .lm-TabBar-tab.lm-mod-current, #jp-main-dock-panel .lm-TabBar-tab.lm-mod-current")
        expect(tab.locator(".lm-TabBar-tabLabel").first).to_have_text(notebooks["train"], timeout=LOAD)
        notebook = page.locator(".jp-NotebookPanel:visible")
        expect(notebook.locator(".jp-Cell").first).to_be_visible(timeout=LOAD)
        # It is the executed notebook: its recorded output (`score` from rows = 20) is there.
        expect(notebook.locator(".jp-Cell")).not_to_have_count(0)
        expect(notebook).to_contain_text("record_output('score', rows / 100)")
        assert (fresh_lab.root / "mlw-runs" / run.id / notebooks["train"]).is_file()  # the read-only copy opened
        shot(page, "lab-step-notebook")

        # The keyboard works too: Tab onto the step `prepare` and press Enter.
        prepare = item.locator('.mlw-step[data-step="prepare"] .mlw-step-open')
        prepare.focus()
        page.keyboard.press("Enter")
        expect(tab.locator(".lm-TabBar-tabLabel").first).to_have_text(notebooks["prepare"], timeout=LOAD)

        # A step that never ran has no notebook: no button.
        bad = panel.locator(f'.mlw-run[data-run-id="{recorded_ws.bad.id}"]')
        bad.locator(".mlw-run-summary").click()
        expect(bad.locator('.mlw-step[data-step="report"]')).to_be_visible()
        expect(bad.locator('.mlw-step[data-step="report"] .mlw-step-open')).to_have_count(0)
        expect(bad.locator('.mlw-step[data-step="divide"] .mlw-step-open')).to_have_count(1)
        assert page.offsite == []

    def test_items_open_their_dashboard_pages(self, fresh_lab, dashboards, page, shot):
        from playwright.sync_api import expect
        panel = self._sidebar(page, fresh_lab)
        ctx = page.context

        def opens(link, path):
            "Click `link`: a new page opens at the dashboards' `path`; returns it."
            with ctx.expect_page(timeout=LOAD) as popup:
                link.click()
            new = popup.value
            new.wait_for_url(re.compile(".*"), wait_until="commit", timeout=LOAD)
            assert new.url == f"{dashboards}{path}", new.url
            return new

        dataset = panel.locator('.mlw-dataset[data-dataset="applications"] .mlw-item-link')
        expect(dataset).to_have_attribute("aria-label", "Open dataset applications in the Data quality dashboard", timeout=LOAD)
        expect(dataset).to_have_attribute("href", f"{dashboards}/data-quality?dataset=applications")
        quality = opens(dataset, "/data-quality?dataset=applications")
        expect(quality.get_by_text("applications").first).to_be_visible(timeout=LOAD)
        quality.wait_for_timeout(3000)  # let the page's figures draw for the screenshot (not an assertion)
        shot(quality, "lab-dataset-dashboard")
        quality.close()

        view = panel.locator(".mlw-feature-view").first
        name = view.get_attribute("data-view", timeout=LOAD)
        opens(view.locator(".mlw-item-link"), f"/features?view={name}").close()

        model = panel.locator(".mlw-model").first
        name = model.get_attribute("data-model", timeout=LOAD)
        opens(model.locator(".mlw-item-link").first, f"/model-quality?model={name}").close()
        version = model.locator(".mlw-version").first
        number = version.get_attribute("data-version")
        opens(version.locator(".mlw-item-link"), f"/model-quality?model={name}&version={number}").close()

        experiment = panel.locator(".mlw-experiment").first
        name = experiment.get_attribute("data-experiment", timeout=LOAD)
        # The keyboard: focus the link and press Enter.
        with ctx.expect_page(timeout=LOAD) as popup:
            experiment.locator(".mlw-item-link").focus()
            page.keyboard.press("Enter")
        popup.value.wait_for_url(re.compile(".*"), wait_until="commit", timeout=LOAD)
        assert popup.value.url == f"{dashboards}/experiments?experiment={name}"
        popup.value.close()

        # An alert on a dataset links to that dataset's page.
        alert = panel.locator(".mlw-open-alert").filter(has_text="dataset:applications").first
        expect(alert.locator(".mlw-item-link")).to_have_attribute("href", f"{dashboards}/data-quality?dataset=applications")
        shot(page, "lab-sidebar-links")

    def test_without_the_dashboards_a_click_says_how_to_start_them(self, fresh_lab, dash_port, page, shot):
        from playwright.sync_api import expect
        assert not _listening(dash_port), "nothing may listen at the dashboards' port in this test"
        panel = self._sidebar(page, fresh_lab)
        opened = []
        page.context.on("page", lambda p: opened.append(p))
        panel.locator('.mlw-dataset[data-dataset="applications"] .mlw-item-link').click(timeout=LOAD)
        toast = page.locator(".jp-Notification-Toast-warning, .Toastify__toast").filter(has_text="mlw dashboards")
        expect(toast).to_be_visible(timeout=LOAD)
        expect(toast).to_contain_text(f"The dashboards are not running at http://127.0.0.1:{dash_port}: start them with `mlw dashboards`, then click dataset applications again.")
        expect(toast.get_by_role("button", name="Open anyway")).to_be_visible()
        expect(toast).to_be_in_viewport(ratio=1, timeout=LOAD)  # slid in, for the screenshot
        shot(page, "lab-dashboards-not-running")
        assert opened == []  # no dead tab was opened
