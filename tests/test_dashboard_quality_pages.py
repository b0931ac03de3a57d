"""The pictures of the Model quality, Data quality and Features pages in a browser (issue 15, items 4-6), served for
real (as `mlw dashboards` serves them) on a workspace made with the real library, in two shapes:

- binary: a credit-default model trained on generated loan applications (v1 passes its gates; v2, misconfigured to
  score everyone the same, is rejected), the lending applications validated in two batches, and the demo world's
  `customer_spend` feature view, whose data ended long ago: stale past its TTL;
- regression: `toy.jobs_world` (a duration model on jobs with text site codes, some null, dates as strings) with its
  readings written again as a second version with more nulls and never validated, and its `site_stats` view built on
  readings up to now and materialized: fresh.

The charts are read back from the browser's Bokeh documents (titles, data sources, hover tools) and compared with the
library's own numbers (`ui.charts`); waits are Playwright waits, never timed assertions.
"""
import datetime as dt
import getpass
import re
from types import SimpleNamespace

import pytest

from conftest import free_port
from test_dashboards import AGE, _fit_viewport, _stop, serve_workspace, write_feature_data, write_quality_data

LOAD = 60_000  # ms
_FIGURES = "(window.Bokeh ? Bokeh.documents.flatMap(d => [...d.all_models]).filter(m => m.type == 'Figure') : [])"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import polars as pl
    from toy import credit_loans, credit_version, jobs_world
    from mlops_workbench.core.metadata import utcnow
    from mlops_workbench.core.storage import read_dataset, write_dataset
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.features.online import materialize
    d = tmp_path_factory.mktemp("quality-pages")
    ws = Workspace.init(d / "ws")
    # binary
    loans = credit_loans()
    good, v1 = credit_version(ws, loans, {"learning_rate": 0.1, "num_leaves": 15}, "good", slices=["channel"])
    flat, v2 = credit_version(ws, loans, {"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 5000}, "misconfigured", who="bob", slices=["channel"])
    assert (v1.tags["mlw.validation"], v2.tags["mlw.validation"]) == ("passed", "rejected")
    write_quality_data(ws)
    feats = write_feature_data(ws)
    # regression, with data up to now
    job_run, _ = jobs_world(ws, base=utcnow() - dt.timedelta(days=200))
    readings = read_dataset(ws, "readings").collect()
    more = readings.head(3_000).with_columns(temp=pl.lit(None, pl.Float64))  # a sensor outage: every temperature missing
    write_dataset(ws, "readings", more, source={"kind": "test", "location": "a second batch"})
    materialize(ws, "site_stats")
    port = free_port()
    proc = serve_workspace(ws.root, port, d / "panel.log")
    yield SimpleNamespace(ws=ws, url=f"http://127.0.0.1:{port}", good=good, flat=flat, job_run=job_run, readings=readings, more=more, feats=feats)
    _stop(proc)
    ws.close()


def _figures(page, wait_for: str):
    "The page's Bokeh figures by title once one titled `wait_for` (a prefix) is there: glyphs, hover, and each data source's columns."
    page.wait_for_function(f"() => {_FIGURES}.some(m => m.title && m.title.text.startsWith({wait_for!r}))", timeout=LOAD)
    return {f["title"]: f for f in page.evaluate(f"""() => {_FIGURES}.map(m => ({{title: m.title ? m.title.text : "",
        hover: m.toolbar.tools.some(t => t.type == "HoverTool"),
        sources: m.renderers.map(r => {{ const d = r.data_source.data; return d instanceof Map ? Object.fromEntries(d) : d; }})}}))""")}


# ---------------------------------------------------------------- the state, without a browser

def test_chart_data_on_both_shapes(world):
    import numpy as np
    from mlops_workbench.registry.validation import load_report
    from mlops_workbench.ui.charts import dataset_profile, model_plot_data
    from mlops_workbench.ui.features import feature_view_summaries, view_status
    b = model_plot_data(world.ws, world.good)
    rep = load_report(world.ws, world.good)
    assert b["task"] == "binary" and abs(b["roc"][0]["value"] - rep.metrics["auc"]) < 1e-9  # the number the gate measured
    assert sum(map(sum, b["confusion"]["matrix"])) == rep.rows and "residuals" not in b
    r = model_plot_data(world.ws, world.job_run)
    assert r["task"] == "regression" and "roc" not in r and r["residuals"]["unit"] == "duration"
    assert set(r["learning_curves"]) == {"rmse", "mae"} and np.isfinite(r["residuals"]["sd"])
    prof = {c["column"]: c for c in dataset_profile(world.ws, "jobs")["columns"]}
    assert prof["site_code"]["kind"] == "categorical" and prof["site_code"]["nulls"] > 0  # nulls in the key
    assert prof["visit_day"]["kind"] == "categorical"  # a date written as text stays text
    assert prof["event_timestamp"]["kind"] == "temporal" and sum(prof["event_timestamp"]["histogram"]["count"]) == 1_500
    states = {s["name"]: view_status(s) for s in feature_view_summaries(world.ws)}
    assert states == {"application_ratios": "on demand", "customer_spend": "stale", "job_load": "on demand", "site_stats": "fresh"}, states


def test_model_quality_state_refuses_through_the_registry(world):
    from mlops_workbench.ui.models import ModelQuality
    mq = ModelQuality(world.ws, model="job_duration", version=1)
    assert mq.plots["task"] == "regression" and "confusion" not in mq.plots and mq.plots_note == ""
    mq.compare = 7
    assert mq.alert == "model 'job_duration' has no version 7 to compare with; its versions: 1" and mq.other is None
    mq.user = "state-test"
    mq.archive("retired in a test")  # the registry's own path: archived, and who did it recorded
    assert mq.record["status"] == "archived" and mq.history.iloc[0][["action", "actor"]].tolist() == ["archived", "state-test"]
    mq.promote("staging")
    assert mq.alert == "model 'job_duration' v1 is archived and cannot be aliased 'staging'; promote another version", mq.alert


# ---------------------------------------------------------------- in the browser

def test_model_quality_charts_binary(world, page, shot):
    from playwright.sync_api import expect
    from mlops_workbench.registry.validation import load_report
    from mlops_workbench.ui.charts import confusion_at, model_plot_data
    rep, d = load_report(world.ws, world.good), model_plot_data(world.ws, world.good)
    page.goto(f"{world.url}/model-quality?model=credit_default&version=1")
    page.get_by_text(f"Charts of v1 (holdout of run {world.good}; hover for values)").wait_for(timeout=LOAD)
    figs = _figures(page, "Learning curve")
    for t in ("ROC (holdout)", "Precision-recall (holdout)", "Calibration (holdout, 10 quantile bins)", "Confusion matrix at threshold 0.50 (holdout)",
              "Feature importance (total split gain)", f"SHAP summary: mean |SHAP value| over {rep.rows:,} holdout rows", "Learning curve: logloss", "Learning curve: auc"):
        assert t in figs and figs[t]["hover"], (t, list(figs))
    # what the browser holds is the library's numbers: the confusion cells, the ROC's points, the importance order
    cm = figs["Confusion matrix at threshold 0.50 (holdout)"]["sources"][0]
    assert cm["rows"] == [n for r in d["confusion"]["matrix"] for n in r]
    assert figs["ROC (holdout)"]["sources"][1]["x"] == d["roc"][0]["x"]
    assert figs["Feature importance (total split gain)"]["sources"][0]["feature"] == d["importance"]["feature"][::-1]
    # measured values with units, and the gates table once (the model card's copy left out)
    page.get_by_role("row", name=re.compile(r"^model_size passed [\d.]+ kB <= [\d.]+ MB")).wait_for()
    page.get_by_role("row", name=re.compile(r"^latency_budget passed [\d.]+ ms \(p99\) <= ")).wait_for()
    expect(page.get_by_role("columnheader", name="gate", exact=True)).to_have_count(1)
    expect(page.get_by_role("heading", name="Validation", exact=True)).to_have_count(0)
    page.get_by_role("heading", name="Metrics (holdout)").wait_for()  # the card's other sections stay
    # the decision threshold moves the confusion matrix, recounted by the server
    handle = page.locator(".noUi-handle").first
    handle.focus()
    for _ in range(20): handle.press("ArrowLeft")
    figs = _figures(page, "Confusion matrix at threshold 0.30")
    y, p = d["_scores"]
    moved = confusion_at(y, p, 0.30)["matrix"]
    assert figs["Confusion matrix at threshold 0.30 (holdout)"]["sources"][0]["rows"] == [n for r in moved for n in r]
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-models-charts-binary")
    assert "Traceback" not in page.content() and page.offsite == []


def test_model_quality_compare(world, page, shot):
    page.goto(f"{world.url}/model-quality?model=credit_default&version=1")
    page.get_by_text("Charts of v1").wait_for(timeout=LOAD)
    page.locator("select", has=page.locator("option", has_text="none")).select_option("v2")
    page.get_by_text("v1 and v2 side by side").wait_for(timeout=LOAD)
    page.get_by_role("row", name=re.compile(r"^gate metric_threshold\(auc\) passed [\d.]+ failed 0\.5 now fails$")).wait_for()
    page.get_by_role("row", name=re.compile(r"^metric auc [\d.]+ 0\.5 -[\d.]+$")).wait_for()
    # each side's own charts: two ROC curves more (one per version), v2's on the diagonal
    page.wait_for_function(f"() => {_FIGURES}.filter(m => m.title.text == 'ROC (holdout)').length == 3", timeout=LOAD)
    page.get_by_text("Model credit_default v2 rejected").first.wait_for()
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-models-compare")
    assert "Traceback" not in page.content() and page.offsite == []


def test_model_quality_promote_and_archive(world, page, shot):
    from mlops_workbench.registry.versions import alias_history, get_version
    page.goto(f"{world.url}/model-quality?model=credit_default&version=1")
    page.get_by_text("Promote or archive this version").wait_for(timeout=LOAD)
    page.locator("select", has=page.locator("option", has_text="production")).select_option("staging")
    page.get_by_placeholder("why").fill("passed its gates; staging next")
    page.get_by_role("button", name="Promote").click()
    page.get_by_text(f"model 'credit_default' v1 is now staging by {getpass.getuser()}").wait_for(timeout=LOAD)
    last = alias_history(world.ws, "credit_default").sort("at").row(-1, named=True)
    assert (last["action"], last["alias"], last["actor"], last["reason"]) == ("alias_set", "staging", getpass.getuser(), "passed its gates; staging next")
    assert "staging" in get_version(world.ws, "credit_default", 1).aliases
    # the rejected version: the registry refuses, and the page says why
    page.goto(f"{world.url}/model-quality?model=credit_default&version=2")
    page.get_by_text("Promote or archive this version").wait_for(timeout=LOAD)
    page.locator("select", has=page.locator("option", has_text="production")).select_option("production")
    page.get_by_role("button", name="Promote").click()
    page.get_by_text("model 'credit_default' v2 was rejected by its validation gates").wait_for(timeout=LOAD)
    assert get_version(world.ws, "credit_default", 2).aliases == []
    _fit_viewport(page)
    shot(page, "dashboards-models-promote-refused")
    page.get_by_role("button", name="Archive").click()
    page.get_by_text(f"model 'credit_default' v2 archived by {getpass.getuser()}").wait_for(timeout=LOAD)
    assert get_version(world.ws, "credit_default", 2).tags.get("mlw.archived") == "true"
    assert "Traceback" not in page.content() and page.offsite == []


def test_model_quality_charts_regression(world, page, shot):
    from mlops_workbench.ui.charts import model_plot_data
    d = model_plot_data(world.ws, world.job_run)
    page.goto(f"{world.url}/model-quality?model=job_duration")
    page.get_by_text("Charts of v1").wait_for(timeout=LOAD)
    figs = _figures(page, "Learning curve")
    res = next(t for t in figs if t.startswith("Residuals"))
    assert res == f"Residuals (holdout): mean {d['residuals']['mean']:.3g}, sd {d['residuals']['sd']:.3g} (duration)" and figs[res]["hover"]
    assert {"Learning curve: rmse", "Learning curve: mae", "Feature importance (total split gain)"} <= set(figs)
    assert not any(t.startswith(("ROC", "Confusion")) for t in figs)  # a regressor has no classes
    assert not page.locator(".noUi-handle").first.is_visible()  # nor a decision threshold
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-models-charts-regression")
    assert "Traceback" not in page.content() and page.offsite == []


def test_data_quality_profile_of_an_unvalidated_dataset(world, page, shot):
    from playwright.sync_api import expect
    page.goto(f"{world.url}/data-quality?dataset=readings")
    page.get_by_text("Profile of readings v1: 9,000 rows").wait_for(timeout=LOAD)
    row = page.locator(".tabulator-row", has=page.locator('[tabulator-field="name"]', has_text=re.compile("^readings$")))
    expect(row.locator('[tabulator-field="validation"]')).to_have_text("not validated")
    page.get_by_text("Not validated yet").wait_for()
    expect(page.get_by_text("passed", exact=True)).to_have_count(0)  # no all-clear anywhere
    # sizes and ages for people
    versions = page.locator(".tabulator-row", has=page.locator('[tabulator-field="operation"]'))
    expect(versions.first.locator('[tabulator-field="size"]')).to_have_text(re.compile(r"^[\d.]+ kB$"))
    expect(versions.first.locator('[tabulator-field="age"]')).to_have_text(re.compile(r"^(\d+\.\d s|\d+ min \d\d s) old$"))
    # the profile: a chart per column, and the versions' null rates as lines
    figs = _figures(page, "Null rate per column")
    assert {"site_code", "read_at", "temp", "state", "Rows per version"} <= set(figs), list(figs)
    n0, n1 = world.readings.height, world.readings.height + world.more.height
    rows = figs["Rows per version"]["sources"][0]
    assert (rows["version"], rows["value"]) == ([0, 1], [n0, n1])
    nulls = {s["series"][0]: s["value"] for s in figs["Null rate per column and version"]["sources"] if "series" in s}
    temp0 = world.readings["temp"].null_count() / n0
    assert nulls["temp"] == pytest.approx([temp0, (world.readings["temp"].null_count() + world.more.height) / n1])
    state = figs["state"]["sources"][0]
    assert sorted(state["value"]) == ["fault", "ok", "warn"] and sum(state["count"]) == n1
    page.get_by_role("row", name=re.compile(r"^temp Float64 \d+(\.\d+)?% ")).wait_for()
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-data-quality-unvalidated")
    # one version so far: no trend yet, and it says so
    page.goto(f"{world.url}/data-quality?dataset=jobs")
    page.get_by_text("Profile of jobs v0: 1,500 rows").wait_for(timeout=LOAD)
    page.get_by_text("One version so far").wait_for()
    assert "Traceback" not in page.content() and page.offsite == []


def test_data_quality_profile_of_a_validated_dataset(world, page, shot):
    page.goto(f"{world.url}/data-quality?dataset=applications")
    page.get_by_text("Validation of applications v1").wait_for(timeout=LOAD)
    page.get_by_text("Profile of applications v1: 2,000 rows").wait_for()
    figs = _figures(page, "Null rate per column")
    assert {"channel", "amount", "Rows per version"} <= set(figs)
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-data-quality-validated")
    assert "Traceback" not in page.content() and page.offsite == []


def test_features_stale_and_fresh(world, page, shot):
    from playwright.sync_api import expect
    from mlops_workbench.features.offline import list_builds
    page.goto(f"{world.url}/features?view=customer_spend")
    page.get_by_text("Feature view customer_spend v2").wait_for(timeout=LOAD)
    def row(name): return page.locator(".tabulator-row", has=page.locator('[tabulator-field="name"]', has_text=re.compile(f"^{name}$")))
    expect(row("customer_spend").locator('[tabulator-field="freshness"]')).to_have_text(re.compile(r"^stale\s*\d+(\.\d)? days old$"))
    expect(row("customer_spend").locator('[tabulator-field="materialization"]')).to_have_text(re.compile(r"^stale\s*[\d,]+ rows$"))  # not a green "complete"
    expect(row("site_stats").locator('[tabulator-field="freshness"]')).to_have_text(re.compile(f"^fresh\\s*{AGE} old$"))
    expect(row("site_stats").locator('[tabulator-field="materialization"]')).to_have_text(re.compile(r"^complete\s*[\d,]+ rows$"))
    page.get_by_text("older than its TTL (60d): lookups now get nulls").wait_for()
    # each feature's distribution in the newest offline table
    b = list_builds(world.ws, "customer_spend")[0]
    page.get_by_text(f"Distributions in {b.table} v{b.table_version} (hover for counts)").wait_for()
    figs = _figures(page, world.feats.features[-1])
    assert set(world.feats.features) <= set(figs) and all(figs[f]["hover"] for f in world.feats.features)
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-features-stale")
    row("site_stats").click()
    page.get_by_text("Feature view site_stats v1").wait_for()
    page.get_by_text("Distributions in fv_site_stats").wait_for()
    _figures(page, "last_state")
    _fit_viewport(page)
    page.locator("canvas").first.wait_for()
    shot(page, "dashboards-features-fresh")
    assert "Traceback" not in page.content() and page.offsite == []
