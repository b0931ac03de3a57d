"""Monitors and the retraining loop on a second, differently shaped model (`delivery_time`: a regression, no id column,
text zones with nulls, the order date written as text), with its traffic written to the inference log as the gateway
writes it (`InferenceLog`), so each window is exactly what the test says it is.

Bad input and faults, each its own test: an empty window, a feature missing from the current data, a feature whose
type changed, all-null and constant features, new categorical levels, labels that never arrive, labels that breach a
performance bound, a retraining whose pipeline fails (the alert stays open, nothing is registered), and a trigger
firing twice at once (one retraining, not two). Then the loop for real on this model: a drift alert starts the `train`
pipeline through the orchestrator on a fresh study, the gates judge the new version against production on its
holdout, and the record links the alert, the data window, the pipeline run, the training run and the version.
(The demo's binary credit model goes through the same loop, with a canary, in test_dashboard_serving's demo test.)"""
import datetime as dt
import json
import threading
import time
import uuid

import numpy as np
import polars as pl
import pytest

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 9, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)


def orders(rng, n, far=1.0, zones=("north", "south", "east"), null_zone=0.05):
    d = rng.gamma(2, 2, n) * far
    items = rng.integers(1, 8, n)
    zone = rng.choice(zones, n).astype(object)
    zone[rng.random(n) < null_zone] = None
    minutes = 10 + 3 * d + 1.5 * items + (zone == "east") * 5 + rng.normal(0, 2, n)
    return pl.DataFrame({"distance_km": d, "items": items, "zone": pl.Series(list(zone), dtype=pl.String), "minutes": minutes})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "delivery_time v1 trained on 6,000 orders, registered and deployed to production (direct); the experiment as YAML in the workspace."
    from mlops_workbench.core.storage import write_dataset
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.deploy.rollout import deploy
    from mlops_workbench.experiments.definition import Experiment, IntParam, TimeSplit
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import load_run_model, validate_model
    from mlops_workbench.registry.versions import register_model
    from mlops_workbench.training.fit import train
    ws = Workspace.init(tmp_path_factory.mktemp("monitoring") / "ws")
    rng = np.random.default_rng(0)
    hist = orders(rng, 6000).with_columns(placed_at=pl.datetime_range(dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 1) + dt.timedelta(hours=5999), "1h", eager=True, time_zone="UTC"))
    hist = hist.with_columns(placed_on=pl.col("placed_at").dt.strftime("%Y-%m-%d"))  # a date as text, never an input
    write_dataset(ws, "orders", hist, source={"kind": "test", "location": "orders()"})
    exp = Experiment("delivery_time", target="minutes", task="regression", dataset="orders", exclude=["placed_at", "placed_on"],
                     split=TimeSplit("placed_at", valid_size=0.25), search_space={"num_leaves": IntParam(4, 15)}, trials=2, num_boost_round=60)
    ws.path("pipelines").mkdir(exist_ok=True)
    ws.path("pipelines", "delivery_time.yaml").write_text(exp.to_yaml())
    run = train(ws, exp, {"num_leaves": 7}).run_id
    register_model(ws, run, "delivery_time", validate_model(ws, run, default_gates("regression")), who="test")
    assert deploy(ws, "delivery_time/1", "production", "direct", checks=False, who="test").state == "succeeded"
    yield {"ws": ws, "rng": rng, "model": load_run_model(ws, run)}
    ws.close()


def log_traffic(w, frame, start, drop=(), ids=None, as_text=()):
    "Predictions of `frame` by v1 logged from `start` (3 s apart), features as the gateway logs them; request ids returned."
    from mlops_workbench.serving.inference_log import InferenceLog
    rm = w["model"]
    preds = rm.predict(rm.matrix(frame))
    ids = ids or [uuid.uuid4().hex for _ in range(frame.height)]
    log = InferenceLog(w["ws"])
    for i, (row, p) in enumerate(zip(frame.drop("minutes").to_dicts(), preds)):
        row = {k: (str(v) if k in as_text else v) for k, v in row.items() if k not in drop}
        feats = json.dumps(row)
        log.log({"request_id": ids[i], "row": 0, "at": start + dt.timedelta(seconds=3 * i), "model": "delivery_time", "version": 1,
                 "endpoint": "delivery_time", "caller": "app", "inputs": feats, "features": feats, "output": json.dumps({"value": float(p)}),
                 "prediction": float(p), "latency_us": 300, "status": 200})
    log.close()
    return ids


def monitor(w, name, **kw):
    from mlops_workbench.monitoring.monitors import Monitor, define_monitor
    return define_monitor(w["ws"], Monitor(name, "delivery_time", window="1h", **kw), who="test")


def open_alerts(ws, name):
    from mlops_workbench.alerts import list_alerts
    return {a.labels["kind"]: a for a in list_alerts(ws, status="open") if a.labels.get("monitor") == name}


def test_an_empty_window_decides_nothing(world):
    from mlops_workbench.monitoring.monitors import run_monitor
    monitor(world, "empty_watch")
    r = run_monitor(world["ws"], "empty_watch", until=T0 - 100 * HOUR)
    assert (r.status, r.alerts, r.breached, r.current_rows) == ("empty", [], [], 0)
    assert r.report["note"].startswith("too few rows to decide: 0 logged predictions of delivery_time"), r.report
    assert open_alerts(world["ws"], "empty_watch") == {}


def test_healthy_then_drifted_with_new_levels(world):
    from mlops_workbench.monitoring.monitors import monitor_results_frame, run_monitor
    ws, rng = world["ws"], world["rng"]
    log_traffic(world, orders(rng, 1200), T0)
    log_traffic(world, orders(rng, 1200, far=2.0, zones=("north", "south", "east", "harbour")), T0 + HOUR)
    monitor(world, "drift_watch", severity={"data_drift": "critical"})
    ok = run_monitor(ws, "drift_watch", until=T0 + HOUR)
    assert (ok.status, ok.breached) == ("ok", []), ok.summary()
    bad = run_monitor(ws, "drift_watch", until=T0 + 2 * HOUR)
    assert bad.status == "breached" and {"data_drift", "prediction_drift"} <= set(bad.breached), bad.summary()
    cols = {c.column: c for c in bad.drift.columns}
    assert cols["distance_km"].drifted and cols["zone"].drifted and "new levels in current: harbour" in cols["zone"].note, cols["zone"]
    a = open_alerts(ws, "drift_watch")["data_drift"]
    assert a.severity == "critical" and "distance_km" in a.message and a.details["monitor_run"] == bad.id
    ts = monitor_results_frame(ws, "drift_watch", kind="data_drift")
    assert ts.filter(pl.col("column") == "distance_km")["breached"].to_list() == [False, True]
    assert ts.filter(pl.col("metric") == "drift_share")["run_id"].to_list() == [ok.id, bad.id]


def test_missing_and_retyped_features_are_named(world):
    from mlops_workbench.monitoring.monitors import run_monitor
    ws, rng = world["ws"], world["rng"]
    start = T0 + 10 * HOUR
    log_traffic(world, orders(rng, 600), start, drop=("zone",), as_text=("items",))  # zone no longer logged; items sent as text
    monitor(world, "schema_watch")
    r = run_monitor(ws, "schema_watch", since=start, until=start + HOUR)
    dd = r.report["data_drift"]
    assert dd["problems"] == {"zone": "missing from the current data", "items": "type String in the current data, Float64 in the reference"}, dd["problems"]
    assert r.status == "breached" and "zone: missing from the current data" in dd["reason"]
    assert [c.column for c in r.drift.columns] == ["distance_km"]  # what could be compared was


def test_all_null_and_constant_features(world):
    from mlops_workbench.monitoring.monitors import run_monitor
    ws, rng = world["ws"], world["rng"]
    start = T0 + 20 * HOUR
    frame = orders(rng, 600).with_columns(zone=pl.lit(None, pl.String), items=pl.lit(3))
    log_traffic(world, frame, start)
    monitor(world, "edge_watch")
    r = run_monitor(ws, "edge_watch", since=start, until=start + HOUR)
    cols = {c.column: c for c in r.drift.columns}
    assert not cols["zone"].checked and "all values missing in the current window" in cols["zone"].note
    assert cols["items"].drifted  # one value where there were seven
    assert r.status in ("ok", "breached") and r.report["data_drift"]["problems"] == {}


def test_labels_never_arriving_and_labels_breaching(world):
    from mlops_workbench.core.storage import write_dataset
    from mlops_workbench.monitoring.monitors import LabelSource, run_monitor
    ws, rng = world["ws"], world["rng"]
    start = T0 + 30 * HOUR
    frame = orders(rng, 400)
    ids = log_traffic(world, frame, start)
    write_dataset(ws, "delivered", pl.DataFrame({"request_id": ["someone-else"], "minutes": [20.0]}), source={"kind": "test", "location": "none of ours"})
    monitor(world, "late_watch", labels=LabelSource("delivered", key="request_id", label="minutes", max_delay="1h"), performance={"rmse": {"max": 3.0}}, min_rows=100)
    r = run_monitor(ws, "late_watch", since=start, until=start + HOUR)
    perf = r.report["performance"]
    assert perf["labels"] == {"arrived": 0, "pending": 0, "overdue": 400} and perf["skipped"].startswith("0 labelled rows"), perf
    assert "performance" not in r.breached and "concept_drift" not in r.breached
    # the outcomes arrive, and the deliveries took 8 minutes longer than predicted: rmse far over its bound
    write_dataset(ws, "delivered", pl.DataFrame({"request_id": ids, "minutes": frame["minutes"] + 8}), mode="overwrite", source={"kind": "test", "location": "late"})
    r = run_monitor(ws, "late_watch", since=start, until=start + HOUR)
    assert r.report["performance"]["labels"]["arrived"] == 400 and "performance" in r.breached, r.report["performance"]
    assert r.report["performance"]["reason"].startswith("rmse 8."), r.report["performance"]
    assert "performance" in open_alerts(ws, "late_watch")


def _broken_pipeline(ws):
    from mlops_workbench.pipelines.runner import make_notebook
    nb = make_notebook(ws.path("pipelines", "broken_train.ipynb"), 'experiment = ""\nmodel = ""\nname = ""', "raise RuntimeError('the training cluster is gone')")
    ws.path("pipelines", "broken_train.yaml").write_text(
        "name: broken_train\nparameters: {experiment: '', model: '', name: ''}\nsteps:\n  train:\n    notebook: broken_train.ipynb\n"
        "    parameters: {experiment: '${params.experiment}', model: '${params.model}', name: '${params.name}'}\n    timeout: 300\n")
    return nb


def test_a_failed_retraining_keeps_the_alert_open_and_registers_nothing(world):
    from mlops_workbench.monitoring.monitors import RetrainPolicy, run_monitor
    from mlops_workbench.monitoring.retraining import retraining_history, trigger_retraining
    from mlops_workbench.registry.versions import model_versions
    ws, rng = world["ws"], world["rng"]
    _broken_pipeline(ws)
    start = T0 + 40 * HOUR
    log_traffic(world, orders(rng, 800, far=2.5, zones=("north", "east", "harbour")), start)
    monitor(world, "broken_watch", retrain=RetrainPolicy(triggers=["data_drift"], pipeline="broken_train", parameters={"experiment": "delivery_time.yaml"}, cooldown="1s"))
    versions = len(model_versions(ws, "delivery_time"))
    r = run_monitor(ws, "broken_watch", since=start, until=start + HOUR)
    assert "data_drift" in r.breached
    t = trigger_retraining(ws, r, who="test")
    rec = t.retraining
    assert (rec.state, rec.outcome, rec.version) == ("failed", "failed", None), rec
    assert "the training cluster is gone" in rec.reason and rec.pipeline_run_id in rec.reason
    assert rec.window["dataset"] == "orders" and rec.window["version"] == 0 and rec.alert_id == open_alerts(ws, "broken_watch")["data_drift"].id
    assert open_alerts(ws, "broken_watch")["data_drift"].status == "firing"  # the alert stays open
    assert len(model_versions(ws, "delivery_time")) == versions  # nothing registered
    assert retraining_history(ws, "delivery_time").filter(pl.col("finished_at").is_null()).height == 0  # nothing left running


def test_a_trigger_firing_twice_starts_one_retraining(world):
    from mlops_workbench.monitoring.monitors import RetrainPolicy, run_monitor
    from mlops_workbench.monitoring.retraining import decline_retraining, retraining_history, trigger_retraining
    from mlops_workbench.security.audit import read_audit
    ws, rng = world["ws"], world["rng"]
    start = T0 + 50 * HOUR
    log_traffic(world, orders(rng, 800, far=2.5, zones=("north", "east", "harbour")), start)
    monitor(world, "twice_watch", retrain=RetrainPolicy(triggers=["data_drift"], parameters={"experiment": "delivery_time.yaml"}, approval="manual", cooldown="1s"))
    r = run_monitor(ws, "twice_watch", since=start, until=start + HOUR)
    time.sleep(1.1)  # past the 1 s cooldown after the previous test's request
    before = retraining_history(ws).height
    got, barrier = [], threading.Barrier(2)
    def fire():
        barrier.wait()
        got.append(trigger_retraining(ws, r, who="test", run_now=False))
    threads = [threading.Thread(target=fire) for _ in range(2)]
    for t in threads: t.start()
    for t in threads: t.join(60)
    started = [g.retraining for g in got if g.retraining]
    assert len(got) == 2 and len(started) == 1 and retraining_history(ws).height == before + 1, [str(g) for g in got]
    refused = [g.reason for g in got if not g.retraining][0]
    assert f"retraining {started[0].id} of delivery_time is still awaiting_approval" in refused or "same moment" in refused, refused
    assert started[0].state == "awaiting_approval"
    assert "retrain.skipped" in read_audit(ws, action="retrain.*")["action"].to_list()
    decline_retraining(ws, started[0].id, "tested", who="test")


def test_the_loop_retrains_through_the_pipeline_and_links_everything(world):
    from mlops_workbench.monitoring.monitors import RetrainPolicy, run_monitor
    from mlops_workbench.monitoring.retraining import trigger_retraining
    from mlops_workbench.pipelines.runner import get_run
    from mlops_workbench.registry.versions import get_model
    ws, rng = world["ws"], world["rng"]
    start = T0 + 60 * HOUR
    log_traffic(world, orders(rng, 800, far=2.5, zones=("north", "east", "harbour")), start)
    monitor(world, "loop_watch", retrain=RetrainPolicy(triggers=["data_drift"], parameters={"experiment": "delivery_time.yaml", "trials": 2}, deploy=None, cooldown="1s"))
    r = run_monitor(ws, "loop_watch", since=start, until=start + HOUR)
    time.sleep(1.1)  # past the 1 s cooldown after the previous test's request
    t = trigger_retraining(ws, r, who="test")
    rec = t.retraining
    assert rec is not None and rec.state == "succeeded" and rec.outcome in ("candidate", "rejected"), t
    run = get_run(ws, rec.pipeline_run_id)
    assert run.pipeline == "train" and run.status == "succeeded" and run.parameters["name"] == f"delivery_time_retrain_{rec.id}"
    assert run.step("train").outputs["run_id"] == rec.training_run_id and run.step("register").outputs["version"] == rec.version
    m = get_model(ws, "delivery_time")
    assert m.aliases["production"] == 1  # nothing deployed: the policy does not deploy
    if rec.outcome == "candidate": assert m.aliases.get("candidate") == rec.version
    else: assert m.aliases.get("candidate") != rec.version and "did not pass its gates" in rec.reason
    assert rec.alert_id == open_alerts(ws, "loop_watch")["data_drift"].id  # open until a new version serves
