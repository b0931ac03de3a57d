"""The training job for real: a local fit logging every artifact and tag the registry relies on, the MLflow flavour and
the native booster agreeing, a distributed fit on a Dask LocalCluster of worker processes, trainings in parallel threads
into two workspaces, every bad input with its error and no run left RUNNING, an unreachable scheduler.
Real MLflow stores in temp workspaces, real Dask clusters; no mocks."""
import json, os, re, threading

import numpy as np
import pandas as pd
import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2-core machines: every LightGBM below runs on one thread

import mlflow
import optuna
from toy import toy
from mlops_workbench.core.errors import InvalidInput, MLWError, NotFound
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.core.storage import write_dataset
from mlops_workbench.experiments.definition import Experiment, FloatParam, KFold, TimeSplit, demo_experiment, prepare_data
from mlops_workbench.experiments.search import search
from mlops_workbench.experiments.results import _runs
from mlops_workbench.features.offline import get_training_set
from mlops_workbench.training.fit import holdout_metrics, load_booster, load_holdout, model_info, model_inputs, train

pytestmark = pytest.mark.timeout(600)
optuna.logging.set_verbosity(optuna.logging.WARNING)

PLOTS_CLASSIFIER = ["calibration", "feature_importance", "learning_curves", "pr", "roc", "shap_summary"]
INFO = ["model_info/environment.json", "model_info/features.json", "model_info/training_data.json", "model_info/training_set.json"]


def artifacts(client, run_id, path=""):
    "Every artifact file of a run, recursively."
    return sorted(x for f in client.list_artifacts(run_id, path) for x in (artifacts(client, run_id, f.path) if f.is_dir else [f.path]))


def runs_by_status(ws, status):
    c = ws.backend("tracking").client
    return [r for e in c.search_experiments() for r in _runs(c, e.experiment_id, f"attributes.status = '{status}'")]


def all_runs(ws):
    c = ws.backend("tracking").client
    return [r for e in c.search_experiments() for r in _runs(c, e.experiment_id, "")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    "The credit-default demo with a short search (MLflow's migrations cost seconds per store: one workspace for the module)."
    ws = Workspace.init(tmp_path_factory.mktemp("train") / "ws")
    exp = demo_experiment(ws, n_applications=2000, trials=3, num_boost_round=60)
    found = search(ws, exp, report=False, progress=False)
    yield ws, exp, found
    ws.close()


def toy_experiment(name, task, **kw):
    metric = {"binary": "auc", "multiclass": "multi_logloss", "regression": "rmse"}[task]
    return Experiment(**{**dict(name=name, target="label", task=task, dataset=name, exclude=["region_id"], split=TimeSplit("t", 0.25),
                                metric=metric, search_space={"learning_rate": FloatParam(0.05, 0.3)}, params={"num_threads": 1},
                                num_boost_round=40), **kw})


# -- a local training -------------------------------------------------------------------------------------------------

def test_local_training_logs_every_artifact_and_tag(demo):
    ws, exp, found = demo
    res = train(ws, exp)  # the search's best parameters
    client = ws.backend("tracking").client
    run = client.get_run(res.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == ws.backend("tracking").experiment_id(exp.name)
    assert artifacts(client, res.run_id) == sorted(["booster/model.txt", "data/holdout.parquet", *INFO, *[f"plots/{p}.png" for p in PLOTS_CLASSIFIER]])
    tags = run.data.tags
    data = prepare_data(ws, exp)
    assert {k: tags[k] for k in ("mlw.kind", "mlw.experiment", "mlw.task", "mlw.target", "mlw.compute")} == {
        "mlw.kind": "training", "mlw.experiment": exp.name, "mlw.task": "binary", "mlw.target": "defaulted", "mlw.compute": "local://"}
    assert json.loads(tags["mlw.features"]) == data.features == res.features
    assert tags["mlw.training_set"] == data.source["training_set"] == res.training_set_id
    assert json.loads(tags["mlw.feature_views"]) == {"customer_spend": 1}
    assert res.params == found.best_params and res.params["num_iterations"] == load_booster(ws, res.run_id).num_trees()
    assert res.model_uri == f"runs:/{res.run_id}/model"

    # metrics: the holdout's, and a learning curve per round on both sides
    m = run.data.metrics
    assert {"auc", "logloss", "accuracy", "average_precision", "brier"} <= set(m) and 0.5 < m["auc"] <= 1
    n = res.params["num_iterations"]
    for key in ("train_logloss", "holdout_logloss", "train_auc", "holdout_auc"):
        hist = client.get_metric_history(res.run_id, key)
        assert [h.step for h in sorted(hist, key=lambda h: h.step)] == list(range(1, n + 1))
    assert sorted(client.get_metric_history(res.run_id, "holdout_auc"), key=lambda h: h.step)[-1].value == pytest.approx(m["auc"], abs=1e-9)

    # provenance files
    d = client.download_artifacts(res.run_id, "model_info")
    ts = json.load(open(os.path.join(d, "training_set.json")))
    assert ts["id"] == res.training_set_id and ts["views"] == json.loads(json.dumps(get_training_set(ws, res.training_set_id)["views"]))
    env = json.load(open(os.path.join(d, "environment.json")))
    assert {"python", "platform", "packages"} <= set(env) and {"lightgbm", "polars", "numpy", "mlflow"} <= set(env["packages"])
    info = model_info(ws, res.run_id)
    assert info["features"] == res.features and info["classes"] == [0, 1] and set(info["categorical"]) == {"purpose", "channel"}

    # the holdout: model inputs in model order, the target, the carried id / time columns; it reproduces the metrics
    h = load_holdout(ws, res.run_id)
    assert h.columns[:len(res.features) + 1] == res.features + ["defaulted"]
    assert {"application_id", "customer_id", "event_timestamp"} <= set(h.columns[len(res.features) + 1:])
    assert h["channel"].dtype == pl.String and set(h["channel"].unique()) <= {"branch", "broker", "mobile", "web"}
    assert h.height == len(data.folds[0][1])
    booster = load_booster(ws, res.run_id)
    X = model_inputs(h, info)
    assert holdout_metrics(exp, h["defaulted"].to_numpy(), booster.predict(X))["auc"] == pytest.approx(m["auc"], abs=1e-12)

    # the MLflow flavour and the native booster are the same model
    mlflow.set_tracking_uri(ws.backend("tracking").uri)
    try:
        flavour = mlflow.lightgbm.load_model(res.model_uri)
        np.testing.assert_allclose(flavour.predict(X), booster.predict(X), rtol=0, atol=1e-12)
        pyfunc = mlflow.pyfunc.load_model(res.model_uri)
        assert pyfunc.metadata.get_input_schema().input_names() == res.features
        np.testing.assert_allclose(np.asarray(pyfunc.predict(pd.DataFrame(X, columns=res.features))), booster.predict(X), rtol=0, atol=1e-12)
        assert client.get_logged_model(res.model_id).experiment_id == run.info.experiment_id
    finally:
        mlflow.set_tracking_uri(None)


def test_params_given_parent_run_and_name(demo):
    ws, exp, found = demo
    res = train(ws, exp, {"learning_rate": 0.1, "num_leaves": 7, "n_estimators": 25}, run_name="hand picked", parent_run_id=found.parent_run_id)
    run = ws.backend("tracking").client.get_run(res.run_id)
    assert run.info.run_name == "hand picked" and run.data.tags["mlflow.parentRunId"] == found.parent_run_id
    assert res.params["num_iterations"] == 25 and res.params["num_leaves"] == 7 and res.params["objective"] == "binary"
    assert run.data.params["num_leaves"] == "7" and load_booster(ws, res.run_id).num_trees() == 25
    # prepared data passed in: the recorded training set is rebuilt for the holdout's carried columns
    data = prepare_data(ws, exp)
    again = train(ws, exp, {"learning_rate": 0.1, "num_leaves": 7, "n_estimators": 25}, data=data)
    h = load_holdout(ws, again.run_id)
    assert again.training_set_id == data.source["training_set"] and {"application_id", "customer_id"} <= set(h.columns)
    assert h["application_id"].to_list() == load_holdout(ws, res.run_id)["application_id"].to_list()
    np.testing.assert_array_equal(load_booster(ws, again.run_id).predict(model_inputs(h, model_info(ws, again.run_id))),
                                  load_booster(ws, res.run_id).predict(model_inputs(h, model_info(ws, res.run_id))))  # deterministic


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks_from_a_dataset(ws, task):
    write_dataset(ws, f"toy_{task}", toy(task), source={"kind": "test", "location": "toy()"})
    exp = toy_experiment(f"toy_{task}", task)
    res = train(ws, exp, {"learning_rate": 0.1})
    client = ws.backend("tracking").client
    tags = client.get_run(res.run_id).data.tags
    assert tags["mlw.training_set"] == "" and tags["mlw.dataset"] == f"toy_{task}@0" and res.training_set_id is None
    plots = {"multiclass": ["calibration", "feature_importance", "learning_curves", "pr", "roc", "shap_summary"],
             "regression": ["feature_importance", "learning_curves", "residuals", "shap_summary"]}[task]
    assert [p for p in artifacts(client, res.run_id) if p.startswith("plots/")] == [f"plots/{p}.png" for p in plots]
    want = {"multiclass": {"logloss", "accuracy", "multi_logloss"}, "regression": {"rmse", "mae", "r2"}}[task]
    assert want <= set(res.metrics)
    h = load_holdout(ws, res.run_id)
    assert h.columns == ["x0", "x1", "x2", "x3", "plan", "label", "region_id", "t"]  # inputs, target, carried
    X = model_inputs(h, model_info(ws, res.run_id))
    mlflow.set_tracking_uri(ws.backend("tracking").uri)
    try: np.testing.assert_allclose(mlflow.lightgbm.load_model(res.model_uri).predict(X), load_booster(ws, res.run_id).predict(X), atol=1e-12)
    finally: mlflow.set_tracking_uri(None)
    if task == "multiclass": assert load_booster(ws, res.run_id).predict(X).shape == (h.height, 3)


def test_a_plain_table_of_inputs_and_target(ws):
    "No id and no time column: every column is an input or the target, so the holdout carries nothing beside them."
    df = toy("regression").select("x0", "x1", "plan", "label").with_columns(pl.col("plan").replace({"pro": None}))  # text with nulls
    exp = Experiment(name="plain", target="label", task="regression", split=KFold(k=4), metric="rmse",
                     search_space={"learning_rate": FloatParam(0.05, 0.3)}, params={"num_threads": 1}, num_boost_round=30)
    res = train(ws, exp, {"learning_rate": 0.1}, data=df)
    h = load_holdout(ws, res.run_id)
    assert h.columns == ["x0", "x1", "plan", "label"] and h.height == df.height // 4
    assert h["plan"].null_count() > 0 and set(h["plan"].drop_nulls()) <= {"basic", "plus"}
    np.testing.assert_allclose(load_booster(ws, res.run_id).predict(model_inputs(h, model_info(ws, res.run_id))).mean(), h["label"].mean(), rtol=0.2)

def test_trainings_in_parallel_threads_do_not_cross(tmp_path):
    "Two workspaces (two tracking stores), one training each in its own thread: each model lands in its own store."
    wss = [Workspace.init(tmp_path / f"ws{i}") for i in range(2)]
    for w in wss: write_dataset(w, "toy_binary", toy("binary"), source={"kind": "test", "location": "toy()"})
    out, errors = {}, []
    def go(i):
        try: out[i] = train(wss[i], toy_experiment("toy_binary", "binary"), {"learning_rate": 0.1, "num_iterations": 20 + 10 * i})
        except BaseException as e: errors.append(e)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors, errors
    for i, w in enumerate(wss):
        client = w.backend("tracking").client
        assert client.get_run(out[i].run_id).info.status == "FINISHED"
        assert client.get_logged_model(out[i].model_id).source_run_id == out[i].run_id  # the flavour went to this workspace's store
        assert len(all_runs(w)) == 1
        mlflow.set_tracking_uri(w.backend("tracking").uri)
        try: assert mlflow.lightgbm.load_model(out[i].model_uri).num_trees() == 20 + 10 * i
        finally: mlflow.set_tracking_uri(None)
        w.close()


# -- on a Dask cluster ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster
    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                     env={"OMP_NUM_THREADS": "1"})
    yield c
    c.close()


def test_dask_training_on_a_local_cluster(tmp_path, cluster):
    ws = Workspace.init(tmp_path / "ws", backends={"compute": cluster.scheduler_address})
    exp = demo_experiment(ws, n_applications=2000, num_boost_round=60)
    res = train(ws, exp, {"learning_rate": 0.1, "num_leaves": 15, "num_iterations": 40})
    client = ws.backend("tracking").client
    run = client.get_run(res.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlw.compute"] == cluster.scheduler_address == res.compute
    assert artifacts(client, res.run_id) == sorted(["booster/model.txt", "data/holdout.parquet", *INFO, *[f"plots/{p}.png" for p in PLOTS_CLASSIFIER]])
    booster = load_booster(ws, res.run_id)
    assert booster.num_trees() == 40 and booster.feature_name() == res.features
    assert res.metrics["auc"] > 0.6  # a real model, not a constant
    assert len(client.get_metric_history(res.run_id, "holdout_auc")) == 40
    h = load_holdout(ws, res.run_id)
    X = model_inputs(h, model_info(ws, res.run_id))
    mlflow.set_tracking_uri(ws.backend("tracking").uri)
    try: np.testing.assert_allclose(mlflow.lightgbm.load_model(res.model_uri).predict(X), booster.predict(X), atol=1e-12)
    finally: mlflow.set_tracking_uri(None)
    # the same job on one machine logs the same artifacts
    local = train(ws, exp, {"learning_rate": 0.1, "num_leaves": 15, "num_iterations": 40}, compute="local://")
    assert artifacts(client, local.run_id) == artifacts(client, res.run_id)
    assert set(local.metrics) == set(res.metrics)
    ws.close()


def test_unreachable_scheduler_errors_before_any_run(tmp_path):
    ws = Workspace.init(tmp_path / "ws", backends={"compute": "tcp://127.0.0.1:1?timeout=1"})
    write_dataset(ws, "toy_binary", toy("binary"), source={"kind": "test", "location": "toy()"})
    with pytest.raises(MLWError, match=r"'tcp://127.0.0.1:1': the Dask scheduler is unreachable"):
        train(ws, toy_experiment("toy_binary", "binary"), {"learning_rate": 0.1})
    assert all_runs(ws) == []
    ws.close()


# -- bad input ------------------------------------------------------------------------------------------------------

BAD = {
    "empty": (lambda df: df.head(0), "has no rows"),
    "target missing": (lambda df: df.drop("label"), "target 'label' is not a column"),
    "target constant": (lambda df: df.with_columns(label=pl.lit(1)), "has a single class (1)"),
    "target null": (lambda df: df.with_columns(label=pl.when(pl.col("x0") > 1).then(None).otherwise("label")), "null value"),
    "target NaN": (lambda df: df.with_columns(label=pl.when(pl.col("x0") > 1).then(float("nan")).otherwise(pl.col("label").cast(pl.Float64))), "NaN or infinite"),
    "target inf": (lambda df: df.with_columns(label=pl.col("label").cast(pl.Float64).replace(1.0, float("inf"))), "NaN or infinite"),
    "single class": (lambda df: df.filter(pl.col("label") == 0), "has a single class (0)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_before_a_run(demo, case):
    ws, _, _ = demo
    change, msg = BAD[case]
    before = len(all_runs(ws))
    exp = toy_experiment("bad_input", "binary", dataset=None)
    with pytest.raises(InvalidInput, match=re.escape(msg)):
        train(ws, exp, {"learning_rate": 0.1}, data=change(toy("binary")))
    assert len(all_runs(ws)) == before and runs_by_status(ws, "RUNNING") == []


def test_constant_regression_target_and_missing_class(ws):
    df = toy("regression")
    with pytest.raises(InvalidInput, match="is constant"):
        train(ws, toy_experiment("reg", "regression", dataset=None), {}, data=df.with_columns(label=pl.lit(3.0)))
    # a multiclass target whose class 2 only occurs in the holdout (the latest quarter of the rows): no model could learn it
    m = toy("multiclass").with_columns(label=pl.when(pl.int_range(pl.len()) >= 1125).then("label").otherwise(pl.col("label").clip(0, 1)))
    with pytest.raises(InvalidInput, match=r"class\(es\) \[2\] have no training rows"):
        train(ws, toy_experiment("multi", "multiclass", dataset=None), {}, data=m)
    assert all_runs(ws) == []


def test_parameter_errors(demo):
    ws, exp, _ = demo
    before = len(all_runs(ws))
    with pytest.raises(InvalidInput, match="'num_leafs' is not a LightGBM parameter"): train(ws, exp, {"num_leafs": 8})
    with pytest.raises(InvalidInput, match="contradicts its task 'binary'"): train(ws, exp, {"objective": "regression"})
    with pytest.raises(InvalidInput, match="num_iterations must be an integer >= 1"): train(ws, exp, {"num_iterations": 0})
    with pytest.raises(NotFound, match="parent run"): train(ws, exp, {}, parent_run_id="f" * 32)
    other = Experiment.from_dict({**exp.to_dict(), "name": "never_searched"})
    with pytest.raises(NotFound, match="has no search in this workspace"): train(ws, other)
    assert len(all_runs(ws)) == before


def test_failure_after_the_run_exists_marks_it_failed(demo):
    ws, exp, _ = demo
    with pytest.raises(MLWError, match="the run is marked FAILED") as e:
        train(ws, exp, {"num_leaves": 1, "num_iterations": 5})  # LightGBM rejects the value in the fit
    run_id = str(e.value).split("training run ")[1].split()[0]
    run = ws.backend("tracking").client.get_run(run_id)
    assert run.info.status == "FAILED" and "num_leaves" in run.data.tags["mlw.error"]
    assert runs_by_status(ws, "RUNNING") == []
