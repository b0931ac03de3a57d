"""The dashboards in a browser: the Panel app and the Voila pipeline run report, served for real (as `mlw dashboards`,
`panel serve dashboards/app.py` and `voila` run them) on a workspace holding runs made by the real pipeline runner, and
datasets and feature views made by the real storage, validation and feature store modules.

Every page must load with zero requests leaving loopback (`page.offsite`): offline users get whole pages, and a stray
CDN link cannot hang one. Waits are Playwright waits, never timed assertions; Voila starts a kernel per page load, so
its waits are generous.
"""
import contextlib
import getpass
import os
import re
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
    from mlops_workbench.core.workspace import Workspace
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


def write_quality_data(ws):
    """What a data pipeline leaves behind, made with the real library: two batches of generated loan applications (10%
    of rows defective) each validated against the lending rules, the passed rows written to `applications_validated`,
    the held-back ones to `applications_quarantine`, the report recorded and the version observed (which fires alerts);
    and a `customers` table that was never validated. Returns the recorded reports, oldest first."""
    import datetime as dt
    from mlops_workbench.data.quality import observe
    from mlops_workbench.data.rules import RuleSet, lending_application_rules
    from mlops_workbench.data.validate import validate
    from mlops_workbench.data.synthetic import generate_lending
    from mlops_workbench.core.storage import write_dataset
    data = generate_lending(2_000, bad_share=0.1, start="2025-01-01", end="2025-03-31")
    now = dt.datetime(2025, 4, 1, 6, tzinfo=dt.timezone.utc)
    rules, src = RuleSet("applications", lending_application_rules(), key="application_id"), {"kind": "generated", "location": "generate_lending(2000)"}
    write_dataset(ws, "customers", data.customers, source=src)
    reports = []
    for batch in (data.applications[:1_000], data.applications[1_000:]):
        v = write_dataset(ws, "applications", batch, source=src)
        rep = validate(batch, rules, now=now)
        out = write_dataset(ws, "applications_validated", rep.passed, kind="validated", source={"kind": "validation", "location": "applications"})
        held = write_dataset(ws, "applications_quarantine", rep.quarantined, kind="quarantine", source={"kind": "validation", "location": "applications"})
        rep.record(ws, "applications", v.version, output_version=out.version, quarantine_version=held.version)
        observe(ws, "applications", v.version, time_column="event_timestamp", report=rep, now=now)
        reports.append(rep)
    return reports


@pytest.fixture(scope="module")
def quality(runs):
    "The data a pipeline leaves behind (`write_quality_data`), in the runs' workspace that the servers read."
    from mlops_workbench.alerts import list_alerts
    from mlops_workbench.core.storage import read_dataset
    reports = write_quality_data(runs.ws)
    last = reports[-1]
    worst = max((r for r in last.results if not r.passed), key=lambda r: r.failed)
    held = read_dataset(runs.ws, "applications_quarantine").collect()
    alerts = list_alerts(runs.ws, source="dataset:applications")
    assert last.status == "quarantined" and worst.examples and held.height and alerts
    return SimpleNamespace(ws=runs.ws, report=last, worst=worst, held=held, alerts=alerts)


def write_feature_data(ws):
    """What a feature pipeline leaves behind, made with the real feature store: the demo world's transactions as a dataset;
    a `customer` entity; `customer_spend`, a view with row-level features (polars and SQL) and windowed aggregations; an
    on-demand view on it and a service using both. Version 1 of the view is built and materialized up to the end of 2025,
    then its TTL changes (version 2), which is built and materialized up to now. Returns the builds and materializations,
    oldest first, and the rows of the newest offline table."""
    import datetime as dt
    import polars as pl
    from mlops_workbench.data.synthetic import generate_lending
    from mlops_workbench.features.definitions import Aggregation, Entity, FeatureService, FeatureView, OnDemandFeatureView, apply
    from mlops_workbench.features.offline import build_features
    from mlops_workbench.features.online import materialize
    from mlops_workbench.core.storage import read_dataset, write_dataset
    world = generate_lending(2_000, seed=7)
    write_dataset(ws, "transactions", world.transactions, source={"kind": "demo", "location": "generate_lending(2000, seed=7)"})
    spend = FeatureView("customer_spend", entity="customer", source="transactions", ttl="30d", owner="risk-team",
                        description="what each customer spent, and how often",
                        features={"last_amount": pl.col("amount"), "last_online": pl.col("is_online"), "large": "amount > 1000"},
                        aggregations=[Aggregation("amount", "sum", "7d"), Aggregation("amount", "count", "30d"), Aggregation("amount", "max", "30d")])
    apply(ws, Entity("customer", ["customer_id"]), spend,
          OnDemandFeatureView("application_ratios", sources=["customer_spend"], request={"amount": "float"},
                              features={"amount_to_spend_7d": pl.col("amount") / (pl.col("amount_sum_7d") + 1)}),
          FeatureService("credit_v1", ["customer_spend", "application_ratios"]))
    builds = [build_features(ws, "customer_spend")]
    mats = [materialize(ws, "customer_spend", end=dt.datetime(2025, 12, 31, tzinfo=dt.timezone.utc))]
    apply(ws, FeatureView(**{**vars(spend), "ttl": "60d"}))
    builds.append(build_features(ws, "customer_spend"))
    mats.append(materialize(ws, "customer_spend"))
    assert [m.status for m in mats] == ["complete", "complete"] and [b.view_version for b in builds] == [1, 2]
    table = read_dataset(ws, builds[-1].table, builds[-1].table_version).collect()
    return SimpleNamespace(builds=builds, mats=mats, table=table, features=spend.feature_names)


@pytest.fixture(scope="module")
def features(runs):
    "The feature views a pipeline leaves behind (`write_feature_data`), in the runs' workspace that the servers read."
    return SimpleNamespace(ws=runs.ws, **vars(write_feature_data(runs.ws)))


def write_model_data(ws):
    """What an experiment and the registry leave behind, made with the real library: an optuna search of a LightGBM
    credit-default model (6 trials on 1,200 generated loan applications, each trial an MLflow child run, median pruning),
    the final model trained with the best trial's parameters, validated by the preset gates with the application channel
    as slices and registered as version 1 of `credit_default`, aliased `candidate`; then a misconfigured model (no leaf
    can hold 5,000 rows, so it scores everyone the same) that the gates reject: version 2, never aliased."""
    from mlops_workbench.data.synthetic import generate_lending
    from mlops_workbench.experiments.definition import Experiment, FloatParam, IntParam, TimeSplit
    from mlops_workbench.experiments.search import search
    from mlops_workbench.registry.versions import register_model
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import validate_model
    from mlops_workbench.training.fit import train
    world = generate_lending(1_200, seed=11)
    loans = world.applications.join(world.labels.select("application_id", "defaulted"), on="application_id")
    exp = Experiment("credit_default", target="defaulted", exclude=["application_id", "customer_id"], split=TimeSplit("event_timestamp", valid_size=0.25),
                     search_space={"learning_rate": FloatParam(0.02, 0.3, log=True), "num_leaves": IntParam(4, 32, log=True),
                                   "min_child_samples": IntParam(5, 60, log=True)},
                     params={"num_threads": 1}, num_boost_round=40, trials=6, pruner={"kind": "median", "n_startup_trials": 2, "n_warmup_steps": 5}, seed=7)
    found = search(ws, exp, data=loans, progress=False)
    gates = default_gates("binary", slices=["channel"])
    best = train(ws, exp, data=loans, run_name="best trial")
    report = validate_model(ws, best.run_id, gates)
    v1 = register_model(ws, best.run_id, "credit_default", report, owner="alice", who="alice", reason="best trial of the first search")
    flat = train(ws, exp, {"min_child_samples": 5000}, data=loans, run_name="misconfigured")
    rejected = validate_model(ws, flat.run_id, gates)
    v2 = register_model(ws, flat.run_id, "credit_default", rejected, owner="bob", who="bob")
    assert report.passed and not rejected.passed and (v1.aliases, v2.aliases) == (["candidate"], []), (report.summary(), rejected.summary())
    return SimpleNamespace(exp=exp, loans=loans, search=found, best=best, report=report, v1=v1, flat=flat, rejected=rejected, v2=v2)


@pytest.fixture(scope="module")
def models(runs):
    "The search, models and registry entries an experiment leaves behind (`write_model_data`), in the runs' workspace that the servers read."
    return SimpleNamespace(ws=runs.ws, **vars(write_model_data(runs.ws)))


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

SERVE_DASHBOARDS = ("import sys; from mlops_workbench.core.workspace import Workspace; from mlops_workbench.ui.shell import serve_dashboards; "
                    "serve_dashboards(Workspace.open(sys.argv[1]), port=int(sys.argv[2]))")


def serve_workspace(root, port: int, log: Path):
    "The dashboards on workspace `root`, as `mlw dashboards` serves them, in a process of their own (stop with `_stop`)."
    return _serve([sys.executable, "-c", SERVE_DASHBOARDS, str(root), str(port)], dict(os.environ), port, log)


@contextlib.contextmanager
def dashboards_and_report(ws, report: str, folder: Path):
    "The dashboards and the Voila report `report` (dashboards/voila/REPORT.ipynb) on `ws`, each in a process of its own: their URLs."
    from mlops_workbench.ui.shell import voila_command
    port, vport = free_port(), free_port()
    proc = serve_workspace(ws.root, port, folder / "panel.log")
    try:
        argv, env = voila_command(report, port=vport, ws=ws)
        voila = _serve(argv, env, vport, folder / "voila.log")
        try: yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{vport}"
        finally: _stop(voila)
    finally: _stop(proc)


AGE = r"(\d+\.\d s|\d+ min \d\d s|\d+ h \d\d min|\d+(\.\d)? days)"  # an age as ui.helpers.fmt_duration writes it
FIGURES_JS = "() => window.Bokeh ? Bokeh.documents.flatMap(d => [...d.all_models]).filter(m => m.type == 'Figure') : []"  # a page's Bokeh figures



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
    proc = serve_workspace(runs.ws.root, port, runs.dir / "panel.log")
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


@pytest.fixture(scope="module")
def voila_quality(quality, runs):
    "The Voila data quality report (`voila_command('data_quality')`)."
    from mlops_workbench.ui.shell import voila_command
    port = free_port()
    argv, env = voila_command("data_quality", port=port, ws=quality.ws)
    proc = _serve(argv, env, port, runs.dir / "voila-quality.log")
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


@pytest.fixture(scope="module")
def voila_experiments(models, runs):
    "The Voila experiment comparison report (`voila_command('experiment_comparison')`)."
    from mlops_workbench.ui.shell import voila_command
    port = free_port()
    argv, env = voila_command("experiment_comparison", port=port, ws=models.ws)
    proc = _serve(argv, env, port, runs.dir / "voila-experiments.log")
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


@pytest.fixture(scope="module")
def voila(runs):
    "The Voila pipeline run report, started with the command `voila_command` builds (local assets only)."
    from mlops_workbench.ui.shell import voila_command
    port = free_port()
    argv, env = voila_command("pipeline_run", port=port, ws=runs.ws)
    proc = _serve(argv, env, port, runs.dir / "voila.log")
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


def _fit_viewport(page):
    "Grow the viewport to the tallest scroll area: Panel's templates scroll inside #main, so a full-page shot needs it."
    # (plotly's hidden text-measuring svg, #js-plotly-tester, is 9000 px tall, off screen: not content)
    h = page.evaluate("() => Math.max(...Array.from(document.querySelectorAll('*:not(#js-plotly-tester)'), e => e.scrollHeight))")
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
    page.locator('a.mlw-nav-active[aria-current="page"]', has_text="Monitoring").wait_for()
    page.get_by_role("link", name="Pipelines").click()
    page.wait_for_url("**/pipelines")
    page.get_by_text(f"Run {runs.bad.id}").wait_for()
    page.goto(f"{dashboards}/?page=bogus")
    page.get_by_text("there is no dashboard page 'bogus'").wait_for()
    assert page.offsite == []


def test_data_quality_page(dashboards, quality, page, shot):
    from playwright.sync_api import expect
    from mlops_workbench.alerts import get_alert
    from mlops_workbench.ui.data_quality import example_text
    q, rep = quality, quality.report
    page.goto(f"{dashboards}/data-quality")
    # every dataset, `applications` (validated last) selected, at its latest version
    for name in ("applications_quarantine", "applications_validated", "customers"): page.get_by_text(name, exact=True).first.wait_for()
    page.get_by_text("Validation of applications v1").wait_for()
    def row(name): return page.locator(".tabulator-row", has=page.locator('[tabulator-field="name"]', has_text=re.compile(f"^{name}$")))
    expect(row("applications").locator('[tabulator-field="validation"]')).to_have_text("quarantined")
    expect(row("applications").locator('[tabulator-field="rows"]')).to_have_text("2,000")
    expect(row("applications").locator('[tabulator-field="open alerts"]')).to_have_text(str(len(q.alerts)))
    expect(row("applications_quarantine").locator('[tabulator-field="rows"]')).to_have_text(f"{q.held.height:,}")
    expect(row("applications_validated").locator('[tabulator-field="rows"]')).to_have_text(f"{2_000 - q.held.height:,}")
    for name in ("customers", "applications_validated", "applications_quarantine"):  # no report covers them: never an all-clear
        expect(row(name).locator('[tabulator-field="validation"]')).to_have_text("not validated")
    page.get_by_role("row", name=f"quarantined {rep.rows_quarantined:,} ({100 * rep.rows_quarantined / rep.rows:.3g}%)").wait_for()
    # the rule that failed most, with its message and a failing example
    page.get_by_text(q.worst.name, exact=True).first.wait_for()
    page.get_by_text(q.worst.message, exact=True).wait_for()
    page.get_by_text(example_text(q.worst.examples[0]), exact=True).wait_for()
    page.locator("canvas").first.wait_for()  # the Bokeh trend of the rule failure rates
    # the quarantined rows, a page of them, with the rules each broke
    page.get_by_text(f"Quarantined rows: applications_quarantine v1, {q.held.height:,} rows").wait_for()
    page.get_by_text(f"rows 1-20 of {q.held.height:,} (page 1 of {-(-q.held.height // 20)})").wait_for()
    ids, rules = page.locator('.tabulator-cell[tabulator-field="application_id"]'), page.locator('.tabulator-cell[tabulator-field="_failed_rules"]')
    expect(ids).to_have_count(20)
    shown = ids.all_inner_texts()
    assert set(shown) <= {str(i) for i in q.held["application_id"]}
    assert set(rules.all_inner_texts()) <= {", ".join(r) for r in q.held["_failed_rules"]}
    # the dataset's alerts; acknowledging the newest goes through the library
    newest = q.alerts[0]
    page.get_by_text(newest.message, exact=True).wait_for()
    assert get_alert(q.ws, newest.id).status == "firing"
    page.get_by_role("button", name="Acknowledge").first.click()
    page.get_by_text(f"alert {newest.id} ({newest.title}) acknowledged by").wait_for()
    acknowledged = get_alert(q.ws, newest.id)
    assert (acknowledged.status, acknowledged.acknowledged_by) == ("acknowledged", getpass.getuser())  # the server's user
    assert [a.status for a in q.alerts[1:]] == [get_alert(q.ws, a.id).status for a in q.alerts[1:]]  # only that one
    page.get_by_text("Next", exact=True).click()  # the next page of quarantined rows
    page.get_by_text(f"rows 21-40 of {q.held.height:,} (page 2 of {-(-q.held.height // 20)})").wait_for()
    expect(ids).not_to_have_text(shown)
    assert set(ids.all_inner_texts()) <= {str(i) for i in q.held["application_id"]}  # (a duplicated id may straddle two pages)
    page.get_by_text("Previous", exact=True).click()
    page.get_by_text(f"rows 1-20 of {q.held.height:,}").wait_for()
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-data-quality")
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_data_quality_page_selects_and_reports_problems(dashboards, quality, page):
    page.goto(f"{dashboards}/data-quality?dataset=customers")
    page.get_by_text("customers v0 has no validation report").wait_for()
    page.get_by_text("there is no dataset customers_quarantine").wait_for()
    page.get_by_text("Profile of customers v0").wait_for()  # never validated, still profiled
    page.locator("canvas").first.wait_for()  # (the page drawn before it is clicked)
    page.locator('.tabulator-cell[tabulator-field="name"]').filter(has_text=re.compile(r"^applications$")).click()  # another dataset
    page.get_by_text("Validation of applications v1").wait_for(timeout=60_000)  # its profile and trends are computed and drawn first
    page.locator('.tabulator-cell[tabulator-field="operation"]').filter(has_text="create").click()  # its first version
    page.get_by_text("Validation of applications v0").wait_for()
    page.goto(f"{dashboards}/data-quality?dataset=nope")
    page.get_by_text("dataset 'nope' not found").wait_for()
    page.get_by_text("applications_validated", exact=True).first.wait_for()  # the list is still there to pick from
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_features_page(dashboards, features, page, shot):
    from playwright.sync_api import expect
    from mlops_workbench.ui.features import _stat, feature_view_summaries, view_status, view_versions  # _stat: how the page writes a statistic
    f, (b1, b2), (m1, m2) = features, features.builds, features.mats
    page.goto(f"{dashboards}/features")
    # the views; customer_spend, built last, selected at its latest version
    page.get_by_text("Feature view customer_spend v2").wait_for()
    def row(name): return page.locator(".tabulator-row", has=page.locator('[tabulator-field="name"]', has_text=re.compile(f"^{name}$")))
    spend = row("customer_spend")
    expect(spend.locator('[tabulator-field="version"]')).to_have_text("2")
    expect(spend.locator('[tabulator-field="features"]')).to_have_text(str(len(f.features)))
    expect(spend.locator('[tabulator-field="entity / source"]')).to_have_text(re.compile(r"customer\s*transactions"))
    expect(spend.locator('[tabulator-field="last build"]')).to_contain_text(f"{b2.rows:,} rows")
    # its state as a badge, then its age; past its TTL (60 d after the data's newest event) it is stale, and its complete materialization says so too
    state = view_status({s["name"]: s for s in feature_view_summaries(f.ws)}["customer_spend"])
    expect(spend.locator('[tabulator-field="freshness"]')).to_have_text(re.compile(f"^{state}\\s*{AGE} old$"))
    expect(spend.locator('[tabulator-field="materialization"]')).to_have_text(re.compile(f"{'stale' if state == 'stale' else 'complete'}\\s*{m2.rows:,} rows"))
    expect(spend.locator('[tabulator-field="online up to"]')).to_contain_text("sqlite://")
    expect(row("application_ratios").locator('[tabulator-field="kind"]')).to_have_text("on_demand")
    # what it is and how fresh: the newest build as lineage, what is online, and the definition of each feature
    page.get_by_text(f"build {b2.id} at").wait_for()
    page.get_by_role("row", name=re.compile(f"^online store {'stale' if state == 'stale' else 'complete'} {m2.rows:,} rows into sqlite:")).wait_for()
    for name in f.features: page.get_by_role("cell", name=name, exact=True).first.wait_for()
    for text in ('col("amount")', "amount > 1000", "sum(amount) over the trailing 7d", "count(amount) over the trailing 30d"):
        page.get_by_role("cell", name=text, exact=True).wait_for()
    # statistics of the newest offline table, as polars computes them directly
    page.get_by_text(f"Feature statistics of fv_customer_spend v{b2.table_version}").wait_for()
    for name, kind in (("amount_sum_7d", "Float64"), ("amount_count_30d", "Int64"), ("last_online", "Boolean")):
        t = f.table[name].cast(float)
        page.get_by_role("row", name=f"{name} {kind} {t.count():,} 0% {' '.join(_stat(x) for x in (t.mean(), t.std(), t.min(), t.max()))}", exact=True).wait_for()
    # builds (dataset version read -> table version written) and materializations, newest first
    page.get_by_role("row", name=re.compile(f"^{b2.id} 2 transactions v0 fv_customer_spend v{b2.table_version} {b2.rows:,} ")).wait_for()
    page.get_by_role("row", name=re.compile(f"^{b1.id} 1 transactions v0 fv_customer_spend v{b1.table_version} ")).wait_for()
    page.get_by_role("row", name=re.compile(f"^{m1.id} 1 complete {m1.rows:,} sqlite:.* up to 2025-12-31 00:00:00 ")).wait_for()
    page.get_by_role("cell", name="credit_v1", exact=True).wait_for()  # the service using it
    _fit_viewport(page)
    shot(page, "dashboards-features")

    # another version: its own definition; another view: its own
    page.get_by_text(view_versions(f.ws, "customer_spend")[-1]["hash"][:12], exact=True).click()  # version 1, in the versions table
    page.get_by_text("Definition of v1").wait_for()
    page.get_by_role("row", name="ttl 30d").wait_for()
    row("application_ratios").click()
    page.get_by_text("Feature view application_ratios v1").wait_for()
    page.get_by_role("cell", name="amount_to_spend_7d", exact=True).wait_for()
    page.get_by_text("computed at lookup time from customer_spend").wait_for()
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_features_page_links_and_problems(dashboards, features, page):
    page.goto(f"{dashboards}/features?view=customer_spend&version=1")
    page.get_by_text("Definition of v1").wait_for()
    page.goto(f"{dashboards}/features?view=nope")
    page.get_by_text("feature view 'nope' not found; views: application_ratios, customer_spend").wait_for()
    page.get_by_text("customer_spend", exact=True).first.wait_for()  # the list is still there to pick from
    page.goto(f"{dashboards}/features?view=customer_spend&version=9")
    page.get_by_text("feature view 'customer_spend' has no version 9; its versions: 2, 1").wait_for()
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_features_page_on_an_empty_workspace(tmp_path, browser):
    "A workspace without feature views gets a friendly message saying how to begin, not an error."
    from mlops_workbench.core.workspace import Workspace
    Workspace.init(tmp_path / "ws").close()
    port = free_port()
    proc = serve_workspace(tmp_path / "ws", port, tmp_path / "panel.log")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/features")
        page.get_by_text("no feature views yet in workspace").wait_for(timeout=60_000)
        page.get_by_text("mlw features apply FILE", exact=True).wait_for()  # as code
        assert page.locator(".alert-danger").count() == 0 and "Traceback" not in page.content()
    finally:
        ctx.close()
        _stop(proc)


def test_experiments_page(dashboards, models, page, shot):
    from playwright.sync_api import expect
    m, found = models, models.search
    trials = found.study.get_trials(deepcopy=False)
    best = next(t for t in trials if t.number == found.best_trial)
    page.goto(f"{dashboards}/experiments")
    # the experiment, searched last, selected: its counts, best value and the state of its search
    page.get_by_text("Experiment credit_default finished").wait_for()
    row = page.locator(".tabulator-row", has=page.locator('[tabulator-field="name"]', has_text=re.compile("^credit_default$")))
    expect(row.locator('[tabulator-field="trials"]')).to_have_text("6 of 6")
    expect(row.locator('[tabulator-field="pruned"]')).to_have_text(str(sum(t.state.name == "PRUNED" for t in trials)))
    expect(row.locator('[tabulator-field="best"]')).to_have_text(f"{found.best_value:.4g}")
    expect(row.locator('[tabulator-field="best trial"]')).to_have_text(str(found.best_trial))
    expect(row.locator('[tabulator-field="state"]')).to_have_text("finished")
    # its definition, MLflow parent run, and the best trial with the parameters it sampled
    page.get_by_role("row", name="objective maximize auc over a time split").wait_for()
    page.get_by_text(f"parent run {found.parent_run_id} finished").wait_for()
    page.get_by_text(f"Best trial {found.best_trial}: auc = {found.best_value:.4g}").wait_for()
    page.get_by_text(f"learning_rate={best.params['learning_rate']:.4g}").wait_for()
    # every trial, with its state, value, trees, the round a pruned one stopped at, and its MLflow run
    trial_rows = page.locator(".tabulator", has=page.locator('.tabulator-col[tabulator-field="pruned at"]')).locator(".tabulator-row")
    expect(trial_rows).to_have_count(6)
    for t in trials:
        r = trial_rows.filter(has=page.locator('[tabulator-field="run"]', has_text=found.runs[t.number]))
        expect(r.locator('[tabulator-field="state"]')).to_have_text({"COMPLETE": "complete", "PRUNED": "pruned"}[t.state.name])
        expect(r.locator('[tabulator-field="trees"]')).to_have_text(str(t.user_attrs["mlw"]["n_trees"]))
        expect(r.locator('[tabulator-field="pruned at"]')).to_have_text(str(t.user_attrs["mlw"]["n_trees"]) if t.state.name == "PRUNED" else "-")
    # the comparison figures, drawn by plotly.js that the Panel server itself serves
    plots = page.locator(".js-plotly-plot")
    # five comparison figures (ui.experiments' page adds slice, contour and EDF after them: test_dashboard_experiments)
    plots.nth(4).wait_for(timeout=60_000)
    for title in ("Optimization History Plot", "Hyperparameter Importances", "Parallel Coordinate Plot", "Metric distributions"):
        page.get_by_text(title).first.wait_for()
    _fit_viewport(page)
    plots.nth(4).wait_for()
    shot(page, "dashboards-experiments")
    # the standalone report, downloaded: one offline HTML file with the same trials
    with page.expect_download() as got:
        page.get_by_role("button", name="Download the comparison report").click()
    report = Path(got.value.path()).read_text()
    assert got.value.suggested_filename == "credit_default-comparison.html"
    assert "<h1>Experiment credit_default</h1>" in report and found.runs[found.best_trial][:8] in report
    # sorting by a column is the table's own (Tabulator): the best value comes first when sorted descending
    header = page.locator('.tabulator-col[tabulator-field="auc"] .tabulator-col-title')  # (its heading, not the filter under it)
    header.click(); header.click()
    expect(trial_rows.first.locator('[tabulator-field="trial"]')).to_have_text(str(found.best_trial))
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_experiments_page_problems(dashboards, models, page):
    page.goto(f"{dashboards}/experiments?experiment=nope")
    page.get_by_text("experiment 'nope' has no search in this workspace; experiments searched: credit_default").wait_for()
    page.get_by_text("credit_default", exact=True).first.click()  # the list is still there to pick from
    page.get_by_text("Experiment credit_default finished").wait_for()
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_model_quality_page(dashboards, models, page, shot):
    from playwright.sync_api import expect
    m = models
    page.goto(f"{dashboards}/model-quality")
    # the model, its versions, and the one aliased candidate opened: validated, with its card
    page.get_by_text("Model credit_default v1 passed candidate").wait_for()
    row = page.locator(".tabulator-row", has=page.locator('[tabulator-field="name"]', has_text=re.compile("^credit_default$")))
    expect(row.locator('[tabulator-field="aliases"]')).to_have_text("candidate v1")
    expect(row.locator('[tabulator-field="versions"]')).to_have_text("2")
    def version(n): return page.locator(".tabulator-row", has=page.locator('[tabulator-field="version"]', has_text=re.compile(f"^{n}$")))
    expect(version(1).locator('[tabulator-field="status"]')).to_have_text("passed")
    expect(version(1).locator('[tabulator-field="aliases"]')).to_have_text("candidate")
    expect(version(2).locator('[tabulator-field="status"]')).to_have_text("rejected")
    expect(version(2).locator('[tabulator-field="gates"]')).to_have_text(m.rejected.summary())
    page.get_by_role("row", name=f"training run {m.best.run_id}").wait_for()
    # each gate as the validation measured it, and every slice of the channel gate (small ones skipped, saying why)
    for r in m.report.results:
        page.get_by_role("row", name=re.compile(f"^{re.escape(r.name)} passed ")).wait_for()
    slices = next(r for r in m.report.results if r.name.startswith("slice_metric"))
    for sl in slices.details["slices"]:
        page.get_by_role("row", name=f"{sl['value']} {sl['rows']} {sl['auc']:.4g} passed", exact=True).wait_for()
    for sl in slices.details["skipped"]:
        page.get_by_role("row", name=f"{sl['value']} {sl['rows']} skipped: {sl['why']}", exact=True).wait_for()
    # the model card, rendered, and the audit table's history of the model
    page.get_by_role("heading", name="credit_default v1", exact=True).wait_for()
    page.get_by_text("by its validation gates (6 of 6 gates passed). Owner: alice.").wait_for()
    page.get_by_role("heading", name="Metrics (holdout)").wait_for()
    page.get_by_role("row", name=re.compile(r"^\S+ \S+ 1 alias_set candidate alice best trial of the first search$")).wait_for()
    page.get_by_role("row", name=re.compile(r"^\S+ \S+ 2 rejected bob ")).wait_for()
    _fit_viewport(page)
    shot(page, "dashboards-models")
    # the rejected version: the gate it failed
    version(2).locator('[tabulator-field="version"]').click()
    page.get_by_text("Model credit_default v2 rejected").wait_for()
    page.get_by_role("row", name=re.compile(r"^metric_threshold\(auc\) failed 0\.5 >= 0\.6")).wait_for()
    assert "Traceback" not in page.content()
    assert page.offsite == []


def test_model_quality_page_links_and_problems(dashboards, models, page):
    page.goto(f"{dashboards}/model-quality?model=credit_default&version=2")
    page.get_by_text("Model credit_default v2 rejected").wait_for()
    page.goto(f"{dashboards}/model-quality?model=credit_default&version=9")
    page.get_by_text("model 'credit_default' has no version 9; its versions: 2, 1").wait_for()
    page.goto(f"{dashboards}/model-quality?model=nope")
    page.get_by_text("model 'nope' not found; models: credit_default").wait_for()
    page.get_by_text("credit_default", exact=True).first.wait_for()  # the list is still there to pick from
    page.goto(f"{dashboards}/model-quality?version=latest")
    page.get_by_text("query parameter 'version' is 'latest'").wait_for()
    assert "Traceback" not in page.content()
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
        second.get_by_role("link", name="Features").click()  # one script, one path: pages by ?page=
        second.wait_for_url("**/app?page=features")
        second.locator('a.mlw-nav-active[aria-current="page"]', has_text="Features").wait_for()
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


def test_voila_data_quality(voila_quality, quality, page, shot):
    from mlops_workbench.ui.data_quality import example_text
    q, rep = quality, quality.report
    page.goto(f"{voila_quality}/?dataset=applications&version=1", timeout=LONG)
    page.get_by_text("Validation of applications v1").wait_for(timeout=LONG)
    page.get_by_text("Dataset applications v1").wait_for()  # the version record
    page.get_by_role("cell", name="quarantined", exact=True).first.wait_for()
    page.get_by_role("cell", name=q.worst.name, exact=True).wait_for()
    page.get_by_text(q.worst.message, exact=True).wait_for()
    page.get_by_text(example_text(q.worst.examples[0]), exact=True).wait_for()
    page.get_by_role("heading", name="Quality metrics").wait_for()
    page.get_by_role("cell", name="amount", exact=True).first.wait_for()  # a column's metrics
    page.get_by_role("heading", name="Open alerts").wait_for()
    page.get_by_text(q.alerts[-1].message, exact=True).wait_for()
    page.get_by_role("link", name="v0").wait_for()  # the other version, and the other datasets
    page.get_by_role("link", name="customers").wait_for()
    assert "Traceback" not in page.inner_text("body")
    _fit_viewport(page)
    shot(page, "voila-data-quality")
    assert page.offsite == []


def test_voila_experiment_comparison(voila_experiments, models, page, shot):
    found = models.search
    page.goto(f"{voila_experiments}/?experiment=credit_default", timeout=LONG)
    page.get_by_role("heading", name="Experiment credit_default").wait_for(timeout=LONG)
    page.get_by_text(f"best trial {found.best_trial}: auc =").wait_for()
    for t in found.study.get_trials(deepcopy=False):  # the sortable table: a row per trial, with its MLflow run
        page.get_by_role("cell", name=found.runs[t.number][:8], exact=True).wait_for()
    for title in ("Trials", "Optimisation history", "Parallel coordinates", "Parameter importance", "Learning curves", "Metric distributions"):
        page.get_by_role("heading", name=title, exact=True).wait_for()
    page.locator(".js-plotly-plot").nth(4).wait_for(timeout=LONG)  # five figures, drawn by the inline plotly.js
    page.get_by_role("link", name="credit_default").wait_for()
    assert "Traceback" not in page.inner_text("body")
    _fit_viewport(page)
    shot(page, "voila-experiment-comparison")
    assert page.offsite == []


def test_voila_unknown_experiment_is_an_alert(voila_experiments, models, page):
    page.goto(f"{voila_experiments}/?experiment=nope", timeout=LONG)
    page.get_by_role("alert").filter(has_text="experiment 'nope' has no search in this workspace; experiments searched: credit_default").wait_for(timeout=LONG)
    page.get_by_role("link", name="credit_default").wait_for()
    assert "Traceback" not in page.inner_text("body")
    assert page.offsite == []


def test_voila_data_quality_unknown_dataset_is_an_alert(voila_quality, quality, page):
    page.goto(f"{voila_quality}/?dataset=nope", timeout=LONG)
    page.get_by_role("alert").filter(has_text="dataset 'nope' not found").wait_for(timeout=LONG)
    page.get_by_role("link", name="applications", exact=True).wait_for()
    assert "Traceback" not in page.inner_text("body")
    assert page.offsite == []
