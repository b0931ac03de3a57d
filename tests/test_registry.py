"""The registry for real: every validation gate passing and failing on models `training.train` made (binary on the
credit demo, multiclass and regression on a toy dataset), bad gate configs and bad runs, registration of passed and
rejected models, promotion, archive, the audit table answering "which version was in production on day X", changes
undone when the audit write (or an MLflow call) fails, and `mlw models` through the installed console script.
Real MLflow stores and metadata databases in temp workspaces; no mocks."""
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2-core machines: every LightGBM below runs on one thread

import mlflow
from toy import toy
from mlops_workbench.core.errors import Conflict, InvalidInput, NotFound
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.experiments.definition import Experiment, FloatParam, TimeSplit, demo_experiment
from mlops_workbench.core.metadata import model_audit
from mlops_workbench.core.storage import write_dataset
from mlops_workbench.training.fit import train
from mlops_workbench.training.metrics import *
from mlops_workbench.registry.gates import *
from mlops_workbench.registry.validation import *
from mlops_workbench.registry.versions import *

pytestmark = pytest.mark.timeout(900)

MLW = str(Path(sys.executable).parent / "mlw")
ENV = {k: v for k, v in os.environ.items() if k != "MLW_HOME"}
UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "One workspace (MLflow's migrations cost seconds per store) with a good and a flat credit model, a multiclass and a regression toy model."
    ws = Workspace.init(tmp_path_factory.mktemp("registry") / "ws")
    exp = demo_experiment(ws, n_applications=2000)
    runs = {"good": train(ws, exp, {"learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 40}).run_id,
            "flat": train(ws, exp, {"min_child_samples": 5000}, run_name="flat").run_id}  # no leaf can hold 5000 of 1500 rows: constant scores
    for task, metric in (("multiclass", "multi_logloss"), ("regression", "rmse")):
        write_dataset(ws, f"toy_{task}", toy(task, class_names=["low", "mid", "high"]), source={"kind": "test", "location": "toy()"})
        e = Experiment(name=f"toy_{task}", target="label", task=task, dataset=f"toy_{task}", exclude=["region_id"], split=TimeSplit("t", 0.25),
                       metric=metric, search_space={"learning_rate": FloatParam(0.05, 0.3)}, params={"num_threads": 1}, num_boost_round=40)
        runs[task] = train(ws, e, {"learning_rate": 0.1}).run_id
    yield ws, exp, runs
    ws.close()


def one(ws, run_id, gate, **kw):
    "The result of a single gate on a run."
    r = validate_model(ws, run_id, [gate], log=False, **kw)
    assert len(r.results) == 1
    return r.results[0]


# -- metrics ----------------------------------------------------------------------------------------------------------

def test_metrics_agree_with_scikit_learn():
    from sklearn import metrics as skm
    r = np.random.default_rng(1)
    y = r.integers(0, 2, 400); p = np.round(r.random(400), 2)  # rounded: ties
    assert metric_value("auc", y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert metric_value("average_precision", y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert metric_value("logloss", y, p) == pytest.approx(skm.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)), abs=1e-9)
    assert metric_value("brier", y, p) == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    assert metric_value("accuracy", y, p) == pytest.approx(skm.accuracy_score(y, p >= 0.5), abs=1e-12)
    k = r.integers(0, 3, 300); P = r.dirichlet([1, 1, 1], 300)
    assert metric_value("logloss", k, P) == pytest.approx(skm.log_loss(k, P), abs=1e-9)
    assert metric_value("accuracy", k, P) == pytest.approx(skm.accuracy_score(k, P.argmax(1)), abs=1e-12)
    v = r.normal(size=200); w = v + r.normal(scale=0.3, size=200)
    assert metric_value("rmse", v, w) == pytest.approx(np.sqrt(skm.mean_squared_error(v, w)), abs=1e-12)
    assert metric_value("mae", v, w) == pytest.approx(skm.mean_absolute_error(v, w), abs=1e-12)
    assert metric_value("r2", v, w) == pytest.approx(skm.r2_score(v, w), abs=1e-12)
    ece, bins = calibration_error(y, p, bins=5)
    assert sum(b["rows"] for b in bins) == 400 and ece == pytest.approx(sum(b["rows"] * abs(b["predicted"] - b["observed"]) for b in bins) / 400)


def test_gate_metrics_equal_the_training_runs(world):
    "The gates score the served booster on the logged holdout and get the numbers training logged."
    ws, _, runs = world
    logged = ws.backend("tracking").client.get_run(runs["good"]).data.metrics
    got = validate_model(ws, runs["good"], [ModelSize()], log=False).metrics
    for m in ("auc", "average_precision", "logloss", "accuracy", "brier"): assert got[m] == pytest.approx(logged[m], abs=1e-9), m


# -- every gate, pass and fail ----------------------------------------------------------------------------------------

ORDINARY = {"amount": 10000.0, "term_months": 36, "purpose": "car", "interest_rate": 0.09, "channel": "web", "amount_sum_7d": 800.0, "amount_count_30d": 12}

# gate -> (a config the good credit model passes, one it fails)
BINARY = {
    "metric_threshold min": (MetricThreshold("auc", min=0.6), MetricThreshold("auc", min=0.95)),
    "metric_threshold max": (MetricThreshold("logloss", max=0.5), MetricThreshold("brier", max=0.01)),
    "slice_metric": (SliceMetric("channel", "auc", tolerance=0.1, min_rows=30), SliceMetric("purpose", "auc", tolerance=0.1, min_rows=30)),
    "slice_metric, no slice big enough": (SliceMetric("channel", "auc", tolerance=0.1, min_rows=30), SliceMetric("channel", "auc", min_rows=600)),
    "calibration_error": (CalibrationError(max_ece=0.1), CalibrationError(max_ece=0.01, bins=20)),
    "invariance by values": (Invariance("last_online", values=[True, False], max_change=0.1), Invariance("channel", values=["web", "branch"], max_change=0.01)),
    "invariance by perturbation": (Invariance("amount", perturbation=0.01, max_change=0.0), Invariance("amount_count_30d", perturbation=1.0, max_change=0.05)),
    "directional": (Directional("interest_rate", 0.02, "increase", min_share=0.75), Directional("amount", 5000.0, "increase", min_share=0.9)),
    "minimum_functionality range": (MinimumFunctionality([{"name": "ordinary", "row": ORDINARY, "max": 0.5}]),
                                    MinimumFunctionality([{"name": "ordinary", "row": ORDINARY, "max": 0.5},
                                                          {"name": "huge", "row": {"amount": 90000.0, "amount_sum_7d": 0.0}, "min": 0.5}])),
    "minimum_functionality class": (MinimumFunctionality([{"row": ORDINARY, "expected": 0}]), MinimumFunctionality([{"row": ORDINARY, "expected": 1}])),
    "latency_budget": (LatencyBudget(p99_ms=60_000.0, n=50), LatencyBudget(p99_ms=1e-9, n=20)),
    "model_size": (ModelSize(max_bytes=10 * 2**20), ModelSize(max_bytes=1000)),
}


@pytest.mark.parametrize("case", BINARY)
def test_binary_gate_passes_and_fails(world, case):
    ws, _, runs = world
    good, bad = BINARY[case]
    ok, no = one(ws, runs["good"], good), one(ws, runs["good"], bad)
    assert ok.passed and not no.passed, (ok, no)
    assert ok.gate == good.to_dict() and no.name == bad.name and no.threshold


def test_gate_details_say_what_failed(world):
    ws, _, runs = world
    r = one(ws, runs["good"], SliceMetric("purpose", "auc", tolerance=0.1, min_rows=30))
    worst = min(r.details["slices"], key=lambda s: s["auc"])  # which purposes fail moves with the model: check the rule, not a list
    assert "other" in r.details["failed"] and worst["value"] in r.details["failed"] and {s["value"] for s in r.details["skipped"]} == {"education", "medical"}
    assert r.value == worst["auc"] and f"worst slice purpose='{worst['value']}'" in r.note
    r = one(ws, runs["good"], SliceMetric("channel", "auc", min_rows=600))
    assert r.value is None and "no slice of 'channel' has 600 rows" in r.note and len(r.details["skipped"]) == 4  # nothing shown: fails
    r = one(ws, runs["good"], MinimumFunctionality([{"name": "huge", "row": {"amount": 90000.0, "amount_sum_7d": 0.0}, "min": 0.5}]))
    assert r.details["failed"] == ["huge"] and r.value == 1.0 and r.details["cases"][0]["score"] < 0.5
    r = one(ws, runs["good"], Directional("amount", 5000.0, "increase", min_share=0.9))
    d = r.details
    assert d["rows"] == 500 and d["moved_as_expected"] + d["unchanged"] + d["moved_wrong_way"] == pytest.approx(1) and r.value == pytest.approx(1 - d["moved_wrong_way"])
    r = one(ws, runs["good"], LatencyBudget(p99_ms=1e-9, n=20))
    assert r.details["calls"] == 20 and r.details["p50_ms"] <= r.details["p99_ms"] <= r.details["max_ms"]
    size = [a.file_size for a in ws.backend("tracking").client.list_artifacts(runs["good"], "booster")][0]
    assert one(ws, runs["good"], ModelSize(max_bytes=size)).passed and not one(ws, runs["good"], ModelSize(max_bytes=size - 1)).passed


def test_flat_model_fails_quality_but_passes_behaviour(world):
    "A model that scores everything alike: AUC 0.5 fails its floor; it cannot move, so invariance holds trivially."
    ws, _, runs = world
    r = validate_model(ws, runs["flat"], [MetricThreshold("auc", min=0.6), Invariance("channel", values=["web", "branch"], max_change=0.0)], log=False)
    assert [x.passed for x in r.results] == [False, True] and r.metrics["auc"] == 0.5


MULTICLASS = {
    "metric_threshold": (MetricThreshold("accuracy", min=0.6), MetricThreshold("logloss", max=0.05)),
    "slice_metric": (SliceMetric("region_id", "accuracy", tolerance=0.15, min_rows=40), SliceMetric("region_id", "accuracy", tolerance=0.0, min_rows=40)),
    "calibration_error": (CalibrationError(max_ece=0.15), CalibrationError(max_ece=0.001)),
    "invariance": (Invariance("x3", perturbation=1e-9, max_change=0.0), Invariance("x0", perturbation=1.0, max_change=0.01)),
    "minimum_functionality": (MinimumFunctionality([{"row": {"x0": 3.0, "x1": 2.0, "plan": "pro"}, "expected": "high"}]),
                              MinimumFunctionality([{"row": {"x0": 3.0, "x1": 2.0, "plan": "pro"}, "expected": "low"}])),
}


@pytest.mark.parametrize("case", MULTICLASS)
def test_multiclass_gate_passes_and_fails(world, case):
    ws, _, runs = world
    good, bad = MULTICLASS[case]
    assert one(ws, runs["multiclass"], good).passed and not one(ws, runs["multiclass"], bad).passed


REGRESSION = {
    "metric_threshold": (MetricThreshold("r2", min=0.5), MetricThreshold("rmse", max=0.1)),
    "slice_metric": (SliceMetric("plan", "r2", tolerance=0.5, min_rows=50), SliceMetric("plan", "rmse", tolerance=0.0, min_rows=50)),
    "directional": (Directional("x0", 1.0, "increase", min_share=0.9), Directional("x0", 1.0, "decrease", min_share=0.5)),
    "invariance": (Invariance("x3", perturbation=1e-9, max_change=0.0), Invariance("plan", values=["basic", "pro"], max_change=0.5)),
    "minimum_functionality": (MinimumFunctionality([{"row": {"x0": 2.0, "x1": 0.0, "plan": "basic"}, "min": 12.0, "max": 20.0}]),
                              MinimumFunctionality([{"row": {"x0": 2.0, "x1": 0.0, "plan": "basic"}, "max": 10.0}])),
}


@pytest.mark.parametrize("case", REGRESSION)
def test_regression_gate_passes_and_fails(world, case):
    ws, _, runs = world
    good, bad = REGRESSION[case]
    assert one(ws, runs["regression"], good).passed and not one(ws, runs["regression"], bad).passed


def test_no_worse_than_production(world):
    "No production model: passes with a note. Against production on the same holdout: the same model passes, a worse one fails."
    ws, _, runs = world
    gate = NoWorseThanProduction("auc", tolerance=0.01)
    r = one(ws, runs["good"], gate, name="nwp_model")
    assert r.passed and r.note == "no production model to compare with: passes"
    v = register_model(ws, runs["good"], "nwp_model", validate_model(ws, runs["good"], [gate], name="nwp_model"), who="ann")
    promote(ws, "nwp_model", v.version, "production", who="ann")
    same = one(ws, runs["good"], gate, name="nwp_model")
    assert same.passed and same.details["production_version"] == v.version and same.details["difference"] == 0
    worse = one(ws, runs["flat"], gate, name="nwp_model")
    assert not worse.passed and worse.value == 0.5 and worse.details["production_value"] > 0.6
    assert f"(production v{v.version}: " in worse.threshold
    assert one(ws, runs["flat"], NoWorseThanProduction("auc", tolerance=1.0), name="nwp_model").passed  # within a wide tolerance
    lower = one(ws, runs["flat"], NoWorseThanProduction("logloss", tolerance=0.0), name="nwp_model")  # lower is better for logloss
    assert not lower.passed and lower.threshold.startswith("<= ")


def test_production_model_needing_other_features_cannot_be_compared(world):
    ws, _, runs = world
    v = register_model(ws, runs["regression"], "nwp_other", validate_model(ws, runs["regression"], [ModelSize()], name="nwp_other"), who="ann")
    promote(ws, "nwp_other", v.version, "production", who="ann")
    r = one(ws, runs["good"], NoWorseThanProduction("auc"), name="nwp_other")
    assert not r.passed and "needs feature(s) ['x0', 'x1', 'x2', 'x3', 'plan'] this holdout lacks" in r.note


def test_default_gates_and_report_logged_to_the_run(world):
    ws, _, runs = world
    report = validate_model(ws, runs["good"], name="defaults")
    assert [r.gate["kind"] for r in report.results] == ["metric_threshold", "no_worse_than_production", "calibration_error", "latency_budget", "model_size"]
    assert report.passed and report.rows == 500 and report.task == "binary"
    c = ws.backend("tracking").client
    assert {a.path for a in c.list_artifacts(runs["good"], "validation")} == {"validation/report.json", "validation/report.html"}
    assert c.get_run(runs["good"]).data.tags["mlw.validation"] == "passed"
    assert load_report(ws, runs["good"]) == report
    html = report._repr_html_()
    assert "passed" in html and "metric_threshold(auc)" in html
    rejected = validate_model(ws, runs["flat"])
    assert c.get_run(runs["flat"]).data.tags["mlw.validation"] == "rejected" and "FAIL" in rejected._repr_html_()
    assert ModelValidationReport.from_dict(json.loads(json.dumps(rejected.to_dict()))).failed == rejected.failed
    assert [g.kind for g in default_gates("regression")] == ["metric_threshold", "no_worse_than_production", "latency_budget", "model_size"]
    assert [g.kind for g in default_gates("multiclass", slices=["region"])] == ["no_worse_than_production", "slice_metric", "calibration_error",
                                                                                 "latency_budget", "model_size"]


# -- bad gate configs and bad runs ------------------------------------------------------------------------------------

BAD_CONFIGS = [
    (lambda: MetricThreshold("auc"), "gate metric_threshold is invalid: set min, max or both"),
    (lambda: MetricThreshold("gini", min=0.1), "metric 'gini' is unknown; metrics: auc, average_precision, accuracy"),
    (lambda: MetricThreshold("auc", min="high"), "min must be a number, got 'high'"),
    (lambda: MetricThreshold("auc", min=0.9, max=0.1), "min 0.9 is above max 0.1"),
    (lambda: NoWorseThanProduction("auc", tolerance=-1), "tolerance must be a number >= 0, got -1"),
    (lambda: NoWorseThanProduction("auc", tolerance=float("nan")), "tolerance must be a number >= 0"),
    (lambda: SliceMetric("region", "auc", tolerance=-0.1), "tolerance must be a number >= 0"),
    (lambda: SliceMetric(None, "auc"), "column must name a column, got None"),
    (lambda: SliceMetric("region", "auc", min_rows=0), "min_rows must be an integer >= 1, got 0"),
    (lambda: CalibrationError(max_ece=2), "max_ece must be a number in (0, 1], got 2"),
    (lambda: CalibrationError(bins=1), "bins must be an integer >= 2, got 1"),
    (lambda: Invariance("x"), "give values or perturbation, not both or neither"),
    (lambda: Invariance("x", values=[]), "values must be a non-empty list"),
    (lambda: Invariance("x", perturbation=0), "perturbation must be a non-zero number"),
    (lambda: Invariance("x", perturbation=1, max_change=-1), "max_change must be a number >= 0"),
    (lambda: Invariance("x", perturbation=1, rows=0), "rows must be an integer >= 1"),
    (lambda: Directional("x", 0), "delta must be a non-zero number, got 0"),
    (lambda: Directional("x", 1, direction="up"), "direction 'up' is unknown; use 'increase' or 'decrease'"),
    (lambda: Directional("x", 1, min_share=1.5), "min_share must be a share in [0, 1], got 1.5"),
    (lambda: MinimumFunctionality([]), "cases must be a non-empty list"),
    (lambda: MinimumFunctionality([{"row": {"a": 1}}]), "case 0 needs an 'expected' class or a 'min'/'max' range"),
    (lambda: MinimumFunctionality([{"row": {"a": 1}, "expected": 1, "min": 0}]), "not both or neither"),
    (lambda: MinimumFunctionality([{"name": "x", "row": {"a": 1}, "min": "low"}]), "case 0 ('x'): min and max must be numbers"),
    (lambda: MinimumFunctionality([{"row": {"a": 1}, "expected": 1, "expect": 2}]), "key(s) ['expect'] are unknown"),
    (lambda: MinimumFunctionality(["a row"]), "case 0 needs a non-empty 'row' dict"),
    (lambda: LatencyBudget(p99_ms=0), "p99_ms must be a positive number, got 0"),
    (lambda: LatencyBudget(n=5), "n must be an integer >= 10, got 5"),
    (lambda: ModelSize(max_bytes=0), "max_bytes must be a positive integer, got 0"),
    (lambda: gate_from_dict({"kind": "nope"}), "gate 'nope' is unknown; kinds: metric_threshold, no_worse_than_production"),
    (lambda: gate_from_dict("model_size"), "gate 'str' is unknown"),
    (lambda: gate_from_dict({"kind": "model_size", "max_byte": 1}), "field(s) ['max_byte'] are unknown; fields: max_bytes"),
    (lambda: gate_from_dict({"kind": "slice_metric", "column": "region"}), "gate slice_metric: "),
    (lambda: gates_from_list({"kind": "model_size"}), "gates must be a list of gate configs or dicts, got dict"),
    (lambda: default_gates("ranking"), "task 'ranking' is unknown; tasks: binary, multiclass, regression"),
]


@pytest.mark.parametrize("i", range(len(BAD_CONFIGS)))
def test_bad_gate_config(i):
    make, msg = BAD_CONFIGS[i]
    with pytest.raises(InvalidInput) as e: make()
    assert msg in str(e.value), str(e.value)


def test_gate_configs_round_trip():
    gates = [MetricThreshold("auc", min=0.6), NoWorseThanProduction("auc", 0.01), SliceMetric("region", "auc"), CalibrationError(),
             Invariance("x", values=["a"]), Directional("x", 1.0, "decrease"), MinimumFunctionality([{"row": {"x": 1}, "expected": 1}]),
             LatencyBudget(), ModelSize()]
    assert {g.kind for g in gates} == set(GATE_KINDS)
    assert gates_from_list(json.loads(json.dumps([g.to_dict() for g in gates]))) == gates


BAD_FOR_THE_MODEL = [
    ("good", [MetricThreshold("rmse", max=1)], "metric 'rmse' does not apply to a binary model; metrics for binary: auc, average_precision, accuracy, logloss, brier"),
    ("good", [SliceMetric("region", "auc")], "column 'region' is not in the holdout; columns: amount, term_months"),
    ("good", [Invariance("colour", values=["red"])], "'colour' is not a feature of the model"),
    ("good", [Invariance("channel", values=["fax"])], "value 'fax' is not a level of 'channel'; levels: ['branch', 'broker', 'mobile', 'web']"),
    ("good", [Invariance("amount", values=["lots"])], "value 'lots' for numeric feature 'amount' is not a number"),
    ("good", [Invariance("channel", perturbation=1.0)], "feature 'channel' is text; this gate needs a numeric feature"),
    ("good", [Directional("purpose", 1.0)], "feature 'purpose' is text"),
    ("good", [MinimumFunctionality([{"row": {"colour": "red"}, "max": 0.5}])], "['colour'] are not features of the model"),
    ("good", [MinimumFunctionality([{"row": {"amount": 1.0}, "expected": "yes"}])], "expected 'yes' is not a class; classes: [0, 1]"),
    ("multiclass", [Directional("x0", 1.0)], "a directional test needs one score; a multiclass model has one per class"),
    ("multiclass", [MinimumFunctionality([{"row": {"x0": 1.0}, "min": 0.5}])], "give expected (a class) instead of min/max"),
    ("regression", [CalibrationError()], "calibration applies to binary and multiclass models, not regression"),
    ("regression", [MinimumFunctionality([{"row": {"x0": 1.0}, "expected": 1}])], "a regression model has no classes"),
]


@pytest.mark.parametrize("i", range(len(BAD_FOR_THE_MODEL)))
def test_gate_that_does_not_fit_the_model(world, i):
    ws, _, runs = world
    run, gates, msg = BAD_FOR_THE_MODEL[i]
    with pytest.raises(InvalidInput) as e: validate_model(ws, runs[run], gates + [ModelSize()], log=False)
    assert "cannot start" in str(e.value) and msg in str(e.value), str(e.value)


def test_every_problem_listed_before_any_gate_runs(world):
    ws, _, runs = world
    with pytest.raises(InvalidInput) as e:
        validate_model(ws, runs["good"], [LatencyBudget(p99_ms=1e-9), SliceMetric("region", "auc"), Invariance("colour", values=[1])])
    assert str(e.value).count("\n  - ") == 2
    assert ws.backend("tracking").client.get_run(runs["good"]).data.tags.get("mlw.validation") != "rejected"  # nothing evaluated or logged


def copy_run(ws, src, *paths, tags=None):
    "A new run in `src`'s experiment holding some of its artifacts (by folder) and its tags, or `tags`."
    c = ws.backend("tracking").client
    run = c.get_run(src)
    new = c.create_run(run.info.experiment_id, tags=run.data.tags if tags is None else tags).info.run_id
    with tempfile.TemporaryDirectory() as d:
        for p in paths: c.log_artifacts(new, c.download_artifacts(src, p, d), p)
    return new


def test_bad_runs(world):
    ws, _, runs = world
    with pytest.raises(NotFound, match="run '0+' not found in the tracking store"): validate_model(ws, "0" * 32)
    with pytest.raises(InvalidInput, match="run id None is invalid"): validate_model(ws, None)
    bare = copy_run(ws, runs["good"], tags={"mlw.kind": "search"})
    with pytest.raises(InvalidInput, match=r"is not a training run \(its tag mlw.task is None"): validate_model(ws, bare)
    no_model = copy_run(ws, runs["good"], "data", "model_info")
    with pytest.raises(InvalidInput, match="has no model: artifact booster/model.txt is missing"): validate_model(ws, no_model)
    no_holdout = copy_run(ws, runs["good"], "booster", "model_info")
    with pytest.raises(InvalidInput, match="has no holdout rows: artifact data/holdout.parquet is missing"): validate_model(ws, no_holdout)


# -- registration -----------------------------------------------------------------------------------------------------

def audit(ws, name):
    return alias_history(ws, name).select("version", "action", "alias", "actor").rows()


def test_rejected_model_is_registered_never_aliased(world):
    ws, _, runs = world
    report = validate_model(ws, runs["flat"], [MetricThreshold("auc", min=0.6), ModelSize()], name="rej_model")
    v = register_model(ws, runs["flat"], "rej_model", report, owner="dana", who="eve", reason="trying the flat model")
    assert (v.version, v.aliases) == (1, [])
    assert v.tags["mlw.validation"] == "rejected" and v.tags["mlw.gates"] == "metric_threshold(auc)=FAIL; model_size=pass"
    assert v.tags["mlw.owner"] == "dana" and v.tags["mlw.validation_summary"] == "1 of 2 gates passed; failed: metric_threshold(auc)"
    for alias in ALIASES:
        with pytest.raises(Conflict, match=r"v1 was rejected by its validation gates \(1 of 2 gates passed; failed: metric_threshold\(auc\)\) and cannot be aliased"):
            promote(ws, "rej_model", 1, alias, who="eve")
    assert get_model(ws, "rej_model").aliases == {}
    assert audit(ws, "rej_model") == [(1, "rejected", None, "eve")]
    assert alias_history(ws, "rej_model")["reason"].to_list() == ["trying the flat model"]
    assert model_versions(ws, "rej_model")[0]["status"] == "rejected"
    card = model_card(ws, "rej_model", 1)
    assert card.startswith("# rej_model v1\n\n**rejected** by its validation gates") and "| `metric_threshold(auc)` | **FAIL** | 0.5 | >= 0.6 |" in card


def test_passed_model_becomes_candidate_with_card_and_loadable_source(world):
    ws, exp, runs = world
    v = register_model(ws, runs["good"], "card_model", validate_model(ws, runs["good"], name="card_model"), owner="alice", who="bob")
    assert (v.version, v.aliases, v.tags["mlw.validation"], v.run_id) == (1, ["candidate"], "passed", runs["good"])
    assert audit(ws, "card_model") == [(1, "registered", None, "bob"), (1, "alias_set", "candidate", "bob")]
    card = model_card(ws, "card_model", "v1")
    c = ws.backend("tracking").client
    tags = c.get_run(runs["good"]).data.tags
    for part in ("# card_model v1", "**passed**", "Owner: alice", "by bob", f"training set `{tags['mlw.training_set']}`: 2,000 rows",
                 "entity rows from dataset `applications` v0", "feature view `customer_spend` v1 (offline table `fv_customer_spend` v0, built from `transactions` v0)",
                 "holdout: 500 rows", "11 inputs in model order; target `defaulted` (binary, classes [0, 1])", "`purpose` (text, 7 levels)",
                 "| auc |", "| `model_size` | pass |", f"experiment `credit_default`", f"training run `{runs['good']}`",
                 "parent search run: none (trained directly)", "dataset versions: `applications` v0, `transactions` v0", "learning_rate=0.05", "python "):
        assert part in card, part
    assert c.get_model_version("card_model", "1").description == card
    assert f"model_card/card_model-v1.md" in {a.path for a in c.list_artifacts(runs["good"], "model_card")}
    mlflow.set_tracking_uri(ws.backend("tracking").uri)
    try:
        served = mlflow.lightgbm.load_model("models:/card_model@candidate")  # what a deployment loads by alias
        h = pl.read_parquet(c.download_artifacts(runs["good"], "data/holdout.parquet", tempfile.mkdtemp()))
        m = load_run_model(ws, runs["good"])
        np.testing.assert_allclose(served.predict(m.matrix(h)), m.predict(m.matrix(h)), atol=1e-12)
    finally: mlflow.set_tracking_uri(None)
    v2 = register_model(ws, runs["good"], "card_model", validate_model(ws, runs["good"], name="card_model"), who="bob")
    assert v2.aliases == ["candidate"] and get_version(ws, "card_model", 1).aliases == []  # the candidate alias moved on
    assert audit(ws, "card_model")[2:] == [(2, "registered", None, "bob"), (1, "alias_removed", "candidate", "bob"), (2, "alias_set", "candidate", "bob")]


def test_register_bad_input(world):
    ws, _, runs = world
    report = validate_model(ws, runs["good"], [ModelSize()], name="bad_in", log=False)
    with pytest.raises(InvalidInput, match="model name 'Bad Name' is invalid"): register_model(ws, runs["good"], "Bad Name", report)
    with pytest.raises(InvalidInput, match="report is a dict"): register_model(ws, runs["good"], "bad_in", report.to_dict())
    with pytest.raises(InvalidInput, match=f"the report is for run '{runs['good']}', not '{runs['flat']}'"): register_model(ws, runs["flat"], "bad_in", report)
    with pytest.raises(InvalidInput, match="with the production model of 'bad_in', not 'other_name'; validate it again with name='other_name'"):
        register_model(ws, runs["good"], "other_name", report)
    with pytest.raises(InvalidInput, match="who '  ' is invalid"): register_model(ws, runs["good"], "bad_in", report, who="  ")
    no_mlflow_model = copy_run(ws, runs["good"], "booster", "data", "model_info")  # gates can run, but nothing to register
    r = validate_model(ws, no_mlflow_model, [ModelSize()], name="bad_in")
    with pytest.raises(InvalidInput, match=f"run '{no_mlflow_model}' has no model to register: it logged no MLflow model named 'model'"):
        register_model(ws, no_mlflow_model, "bad_in", r)
    with pytest.raises(NotFound, match="model 'bad_in' not found"): get_model(ws, "bad_in")  # nothing was half-made
    with ws.metadata.begin() as c: assert c.execute(sa.select(model_audit).where(model_audit.c.model == "bad_in")).first() is None


def test_unknown_model_version_alias(world):
    ws, _, runs = world
    v = register_model(ws, runs["good"], "lookup_model", validate_model(ws, runs["good"], [ModelSize()], name="lookup_model"), who="x")
    with pytest.raises(NotFound, match="model 'lookup_modle' not found; models: .*lookup_model"): promote(ws, "lookup_modle", 1, "staging")
    with pytest.raises(NotFound, match="model 'lookup_model' has no version 7; versions: 1$"): promote(ws, "lookup_model", 7, "staging")
    for bad in ("latest", 0, -1, "v", None, 1.5, "1.0"):
        with pytest.raises(InvalidInput, match="is invalid: give a version number such as 3 or v3"): promote(ws, "lookup_model", bad, "staging")
    for alias in ("prod", "Production", "champion", None):
        with pytest.raises(InvalidInput, match=r"alias .* is not allowed; aliases: candidate, staging, production"): promote(ws, "lookup_model", 1, alias)
    with pytest.raises(InvalidInput, match="not allowed"): alias_history(ws, "lookup_model", "prod")
    with pytest.raises(InvalidInput, match="not allowed"): version_at(ws, "lookup_model", "prod", dt.date.today())
    with pytest.raises(NotFound, match="model 'nothing' not found"): alias_history(ws, "nothing")
    with pytest.raises(NotFound, match="model 'nothing' not found"): version_at(ws, "nothing", "production", dt.date.today())
    with pytest.raises(NotFound, match="model 'nothing' not found"): model_versions(ws, "nothing")
    with pytest.raises(NotFound, match="model 'nothing' not found"): archive(ws, "nothing", 1)
    with pytest.raises(InvalidInput, match="has no time zone"): version_at(ws, "lookup_model", "production", dt.datetime(2026, 1, 1))
    with pytest.raises(InvalidInput, match="when must be a datetime or a date, got str"): version_at(ws, "lookup_model", "production", "2026-01-01")
    assert sorted(promote(ws, "lookup_model", "v1", "staging", who="x").aliases) == ["candidate", "staging"]
    n = alias_history(ws, "lookup_model").height
    assert sorted(promote(ws, "lookup_model", 1, "staging", who="x").aliases) == ["candidate", "staging"]  # already there: no change, no row
    assert alias_history(ws, "lookup_model").height == n


# -- history ----------------------------------------------------------------------------------------------------------

def test_which_version_was_in_production_on_a_given_day(world):
    ws, _, runs = world
    name, rep = "hist_model", lambda: validate_model(ws, runs["good"], [ModelSize()], name="hist_model", log=False)
    for _ in range(3): register_model(ws, runs["good"], name, rep(), who="ci")
    promote(ws, name, 1, "production", who="alice", reason="first release")
    promote(ws, name, 2, "production", who="bob", reason="retrained")
    promote(ws, name, 3, "production", who="carol", reason="retrained again")
    promote(ws, name, 2, "production", who="dave", reason="rollback: v3 drifted")
    archive(ws, name, 2, who="erin", reason="retired")
    with ws.metadata.begin() as c:
        rows = c.execute(sa.select(model_audit.c.id, model_audit.c.version, model_audit.c.action).where(
            model_audit.c.model == name, model_audit.c.alias == "production").order_by(model_audit.c.id)).all()
    moves = [(r.version, r.action) for r in rows]
    assert moves == [(1, "alias_set"), (1, "alias_removed"), (2, "alias_set"), (2, "alias_removed"), (3, "alias_set"),
                     (3, "alias_removed"), (2, "alias_set"), (2, "alias_removed")]
    # the changes moved to past days at noon UTC, as if made then (a history test cannot wait for days)
    when = [dt.date(2026, 3, 1), dt.date(2026, 3, 5), dt.date(2026, 3, 5), dt.date(2026, 3, 9), dt.date(2026, 3, 9), dt.date(2026, 3, 12),
            dt.date(2026, 3, 12), dt.date(2026, 3, 20)]
    with ws.metadata.begin() as c:
        for r, d in zip(rows, when): c.execute(model_audit.update().where(model_audit.c.id == r.id).values(at=dt.datetime.combine(d, dt.time(12), UTC)))
    answers = {dt.date(2026, 2, 28): None, dt.date(2026, 3, 1): 1, dt.date(2026, 3, 4): 1, dt.date(2026, 3, 5): 2, dt.date(2026, 3, 8): 2,
               dt.date(2026, 3, 9): 3, dt.date(2026, 3, 11): 3, dt.date(2026, 3, 12): 2, dt.date(2026, 3, 19): 2, dt.date(2026, 3, 20): None}
    assert {d: version_at(ws, name, "production", d) for d in answers} == answers
    assert version_at(ws, name, "production", dt.datetime(2026, 3, 5, 11, 59, tzinfo=UTC)) == 1  # the morning of day 2
    assert version_at(ws, name, "production", dt.datetime(2026, 3, 5, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == 2  # 13:00 UTC
    h = alias_history(ws, name, "production")
    assert h.height == 8 and h["actor"].to_list() == ["alice", "bob", "bob", "carol", "carol", "dave", "dave", "erin"]
    assert h.filter(pl.col("action") == "alias_set")["reason"].to_list() == ["first release", "retrained", "retrained again", "rollback: v3 drifted"]
    assert h["at"].dtype == pl.Datetime("us", "UTC") and h["at"].is_sorted()


def test_archive(world):
    ws, _, runs = world
    name = "arch_model"
    register_model(ws, runs["good"], name, validate_model(ws, runs["good"], [ModelSize()], name=name, log=False), who="ci")
    promote(ws, name, 1, "staging", who="ann"); promote(ws, name, 1, "production", who="ann")
    v = archive(ws, name, 1, who="ann", reason="superseded")
    assert v.aliases == [] and v.tags["mlw.archived"] == "true" and get_model(ws, name).aliases == {}
    assert audit(ws, name)[-4:] == [(1, "alias_removed", "candidate", "ann"), (1, "alias_removed", "staging", "ann"),
                                    (1, "alias_removed", "production", "ann"), (1, "archived", None, "ann")]
    n = alias_history(ws, name).height
    assert archive(ws, name, 1, who="ann").tags["mlw.archived"] == "true" and alias_history(ws, name).height == n  # again: nothing to do
    with pytest.raises(Conflict, match="v1 is archived and cannot be aliased 'production'"): promote(ws, name, 1, "production")
    assert model_versions(ws, name)[0]["status"] == "archived"
    assert [m for m in list_models(ws) if m["name"] == name] == [
        {"name": name, "versions": 1, "latest": 1, "aliases": {}, "owner": "ci", "updated_at": get_model_updated(ws, name)}]


def get_model_updated(ws, name):
    return dt.datetime.fromtimestamp(get_model(ws, name).last_updated_timestamp / 1000, UTC)


# -- all or nothing ---------------------------------------------------------------------------------------------------

def rename_table(path, old, new):
    con = sqlite3.connect(path)
    try: con.execute(f"ALTER TABLE {old} RENAME TO {new}"); con.commit()
    finally: con.close()


def test_failed_audit_write_undoes_the_mlflow_change(world):
    ws, _, runs = world
    name = "atomic_model"
    register_model(ws, runs["good"], name, validate_model(ws, runs["good"], [ModelSize()], name=name, log=False), who="ci")
    db, before = ws.root / "metadata.db", audit(ws, name)
    rename_table(db, "model_audit", "model_audit_away")
    try:
        with pytest.raises(Exception, match="model_audit"): promote(ws, name, 1, "production", who="mallory")
        with pytest.raises(Exception, match="model_audit"): archive(ws, name, 1, who="mallory")
        with pytest.raises(Exception, match="model_audit"):
            register_model(ws, runs["good"], name, validate_model(ws, runs["good"], [ModelSize()], name=name, log=False), who="mallory")
        with pytest.raises(Exception, match="model_audit"):
            register_model(ws, runs["good"], "atomic_new", validate_model(ws, runs["good"], [ModelSize()], name="atomic_new", log=False), who="mallory")
    finally: rename_table(db, "model_audit_away", "model_audit")
    mv = get_version(ws, name, 1)
    assert mv.aliases == ["candidate"] and "mlw.archived" not in mv.tags  # the alias change and the archive tag were undone
    assert [v["version"] for v in model_versions(ws, name)] == [1]  # the second version was deleted again
    with pytest.raises(NotFound): get_model(ws, "atomic_new")  # and the model it would have created
    assert audit(ws, name) == before


def frozen(db, table):
    "SQL triggers that make every write to `table` of SQLite file `db` fail (a database refusing one kind of change); undo with thaw."
    con = sqlite3.connect(db)
    try:
        for op in ("INSERT", "UPDATE", "DELETE"):
            con.execute(f"CREATE TRIGGER frozen_{table}_{op.lower()} BEFORE {op} ON {table} BEGIN SELECT RAISE(ABORT, '{table} is frozen'); END")
        con.commit()
    finally: con.close()


def thaw(db, table):
    con = sqlite3.connect(db)
    try:
        for op in ("insert", "update", "delete"): con.execute(f"DROP TRIGGER frozen_{table}_{op}")
        con.commit()
    finally: con.close()


def test_failed_mlflow_call_writes_no_row_and_undoes_earlier_calls(world):
    "MLflow's database refuses alias changes: promote fails with no audit row; archive, which tagged the version first, takes the tag back."
    ws, _, runs = world
    name, db = "atomic_mlflow", ws.root / "mlflow.db"
    register_model(ws, runs["good"], name, validate_model(ws, runs["good"], [ModelSize()], name=name, log=False), who="ci")
    before = audit(ws, name)
    frozen(db, "registered_model_aliases")
    try:
        with pytest.raises(Exception, match="registered_model_aliases is frozen"): promote(ws, name, 1, "production", who="mallory")
        with pytest.raises(Exception, match="registered_model_aliases is frozen"): archive(ws, name, 1, who="mallory")
    finally: thaw(db, "registered_model_aliases")
    mv = get_version(ws, name, 1)
    assert audit(ws, name) == before and mv.aliases == ["candidate"] and "mlw.archived" not in mv.tags


# -- the command line -------------------------------------------------------------------------------------------------

def mlw(*args, cwd):
    return subprocess.run([MLW, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def user_error(p, *contains):
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlw: error: ") and p.returncode == 2, (p.returncode, p.stderr)
    for c in contains: assert c in lines[0], (c, lines[0])


def test_mlw_models(world, tmp_path):
    ws, _, runs = world
    name = "cli_model"
    register_model(ws, runs["good"], name, validate_model(ws, runs["good"], [ModelSize()], name=name, log=False), owner="alice", who="ci")
    register_model(ws, runs["flat"], name, validate_model(ws, runs["flat"], [MetricThreshold("auc", min=0.6)], name=name, log=False), who="ci")
    w = ["--workspace", ws.root]
    p = mlw("models", *w, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    line = next(l for l in p.stdout.splitlines() if l.startswith(name))
    assert "2 version(s)  latest v2  candidate v1  owner alice" in line, line
    p = mlw("models", "promote", name, "v1", "production", "--who", "alice", "--reason", "go live", *w, cwd=tmp_path)
    assert (p.returncode, p.stdout) == (0, f"{name} v1 is now production\n"), p.stderr
    p = mlw("models", "promote", name, "1", "production", *w, cwd=tmp_path)
    assert p.stdout == f"{name} v1 already holds production; nothing changed\n"
    assert version_at(ws, name, "production", dt.datetime.now(UTC)) == 1
    assert alias_history(ws, name, "production").select("actor", "reason").rows() == [("alice", "go live")]
    p = mlw("models", "show", name, *w, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0] == f"model {name}  owner alice  aliases: candidate v1, production v1"
    assert out[1].startswith("  v2    rejected   -") and "0 of 1 gates passed; failed: metric_threshold(auc)" in out[1]
    assert out[2].startswith(f"  v1    passed     {'candidate,production':<30} run {runs['good']}"), out[2]
    assert out[3] == "recent changes:" and out[-1].endswith("v1    alias_set     production by alice  (go live)")
    p = mlw("models", "show", name, "2", *w, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.startswith(f"# {name} v2\n\n**rejected**"), p.stderr
    user_error(mlw("models", "promote", name, "2", "staging", *w, cwd=tmp_path), f"model '{name}' v2 was rejected by its validation gates")
    user_error(mlw("models", "promote", name, "1", "prod", *w, cwd=tmp_path), "alias 'prod' is not allowed; aliases: candidate, staging, production")
    user_error(mlw("models", "promote", name, "9", "staging", *w, cwd=tmp_path), f"model '{name}' has no version 9; versions: 1, 2")
    user_error(mlw("models", "show", "no_such_model", *w, cwd=tmp_path), "model 'no_such_model' not found; models: ")
    user_error(mlw("models", "show", name, "latest", *w, cwd=tmp_path), "version 'latest' is invalid")
    user_error(mlw("models", "promote", name, "1", *w, cwd=tmp_path), "`mlw models promote` takes 3 argument(s), got 2; usage: mlw models promote NAME VERSION ALIAS")
    user_error(mlw("models", "show", *w, cwd=tmp_path), "`mlw models show` takes 1 or 2 argument(s), got 0")
    user_error(mlw("models", "list", "extra", *w, cwd=tmp_path), "`mlw models list` takes 0 argument(s), got 1")
    user_error(mlw("models", "archive", name, *w, cwd=tmp_path), "usage: mlw models archive NAME VERSION")
    p = mlw("models", "archive", name, "1", "--who", "bob", "--reason", "replaced", *w, cwd=tmp_path)
    assert (p.returncode, p.stdout) == (0, f"archived {name} v1; removed alias(es): candidate, production\n"), p.stderr
    assert version_at(ws, name, "production", dt.datetime.now(UTC)) is None
    p = mlw("models", *w, cwd=tmp_path)
    assert f"{name}" in p.stdout and "no aliases" in next(l for l in p.stdout.splitlines() if l.startswith(name))


def test_mlw_models_on_an_empty_workspace(tmp_path):
    assert mlw("init", tmp_path / "ws", cwd=tmp_path).returncode == 0
    p = mlw("models", "--workspace", tmp_path / "ws", cwd=tmp_path)
    assert (p.returncode, p.stdout) == (0, "no registered models yet; register one with register_model(ws, run_id, name, report)\n"), p.stderr
    user_error(mlw("models", "show", "x", "--workspace", tmp_path / "ws", cwd=tmp_path), "model 'x' not found; models: (none yet")
