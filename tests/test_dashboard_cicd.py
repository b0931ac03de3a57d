"""The CI/CD dashboard page, and the Pipelines page's durations over time, in a browser: served for real (as `mlw
dashboards` serves them) on a workspace where real `mlw ci` runs happened.

The world is `test_cicd_ci.py`'s: the jobs world (`toy.jobs_world`: a regression target, no id column, text site codes
with nulls as the feature key, visit days as strings) whose model `job_duration` is the sample project's
(tests/ci_project) candidate, and the demo credit world (binary, integer ids, real timestamps). The sample project, a
git checkout here so runs record their commit, goes through `mlw ci run` twice as a CI system calls it: every stage
passes, then a blocking rule on the null site codes stops the second run at its data stage (the notebooks stage of
both runs the project's notebooks through the pipeline runner, so the Pipelines page has a history to chart). A third
run checks the credit world's data and model (another project). `job_duration` v1 is built (`build_artifacts`), and
the deployment manager records a promotion to staging and a production deployment rolled back. Waits are Playwright
waits, never timed assertions; screenshots go to test-output/screenshots/dashboards-cicd-*.png.
"""
import base64
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import free_port
from test_dashboards import FIGURES_JS, _fit_viewport, _stop, serve_workspace
from toy import jobs_world

LOAD = 60_000  # ms: a Panel page starts in seconds, but 2 shared cores are slow
PROJECT = Path(__file__).resolve().parent / "ci_project"
BIN = Path(sys.executable).parent  # where `mlw` is installed
UTC = dt.timezone.utc
warnings.filterwarnings("ignore", category=UserWarning)


def _mlw(*args, ws, cwd):
    return subprocess.run([str(BIN / "mlw"), *args], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "MLW_HOME": str(ws.root)})


def _git(project: Path, message: str) -> str:
    "Commit the project as it is; its commit id."
    g = lambda *a: subprocess.run(["git", "-C", str(project), "-c", "user.name=dev", "-c", "user.email=dev@example.com", *a],
                                  check=True, capture_output=True, text=True).stdout.strip()
    if not (project / ".git").exists(): g("init", "-q")
    g("add", "-A"); g("commit", "-q", "-m", message)
    return g("rev-parse", "HEAD")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "The workspace of the module docstring, and the dashboards served on it."
    from mlops_workbench.cicd.artifacts import build_artifacts
    from mlops_workbench.cicd.ci import list_ci_runs, run_ci
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.data.rules import RuleSet, lending_application_rules
    from mlops_workbench.deploy import deployments as dep
    from mlops_workbench.experiments.definition import demo_experiment
    from mlops_workbench.features.online import materialize
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import validate_model
    from mlops_workbench.registry.versions import register_model
    from mlops_workbench.training.fit import train
    d = tmp_path_factory.mktemp("cicd")
    ws = Workspace.init(d / "ws")
    try:
        jobs_world(ws, base=dt.datetime.now(UTC) - dt.timedelta(days=200))
        materialize(ws, "site_stats")
        exp = demo_experiment(ws, n_applications=1500)
        run = train(ws, exp, {"num_leaves": 7, "n_estimators": 20}, run_name="credit").run_id
        register_model(ws, run, "credit_default", validate_model(ws, run, default_gates("binary")), who="test")
        project = Path(shutil.copytree(PROJECT, d / "project"))
        first = _git(project, "the sample project")
        p = _mlw("ci", "run", "--who", "dev", "--no_notify", ws=ws, cwd=project)
        assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
        green = list_ci_runs(ws, limit=1)[0]
        rules = yaml.safe_load((project / "rules/jobs.yaml").read_text())
        rules["rules"][-1]["policy"] = "block"  # nulls in the text key now block
        (project / "rules/jobs.yaml").write_text(yaml.safe_dump(rules))
        second = _git(project, "block null site codes")
        p = _mlw("ci", "run", "--who", "dev", "--no_notify", ws=ws, cwd=project)
        assert p.returncode == 1, (p.stdout[-3000:], p.stderr[-3000:])
        red = list_ci_runs(ws, limit=1)[0]
        rs = RuleSet("applications", [r for r in lending_application_rules() if r.kind not in ("freshness", "expression")])
        (project / "credit.yaml").write_text(yaml.safe_dump({"project": "credit-default", "stages": {
            "data": {"datasets": [{"name": "applications", "rules": rs.to_dict()}]},
            "model": {"model": "credit_default@candidate", "gates": [{"kind": "metric_threshold", "metric": "auc", "min": 0.6}]}}}))
        credit = run_ci(ws, project / "credit.yaml", who="ci-bot", notify=False)
        assert (green.outcome, red.outcome, credit.outcome) == ("passed", "failed", "passed")
        assert (green.git_commit, red.git_commit) == (first, second)
        build = build_artifacts(ws, "job_duration/1", d / "build", who="dev")
        staged = dep.start_deployment(ws, "job_duration/1", "staging", who="dev")
        for s in ("staging", "testing", "rolling_out"): dep.transition_deployment(ws, staged.id, s, who="dev")
        staged = dep.finish_deployment(ws, staged.id, who="dev")
        prod = dep.start_deployment(ws, "credit_default/1", "production", who="dev")
        for s in ("staging", "testing", "rolling_out"): dep.transition_deployment(ws, prod.id, s, who="dev")
        back = dep.rollback(ws, "production", who="ops", reason="acceptance failed after staging: p99 410 ms over the SLO's 250 ms")
        port = free_port()
        proc = serve_workspace(ws.root, port, d / "panel.log")
        try: yield SimpleNamespace(ws=ws, green=green, red=red, credit=credit, build=build, staged=staged, back=back, url=f"http://127.0.0.1:{port}")
        finally: _stop(proc)
    finally:
        ws.close()


def _table(page, field):
    "The Tabulator table that has a column `field`."
    return page.locator(".tabulator").filter(has=page.locator(f'[tabulator-field="{field}"]'))


def _figure_data(page, title_start: str, renderer: str, keys: list[str]) -> dict:
    "The data of renderer `renderer` of the Bokeh figure whose title starts with `title_start`, as the browser holds it, once it is drawn."
    js = f"""() => {{ const f = ({FIGURES_JS})().find(m => m.title.text.startsWith({title_start!r}));
        const r = f && f.renderers.find(r => r.name == {renderer!r});
        if (!r) return null;
        const d = r.data_source.data, get = k => Array.from(d instanceof Map ? d.get(k) : d[k]);
        return {{title: f.title.text, renderers: f.renderers.map(r => r.name).filter(n => n), {", ".join(f"{k!r}: get({k!r})" for k in keys)}}}; }}"""
    page.wait_for_function(js, timeout=LOAD)
    return page.evaluate(js)


def _no_trouble(page):
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_cicd_page_lists_the_runs_and_opens_the_failing_one(world, page, shot):
    from playwright.sync_api import expect
    w = world
    page.goto(f"{w.url}/ci-cd")
    runs = _table(page, "failing stage")
    rows = runs.locator(".tabulator-row")
    expect(rows).to_have_count(3, timeout=LOAD)
    want = [(w.credit, "passed", "credit-default", "ci-bot", "", "2 of 2 passed"), (w.red, "failed", "job-duration", "dev", "data", "2 of 5 passed"),
            (w.green, "passed", "job-duration", "dev", "", "5 of 5 passed")]
    for i, (run, outcome, project, who, failing, stages) in enumerate(want):
        row = rows.nth(i)
        for field, text in (("id", str(run.id)), ("outcome", outcome), ("project", project), ("kind", "checks"), ("who", who),
                            ("failing stage", failing), ("stages", stages), ("commit", (run.git_commit or "")[:10])):
            expect(row.locator(f'[tabulator-field="{field}"]')).to_have_text(text)
    # the newest run opens first
    page.get_by_role("heading", name=f"Run {w.credit.id} of credit-default").wait_for(timeout=LOAD)
    # the failing run, clicked: its failing stage, case and message
    rows.nth(1).locator('[tabulator-field="project"]').click()
    page.get_by_role("heading", name=f"Run {w.red.id} of job-duration").wait_for(timeout=LOAD)
    data = w.red.stage("data")
    [bad] = [c for c in data.cases if c.outcome == "failed"]
    assert bad.name.endswith("site_code_not_null") and "are null" in bad.message
    page.get_by_text(f"stage data failed: {data.detail['message']}").wait_for()
    page.get_by_role("cell", name=bad.name, exact=True).wait_for()
    page.get_by_role("cell", name=bad.message, exact=True).first.wait_for()
    page.get_by_text(f"data: {bad.name}: {bad.message}").wait_for()  # its story, folded
    for stage, outcome in [(s.stage, s.outcome) for s in w.red.stages]:
        page.get_by_role("row", name=re.compile(rf"^{stage} {outcome}\b")).first.wait_for()
    # the stage-duration chart holds exactly the records' durations, on the run's clock
    chart = _figure_data(page, f"Stage durations of run {w.red.id}", "stages", ["stage", "outcome", "start_s", "duration_s"])
    ran = [s for s in w.red.stages if s.started_at is not None]
    assert [s.stage for s in ran] == ["unit", "notebooks", "data"]
    assert chart["stage"] == [s.stage for s in ran] and chart["outcome"] == ["passed", "passed", "failed"]
    assert chart["duration_s"] == pytest.approx([s.duration_s for s in ran], rel=1e-9)
    assert chart["start_s"] == pytest.approx([(s.started_at - w.red.started_at).total_seconds() for s in ran], rel=1e-9)
    # its JUnit XML, downloadable from the page, is the file the run wrote
    link = page.locator('a[download="junit.xml"]')
    href = link.get_attribute("href")
    assert base64.b64decode(href.split(",", 1)[1]) == Path(w.red.junit_path).read_bytes()
    page.get_by_text(w.red.junit_path, exact=True).wait_for()
    page.get_by_text("This run checked no model version").wait_for()  # it stopped before the model stage
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-cicd-failing-run")
    _no_trouble(page)


def test_cicd_page_shows_builds_and_promotions(world, page, shot):
    from playwright.sync_api import expect
    w = world
    page.goto(f"{w.url}/ci-cd?run={w.green.id}")
    page.get_by_role("heading", name=f"Run {w.green.id} of job-duration").wait_for(timeout=LOAD)
    expect(_table(page, "failing stage").locator(".tabulator-row.tabulator-selected")).to_have_count(1)
    # every stage ran; the chart has a bar for each
    chart = _figure_data(page, f"Stage durations of run {w.green.id}", "stages", ["stage", "duration_s"])
    assert chart["stage"] == ["unit", "notebooks", "data", "model", "integration"]
    assert chart["duration_s"] == pytest.approx([s.duration_s for s in w.green.stages], rel=1e-9)
    # the build of the version it checked: every file with its digest, who built it when
    b = w.build
    page.get_by_text(f"job_duration v1 built by dev at {b.built_at[:19].replace('T', ' ')} UTC").wait_for()
    for f in ("bundle.tar.gz", "Dockerfile", "k8s/deployment.yaml"):
        page.get_by_role("row", name=f"{f} {b.files[f]}", exact=True).wait_for()
    # the promotions and rollbacks, newest first, from the deployment manager's records
    page.get_by_role("row", name=re.compile(rf"^deployment {w.back.id} rollback credit_default v1 production rolled_back ops")).wait_for()
    page.get_by_role("row", name=re.compile(rf"^deployment {w.staged.id} promotion job_duration v1 staging succeeded dev")).wait_for()
    page.get_by_role("cell", name=w.back.reason, exact=True).wait_for()
    # the run list, chosen in the select: the credit world's run
    page.locator("select").select_option(label=f"{w.credit.id}: credit-default (passed)")
    page.get_by_role("heading", name=f"Run {w.credit.id} of credit-default").wait_for(timeout=LOAD)
    page.get_by_text("model 'credit_default' v1 has no recorded build", exact=False).wait_for()
    page.goto(f"{w.url}/ci-cd?run={w.green.id}")
    page.get_by_role("heading", name=f"Run {w.green.id} of job-duration").wait_for(timeout=LOAD)
    _figure_data(page, f"Stage durations of run {w.green.id}", "stages", ["stage"])
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-cicd-passing-run")
    _no_trouble(page)


def test_cicd_page_bad_query(world, page):
    page.goto(f"{world.url}/ci-cd?run=latest")
    page.get_by_text("query parameter 'run' is 'latest'; expected a ci run id such as 3").wait_for(timeout=LOAD)
    page.goto(f"{world.url}/ci-cd?run=999")
    page.get_by_text("ci run 999 not found; see mlw ci history").wait_for(timeout=LOAD)
    page.get_by_role("heading", name="Recent runs (select one)").wait_for()  # the list stays
    assert "Traceback" not in page.content()


def test_pipelines_page_charts_durations_over_time(world, page, shot):
    "The notebooks stages ran the project's notebooks as pipeline `ci-job-duration`: the Pipelines page charts both runs."
    from mlops_workbench.pipelines.runner import list_runs
    w = world
    runs = list_runs(w.ws, pipeline="ci-job-duration")[::-1]  # oldest first
    assert [r.id for r in runs] == [w.green.stage("notebooks").detail["pipeline_run"], w.red.stage("notebooks").detail["pipeline_run"]]
    page.goto(f"{w.url}/pipelines?run={runs[-1].id}")
    got = _figure_data(page, "Durations over time: ci-job-duration", "runs", ["run", "status", "duration_s"])
    assert got["title"] == "Durations over time: ci-job-duration (its 2 finished runs)"
    assert got["run"] == [r.id for r in runs] and got["status"] == ["succeeded", "succeeded"]
    assert got["duration_s"] == pytest.approx([r.duration_s for r in runs], rel=1e-9)
    assert sorted(got["renderers"]) == ["runs", "step notebooks_candidate", "step notebooks_explore_jobs"]
    step = _figure_data(page, "Durations over time: ci-job-duration", "step notebooks_candidate", ["run", "duration_s"])
    assert step["run"] == [r.id for r in runs]
    assert step["duration_s"] == pytest.approx([r.step("notebooks_candidate").duration_s for r in runs], rel=1e-9)
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-cicd-pipeline-durations")
    _no_trouble(page)


def test_cicd_page_on_an_empty_workspace(tmp_path, browser, shot):
    "No ci run: the page says how to begin, and lists nothing."
    from mlops_workbench.core.workspace import Workspace
    ws = Workspace.init(tmp_path / "ws")
    port = free_port()
    proc = serve_workspace(ws.root, port, tmp_path / "panel.log")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/ci-cd")
        page.get_by_text(re.compile(r"^No mlw ci runs yet in workspace .*mlw ci init writes a GitHub Actions workflow .* and mlw ci runs them")).wait_for(timeout=LOAD)
        page.get_by_text("No promotions or rollbacks yet").wait_for()
        assert page.locator(".tabulator:visible").count() == 0
        shot(page, "dashboards-cicd-empty")
        assert "Traceback" not in page.content()
    finally:
        ctx.close()
        _stop(proc)
        ws.close()
