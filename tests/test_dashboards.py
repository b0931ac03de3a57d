"""The dashboards in a browser: the Panel app and the Voila pipeline run report, served for real (as `mlw dashboards`,
`panel serve dashboards/app.py` and `voila` run them) on a workspace holding runs made by the real pipeline runner.

Every page must load with zero requests leaving loopback (`page.offsite`): offline users get whole pages, and a stray
CDN link cannot hang one. Waits are Playwright waits, never timed assertions; Voila starts a kernel per page load, so
its waits are generous.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT, free_port

LONG = 120_000  # ms: Voila starts a kernel and runs the notebook before the page is whole; 2 shared cores are slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "A workspace with two real runs: `daily` (prep -> report) succeeded; `training` failed in `train` (1 / 0), skipping `after`."
    from mlops_workbench.core import Workspace
    from mlops_workbench.pipelines.runner import PipelineSpec, make_notebook, run_pipeline
    d = tmp_path_factory.mktemp("dashboards")
    ws = Workspace.init(d / "ws")
    prep = make_notebook(d / "prep.ipynb", "rows = 3", "print(f'prepared {rows} rows')")
    train = make_notebook(d / "train.ipynb", "alpha = 0.5", "print('training with alpha', alpha)", "1 / 0")
    ok = run_pipeline(ws, PipelineSpec.from_dict({"name": "daily", "steps": {
        "prep": {"notebook": str(prep)}, "report": {"notebook": str(prep), "depends_on": ["prep"]}}}), progress=False)
    bad = run_pipeline(ws, PipelineSpec.from_dict({"name": "training", "steps": {
        "prep": {"notebook": str(prep)}, "train": {"notebook": str(train), "depends_on": ["prep"]},
        "after": {"notebook": str(prep), "depends_on": ["train"]}}}), progress=False)
    assert (ok.status, bad.status) == ("succeeded", "failed")
    yield SimpleNamespace(ws=ws, ok=ok, bad=bad, dir=d)
    ws.close()


def _serve(argv, env, port, log: Path):
    "Start a server in its own process group and wait until its port accepts connections."
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None: pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError: time.sleep(0.3)
    _stop(proc)
    pytest.fail(f"server did not open port {port}:\n{log.read_text()[-3000:]}")


def _stop(proc):
    "Stop a server and everything it started (Voila's kernels) by its process group."
    try: os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError: return
    try: proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL); proc.wait()


@pytest.fixture(scope="module")
def dashboards(runs):
    "The dashboards as `mlw dashboards` serves them: `serve_dashboards` in a process of its own."
    port = free_port()
    code = ("import sys; from mlops_workbench.core import Workspace; from mlops_workbench.ui import serve_dashboards; "
            "serve_dashboards(Workspace.open(sys.argv[1]), port=int(sys.argv[2]))")
    proc = _serve([sys.executable, "-c", code, str(runs.ws.root), str(port)], dict(os.environ), port, runs.dir / "panel.log")
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


@pytest.fixture(scope="module")
def voila(runs):
    "The Voila pipeline run report, started with the command `voila_command` builds (local assets only)."
    from mlops_workbench.ui import voila_command
    port = free_port()
    argv, env = voila_command("pipeline_run", port=port, ws=runs.ws)
    proc = _serve(argv, env, port, runs.dir / "voila.log")
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


def _fit_viewport(page):
    "Grow the viewport to the tallest scroll area: Panel's templates scroll inside #main, so a full-page shot needs it."
    h = page.evaluate("() => Math.max(...Array.from(document.querySelectorAll('*'), e => e.scrollHeight))")
    page.set_viewport_size({"width": 1400, "height": min(h + 100, 8000)})
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # laid out anew


def _notebook(page):
    "The executed-notebook iframe of the Pipelines page."
    return page.frame_locator("iframe[title='executed notebook']")


def test_pipelines_page(dashboards, runs, page, shot):
    ok, bad = runs.ok, runs.bad
    page.goto(f"{dashboards}/pipelines")
    # the recent runs, newest (the failed one) selected
    for rid in (bad.id, ok.id): page.get_by_text(rid, exact=True).first.wait_for()
    page.get_by_text(f"Run {bad.id}").wait_for()
    # its steps with their statuses, and the failing cell's error
    for text in ("train", "after", "skipped", "ZeroDivisionError in cell 2: division by zero"):
        page.get_by_text(text, exact=True).first.wait_for()
    page.get_by_text("1 / 0", exact=True).wait_for()  # the failing cell's source, under Errors
    page.locator("canvas").first.wait_for()  # the Bokeh timeline of the steps
    # the failing step's executed notebook with its real output and traceback
    _notebook(page).get_by_text("training with alpha 0.5").wait_for(timeout=60_000)
    _notebook(page).get_by_text("ZeroDivisionError").first.wait_for()
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-pipelines")

    # select the succeeded run: its steps, and its first step's notebook
    page.get_by_text(ok.id, exact=True).first.click()
    page.get_by_text(f"Run {ok.id}").wait_for()
    page.get_by_text("report", exact=True).first.wait_for()
    _notebook(page).get_by_text("prepared 3 rows").wait_for(timeout=60_000)
    # select a step: its notebook replaces the first one
    page.get_by_text("report", exact=True).first.click()
    page.get_by_text("Executed notebook of step report").wait_for()
    assert page.offsite == []


def test_pipelines_page_errors_are_alerts(dashboards, runs, page):
    page.goto(f"{dashboards}/pipelines?run=20260101-000000-nope00")
    page.get_by_text("run '20260101-000000-nope00' not found").wait_for()
    page.get_by_text(runs.bad.id, exact=True).first.wait_for()  # the run list is still there to pick from
    # a deleted executed notebook is an alert where the notebook would be
    nb = Path(runs.ok.step("report").notebook)
    nb.rename(nb.with_suffix(".moved"))
    try:
        page.goto(f"{dashboards}/pipelines?run={runs.ok.id}")
        page.get_by_text("report", exact=True).first.click()
        page.get_by_text("executed notebook of step 'report'").wait_for()
        page.get_by_text("is missing").wait_for()
    finally: nb.with_suffix(".moved").rename(nb)
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_stage_pages_and_navigation(dashboards, runs, page):
    page.goto(dashboards)  # the root is the pipelines page
    page.get_by_text(f"Run {runs.bad.id}").wait_for()
    page.get_by_role("link", name="Monitoring").click()
    page.wait_for_url("**/monitoring")
    page.get_by_text("Not built yet.").wait_for()
    page.get_by_text("Data, prediction and concept drift").wait_for()
    page.get_by_role("link", name="Pipelines").click()
    page.wait_for_url("**/pipelines")
    page.get_by_text(f"Run {runs.bad.id}").wait_for()
    page.goto(f"{dashboards}/?page=bogus")
    page.get_by_text("there is no dashboard page 'bogus'").wait_for()
    assert page.offsite == []


def test_panel_serve_app_py(runs, browser):
    "`panel serve dashboards/app.py` serves the same pages; every session gets fresh state."
    port = free_port()
    env = dict(os.environ, MLW_HOME=str(runs.ws.root))
    proc = _serve([str(Path(sys.executable).parent / "panel"), "serve", "dashboards/app.py", "--port", str(port),
                   "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"], env, port, runs.dir / "app.log")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        first, second = ctx.new_page(), ctx.new_page()
        first.goto(f"http://127.0.0.1:{port}/app")
        first.get_by_text(f"Run {runs.bad.id}").wait_for(timeout=60_000)
        first.get_by_text(runs.ok.id, exact=True).first.click()
        first.get_by_text(f"Run {runs.ok.id}").wait_for()
        second.goto(f"http://127.0.0.1:{port}/app")  # a new session opens on the newest run, not on first's choice
        second.get_by_text(f"Run {runs.bad.id}").wait_for(timeout=60_000)
        second.get_by_role("link", name="Security").click()  # one script, one path: pages by ?page=
        second.wait_for_url("**/app?page=security")
        second.get_by_text("Not built yet.").wait_for()
    finally:
        ctx.close()
        _stop(proc)


def test_voila_pipeline_run(voila, runs, page, shot):
    bad = runs.bad
    page.goto(f"{voila}/?run={bad.id}", timeout=LONG)
    page.get_by_text("ZeroDivisionError in cell 2: division by zero").first.wait_for(timeout=LONG)
    page.get_by_text(f"Run {bad.id}").wait_for()
    for step in ("prep", "train", "after"): page.get_by_role("cell", name=step, exact=True).first.wait_for()
    page.get_by_text("not started (skipped)").wait_for()  # the timeline
    page.get_by_text("1 / 0", exact=True).wait_for()  # the failing cell's source
    page.get_by_role("link", name=runs.ok.id).wait_for()  # the recent runs, as links
    assert "Traceback" not in page.inner_text("body")
    _fit_viewport(page)
    shot(page, "voila-pipeline-run")
    assert page.offsite == []


def test_voila_unknown_run_is_an_alert(voila, page):
    page.goto(f"{voila}/?run=20260101-000000-nope00", timeout=LONG)
    alert = page.get_by_role("alert").filter(has_text="run '20260101-000000-nope00' not found")
    alert.wait_for(timeout=LONG)
    assert "Traceback" not in page.inner_text("body")
    assert page.offsite == []
