"""The Experiments page and the experiment comparison report in Chromium, as optuna-dashboard users use them: trials
filtered and sorted by any parameter or metric, slice, contour and empirical distribution plots, experiments of two
tasks side by side, and the page following a search that runs in another process without a reload. And wide tables
(trials, the Pipelines and Features pages, the Voila report) measured at 1280x800: no cell clipped, no table past its
box. Two shapes of data: the demo's binary credit-default search, and a regression search with eight parameters (text
categorical input, no id column). Real searches, MLflow stores and servers; no mocks."""
import os
import re
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from conftest import ROOT, free_port
from test_dashboards import LONG, _serve, _stop, _fit_viewport, runs, serve_workspace, write_feature_data  # noqa: F401  (runs: a fixture)
from toy import toy

os.environ.setdefault("OMP_NUM_THREADS", "1")

WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.experiments.definition import Experiment
    from mlops_workbench.experiments.search import search
    ws, exp, gate = Workspace.open(sys.argv[1]), Experiment.from_yaml(sys.argv[2]), Path(sys.argv[3])
    total, exp.trials = exp.trials, 1
    search(ws, exp, report=False, progress=False)  # the study exists with one trial ...
    while not gate.exists(): time.sleep(0.1)  # ... until the test has seen it on the page, however fast the machine
    exp.trials = total
    search(ws, exp, report=False, progress=False)  # then the rest of the budget, resumed
""")

# every cell with content and every table, through the shadow roots Panel renders its widgets in: clipped cells, tables past their box
MEASURE = """() => {
  const all = [];
  const walk = root => { for (const el of root.querySelectorAll('*')) { all.push(el); if (el.shadowRoot) walk(el.shadowRoot); } };
  walk(document);
  const shown = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden'; };
  const up = el => el.parentElement || (el.getRootNode() && el.getRootNode().host) || null;
  const scroller = el => { for (let p = up(el); p; p = up(p)) { const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') return p; } return null; };
  const W = document.documentElement.clientWidth, out = {cells: 0, tables: 0, clipped: [], past: []};
  for (const el of all) {
    if (!shown(el)) continue;
    const tag = el.tagName.toLowerCase(), cls = el.classList;
    if (tag === 'td' || tag === 'th' || cls.contains('tabulator-cell') || cls.contains('tabulator-col-title')) {
      out.cells++;
      if (el.textContent.trim() !== '' && el.scrollWidth > el.clientWidth + 1) out.clipped.push(`${tag}.${[...cls].join('.')} '${el.textContent.trim().slice(0, 40)}' ${el.scrollWidth}>${el.clientWidth}`);
    }
    if (cls.contains('js-plotly-plot')) {  // a figure drawn wider than its box (optuna's fixed widths) is cut off too
      const svg = el.querySelector('svg.main-svg'), box = (el.getRootNode().host || el.parentElement).getBoundingClientRect();
      const r = svg && svg.getBoundingClientRect();
      if (r && (r.width > box.width + 1 || r.right > W + 1)) out.past.push(`plotly figure ${Math.round(r.width)} wide in a box of ${Math.round(box.width)}`);
    }
    if (tag === 'table' || cls.contains('tabulator')) {
      out.tables++;
      const box = scroller(el), r = (box || el).getBoundingClientRect();
      if (r.right > W + 1) out.past.push(`${tag}.${[...cls].join('.')} right ${Math.round(r.right)} > ${W}`);
    }
  }
  return out;
}"""


def fits(page, name):
    "Measure the page at 1280x800 (laid out anew); every visible cell shows all its content and every table stays in its box."
    page.set_viewport_size({"width": 1280, "height": 800})
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    m = page.evaluate(MEASURE)
    assert m["cells"] > 10 and m["tables"] > 0, (name, m)
    assert m["clipped"] == [] and m["past"] == [], (name, m)
    return m


def binary_experiment(ws):
    "The demo's credit-default search: generated loan applications (binary target, an id column, text channel), 6 trials."
    from mlops_workbench.data.synthetic import generate_lending
    from mlops_workbench.experiments.definition import Experiment, FloatParam, IntParam, TimeSplit
    from mlops_workbench.experiments.search import search
    world = generate_lending(1_000, seed=11)
    loans = world.applications.join(world.labels.select("application_id", "defaulted"), on="application_id")
    exp = Experiment("credit_default", target="defaulted", exclude=["application_id", "customer_id"], split=TimeSplit("event_timestamp", valid_size=0.25),
                     search_space={"learning_rate": FloatParam(0.02, 0.3, log=True), "num_leaves": IntParam(4, 32, log=True),
                                   "min_child_samples": IntParam(5, 60, log=True)},
                     params={"num_threads": 1}, num_boost_round=40, trials=6, pruner={"kind": "median", "n_startup_trials": 2, "n_warmup_steps": 5}, seed=7)
    return search(ws, exp, data=loans, progress=False)


def regression_experiment(ws, name="job_time", trials=6, **kw):
    "A regression search on `toy('regression')` (text plan, no id column) over eight parameters: the wide trials table."
    from mlops_workbench.experiments.definition import CategoricalParam, Experiment, FloatParam, IntParam, TimeSplit
    space = {"learning_rate": FloatParam(0.02, 0.3, log=True), "num_leaves": IntParam(4, 64, log=True), "min_child_samples": IntParam(5, 80, log=True),
             "feature_fraction": FloatParam(0.5, 1.0), "lambda_l1": FloatParam(1e-4, 10.0, log=True), "lambda_l2": FloatParam(1e-4, 10.0, log=True),
             "min_split_gain": FloatParam(0.0, 0.5), "extra_trees": CategoricalParam([True, False])}
    return Experiment(name, target="label", task="regression", exclude=["region_id"], split=TimeSplit("t", valid_size=0.25), search_space=space,
                      params={"num_threads": 1}, num_boost_round=40, trials=trials, seed=3, **kw)


@pytest.fixture(scope="module")
def world(runs):
    "The runs' workspace (pipeline runs), plus a feature view materialized, the binary search and the regression search."
    from mlops_workbench.core.storage import write_dataset
    from mlops_workbench.experiments.search import search
    ws = runs.ws
    write_dataset(ws, "toy_regression", toy("regression", n=3_000, seed=4), source={"kind": "test", "location": "toy('regression')"})
    binary = binary_experiment(ws)
    reg = search(ws, regression_experiment(ws), data=toy("regression", n=1_200, seed=2), progress=False)
    feats = write_feature_data(ws)
    return SimpleNamespace(ws=ws, binary=binary, reg=reg, feats=feats, dir=runs.dir)


@pytest.fixture(scope="module")
def board(world):
    "The dashboards on the world's workspace, as `mlw dashboards` serves them."
    port = free_port()
    proc = serve_workspace(world.ws.root, port, world.dir / "board.log")
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


def trial_rows(page):
    return page.locator(".tabulator", has=page.locator('.tabulator-col[tabulator-field="run"]')).locator(".tabulator-row")


def test_filter_sort_explore_and_compare(board, world, page, shot):
    from playwright.sync_api import expect
    found, reg = world.binary, world.reg
    trials = found.study.get_trials(deepcopy=False)
    page.goto(f"{board}/experiments?experiment=credit_default")
    page.get_by_text("Experiment credit_default finished").wait_for()
    rows = trial_rows(page)
    expect(rows).to_have_count(6)
    # optuna-dashboard's views beyond the five: slice, contour, empirical distribution (8 plotly figures in all)
    expect(page.locator(".js-plotly-plot")).to_have_count(8, timeout=60_000)
    for title in ("Slice Plot", "Contour Plot", "Empirical Distribution Function Plot"):
        page.get_by_text(title).first.wait_for()
    # filter by a parameter: the rows with num_leaves at least the median one
    cut = sorted(t.params["num_leaves"] for t in trials)[3]
    box = page.locator('.tabulator-col[tabulator-field="num_leaves"] .tabulator-header-filter input')
    box.fill(str(cut)); box.press("Enter")
    expect(rows).to_have_count(sum(t.params["num_leaves"] >= cut for t in trials))
    box.fill(""); box.press("Enter")
    expect(rows).to_have_count(6)
    # filter by state (text), then sort by the metric: the best trial first when sorted descending
    state = page.locator('.tabulator-col[tabulator-field="state"] .tabulator-header-filter input')
    state.fill("complete"); state.press("Enter")
    expect(rows).to_have_count(sum(t.state.name == "COMPLETE" for t in trials))
    header = page.locator('.tabulator-col[tabulator-field="auc"] .tabulator-col-title')
    header.click(); header.click()
    expect(rows.first.locator('[tabulator-field="trial"]')).to_have_text(str(found.best_trial))
    # the regression experiment beside it, picked in the page: both best trials side by side, both histories on one chart
    page.locator(".choices").click()
    page.locator(".choices__item--choice", has_text="job_time").click()
    page.keyboard.press("Escape")  # close the list of choices
    page.get_by_role("heading", name="credit_default beside other experiments").wait_for()
    side = page.locator(".mlw-report table", has=page.get_by_text("rmse (minimize)"))
    expect(side).to_contain_text("auc (maximize)")
    expect(side).to_contain_text(reg.runs[reg.best_trial])
    expect(side).to_contain_text(found.runs[found.best_trial])
    page.get_by_text("Optimisation histories").first.wait_for()
    page.get_by_text("job_time: best so far").first.wait_for()
    expect(page.locator(".js-plotly-plot")).to_have_count(9)
    _fit_viewport(page)
    shot(page, "dashboards-experiments-board")
    fits(page, "experiments (binary, with the regression beside it)")
    assert "Traceback" not in page.content() and page.offsite == []


def test_regression_experiment_and_wide_tables_fit(board, world, page, shot):
    from playwright.sync_api import expect
    reg = world.reg
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{board}/experiments?experiment=job_time")
    page.get_by_text("Experiment job_time finished").wait_for()
    rows = trial_rows(page)
    expect(rows).to_have_count(6)
    expect(page.locator(".js-plotly-plot")).to_have_count(8, timeout=60_000)
    # numbers rounded for reading: 4 significant digits at most
    text = rows.first.locator('[tabulator-field="lambda_l1"]').inner_text()
    assert len(re.sub(r"[^0-9]", "", text.split("e")[0]).lstrip("0")) <= 4, text
    fits(page, "experiments (regression, 8 parameters)")
    page.screenshot(path=str(ROOT / "test-output" / "screenshots" / "dashboards-experiments-regression-1280.png"))
    _fit_viewport(page)
    shot(page, "dashboards-experiments-regression")
    # the Pipelines page: a step's error line wraps in its cell
    page.goto(f"{board}/pipelines")
    page.get_by_text("ZeroDivisionError in cell 2").first.wait_for()
    page.locator(".tabulator-row").first.wait_for()
    fits(page, "pipelines")
    page.screenshot(path=str(ROOT / "test-output" / "screenshots" / "dashboards-pipelines-1280.png"))
    assert page.offsite == []


def test_features_page_tables_fit(board, world, page):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{board}/features")
    page.get_by_text("Feature view customer_spend v2").wait_for()
    page.locator(".tabulator-row").first.wait_for()
    page.screenshot(path=str(ROOT / "test-output" / "screenshots" / "dashboards-features-1280.png"))
    fits(page, "features")


def test_page_follows_a_running_search(board, world, page, tmp_path):
    from playwright.sync_api import expect
    # trials of a second or two (3000 rounds, no pruning, no early stop) on the toy regression dataset, in another process
    exp = regression_experiment(world.ws, name="live_search", trials=5, dataset="toy_regression")
    exp.num_boost_round, exp.early_stopping_rounds, exp.pruner = 6000, None, {"kind": "none"}
    y = tmp_path / "live.yaml"
    y.write_text(exp.to_yaml())
    gate = tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(world.ws.root), str(y), str(gate)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=(tmp_path / "search.log").open("w"), stderr=subprocess.STDOUT)
    try:
        page.goto(f"{board}/experiments?experiment=live_search")
        row = page.locator(".tabulator-row", has=page.locator('[tabulator-field="name"]', has_text=re.compile("^live_search$")))
        cell = row.locator('[tabulator-field="trials"]')
        expect(cell).to_have_text("1 of 1", timeout=60_000)  # the study may not exist when the page opens: the poll finds it
        first = 1
        gate.touch()  # the search goes on to its budget of 5
        expect(cell).not_to_have_text("1 of 1", timeout=60_000)  # grew, without a reload
        page.screenshot(path=str(ROOT / "test-output" / "screenshots" / "dashboards-experiments-live.png"))  # at once: mid-search
        grown = int(cell.inner_text().split()[0])
        assert grown > first
        expect(page.get_by_text("has no search in this workspace")).to_have_count(0)  # an alert from before the study existed is gone
        expect(page.get_by_role("heading", name=re.compile("^Experiment live_search"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"[1-9]\d* updates? since it opened"))).to_be_visible()
        if proc.poll() is None: expect(row.locator('[tabulator-field="state"]')).to_have_text(re.compile("running|finished"))
        assert proc.wait(240) == 0, (tmp_path / "search.log").read_text()[-3000:]
        expect(cell).to_have_text("5 of 5", timeout=30_000)
        expect(row.locator('[tabulator-field="state"]')).to_have_text("finished", timeout=30_000)
        assert "Traceback" not in page.content() and page.offsite == []
    finally:
        if proc.poll() is None: proc.kill(); proc.wait()


@pytest.fixture(scope="module")
def voila_report(world):
    "The Voila experiment comparison report on the world's workspace."
    from mlops_workbench.ui.shell import voila_command
    port = free_port()
    argv, env = voila_command("experiment_comparison", port=port, ws=world.ws)
    proc = _serve(argv, env, port, world.dir / "voila-board.log")
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


def test_voila_comparison_report_fits(voila_report, world, page, shot):
    reg = world.reg
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{voila_report}/?experiment=job_time", timeout=LONG)
    page.get_by_role("heading", name="Experiment job_time").wait_for(timeout=LONG)
    for title in ("Slice", "Contour", "Empirical distribution"):
        page.get_by_role("heading", name=title, exact=True).wait_for()
    page.locator(".js-plotly-plot").nth(7).wait_for(timeout=LONG)
    page.get_by_role("cell", name=reg.runs[reg.best_trial][:8], exact=True).wait_for()
    fits(page, "voila experiment comparison (regression)")
    page.screenshot(path=str(ROOT / "test-output" / "screenshots" / "voila-experiment-comparison-1280.png"))
    _fit_viewport(page)
    shot(page, "voila-experiment-comparison-regression")
    assert "Traceback" not in page.inner_text("body") and page.offsite == []
