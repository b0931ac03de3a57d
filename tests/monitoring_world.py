"""Monitored models for the Monitoring page, the Voila drift report and the Lab sidebar's Monitors section, made with
the real library (train, register, deploy, the inference log as the gateway writes it, `run_monitor`):

- `credit_watch` on the demo credit-default model (binary; features from the feature store; late labels): two healthy
  hours of traffic (holdout rows), then a drifted hour (amounts tripled, interest rates up 60%), each run by the monitor; the
  drifted run fires data and prediction drift alerts; a retraining record follows it.
- `delivery_watch` on a regression model (delivery minutes from distance, items and a text zone; no id column, nulls
  in items): a healthy hour, then an hour where distances double and a new zone appears.
"""
import datetime as dt
import json
import uuid
from types import SimpleNamespace

import numpy as np
import polars as pl

T0 = dt.datetime(2026, 3, 1, 9, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)


def _log(ws, model, frame: pl.DataFrame, preds, start, drop=()):
    from mlops_workbench.serving.inference_log import InferenceLog
    log = InferenceLog(ws)
    ids = []
    clean = lambda v: None if isinstance(v, float) and not np.isfinite(v) else v  # JSON has no NaN: a missing value is null
    for i, (row, p) in enumerate(zip(frame.drop(*drop).to_dicts(), preds)):
        feats, rid = json.dumps({k: clean(v) for k, v in row.items()}, default=str), uuid.uuid4().hex
        ids.append(rid)
        log.log({"request_id": rid, "row": 0, "at": start + dt.timedelta(seconds=2 * i), "model": model, "version": 1, "endpoint": model,
                 "caller": "app", "inputs": feats, "features": feats, "output": json.dumps({"value": float(p)}), "prediction": float(p),
                 "latency_us": 300, "status": 200})
    log.close()
    return ids


def write_credit(ws):
    "The credit model deployed to production, three hours of traffic with labels, `credit_watch` run on each, and a retraining."
    import sqlalchemy as sa
    from mlops_workbench.core.metadata import retrainings
    from mlops_workbench.core.storage import write_dataset
    from mlops_workbench.deploy.rollout import deploy
    from mlops_workbench.experiments.definition import demo_experiment
    from mlops_workbench.monitoring.monitors import LabelSource, Monitor, define_monitor, run_monitor
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import load_run_model, validate_model
    from mlops_workbench.registry.versions import register_model
    from mlops_workbench.training.fit import load_holdout, model_info, train
    exp = demo_experiment(ws, n_applications=1200)
    run_id = train(ws, exp, {"num_leaves": 7, "n_estimators": 20}).run_id
    register_model(ws, run_id, "credit_default", validate_model(ws, run_id, default_gates("binary")), who="alice")
    dep = deploy(ws, "credit_default/1", "production", "direct", checks=False, who="alice")
    rm, info, ho = load_run_model(ws, run_id), model_info(ws, run_id), load_holdout(ws, run_id)
    feats, target = info["features"], info["target"]
    rng = np.random.default_rng(1)
    labels = []
    for h in range(3):
        sample = ho[rng.integers(0, ho.height, 400)]
        if h == 2:  # the drifted hour
            sample = sample.with_columns((pl.col(c) * f).alias(c) for c, f in (("amount", 3.0), ("interest_rate", 1.6), ("amount_to_spend_7d", 3.0)) if c in feats)
        x = sample.select(feats)
        ids = _log(ws, "credit_default", x, rm.predict(rm.matrix(x)), T0 + h * HOUR)
        labels.append(pl.DataFrame({"request_id": ids, "defaulted": sample[target].cast(pl.Int64),
                                    "labelled_at": [T0 + h * HOUR + dt.timedelta(minutes=20)] * len(ids)}))
    write_dataset(ws, "credit_labels", pl.concat(labels), source={"kind": "test", "location": "monitoring_world"})
    define_monitor(ws, Monitor("credit_watch", "credit_default", window="1h", labels=LabelSource("credit_labels", label="defaulted", labelled_at="labelled_at"),
                               performance={"roc_auc": {"min": 0.6}}, drift_share=0.25, schedule="1h"), who="alice")
    runs = [run_monitor(ws, "credit_watch", until=T0 + (h + 1) * HOUR) for h in range(3)]
    now = dt.datetime.now(dt.timezone.utc)
    with ws.metadata.begin() as c:
        rid = c.execute(retrainings.insert().values(
            model="credit_default", monitor="credit_watch", alert_id=(runs[-1].alerts or [None])[0], trigger="data_drift", state="succeeded",
            window={"dataset": "applications", "version": 0, "since": None, "until": str(T0)}, requested_at=now - dt.timedelta(minutes=20), requested_by="monitor credit_watch",
            pipeline_run_id="20260301-1100-train", training_run_id=run_id, version=1, deployment_id=dep.id, finished_at=now - dt.timedelta(minutes=4),
            outcome="deployed", reason="data drift: income, amount")).inserted_primary_key[0]
    return SimpleNamespace(runs=runs, run_id=run_id, deployment=dep, retraining=rid, features=feats)


def write_delivery(ws):
    "The regression model deployed to production, a healthy and a drifted hour, `delivery_watch` run on each (the 72 lesson's recipe)."
    from mlops_workbench.core.storage import write_dataset
    from mlops_workbench.deploy.rollout import deploy
    from mlops_workbench.experiments.definition import Experiment, IntParam, TimeSplit
    from mlops_workbench.monitoring.monitors import Monitor, define_monitor, run_monitor
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import load_run_model, validate_model
    from mlops_workbench.registry.versions import register_model
    from mlops_workbench.training.fit import train
    rng = np.random.default_rng(0)

    def orders(n, far=1.0, zones=("north", "south", "east")):
        d = rng.gamma(2, 2, n) * far
        items = rng.integers(1, 8, n).astype(float)
        zone = rng.choice(zones, n)
        minutes = 10 + 3 * d + 1.5 * items + (zone == "east") * 5 + rng.normal(0, 2, n)
        items[rng.random(n) < 0.05] = np.nan  # some orders lost their item count
        return pl.DataFrame({"distance_km": d, "items": items, "zone": zone, "minutes": minutes}).with_columns(pl.col("items").fill_nan(None))
    hist = orders(3000).with_columns(placed_at=pl.datetime_range(dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 1) + dt.timedelta(hours=2999), "1h",
                                                                 eager=True, time_zone="UTC").dt.strftime("%Y-%m-%dT%H:%M:%S"))
    write_dataset(ws, "orders", hist, source={"kind": "test", "location": "monitoring_world"})
    exp = Experiment("delivery_time", target="minutes", task="regression", dataset="orders", exclude=["placed_at"], split=TimeSplit("placed_at", valid_size=0.25),
                     search_space={"num_leaves": IntParam(4, 31)}, trials=1)
    run = train(ws, exp, {"num_leaves": 7, "n_estimators": 30}).run_id
    register_model(ws, run, "delivery_time", validate_model(ws, run, default_gates("regression")), who="alice")
    deploy(ws, "delivery_time/1", "production", "direct", checks=False, who="alice")
    rm = load_run_model(ws, run)
    for h, frame in enumerate((orders(600), orders(600, far=2.0, zones=("north", "south", "east", "harbour")))):
        x = frame.drop("minutes")
        _log(ws, "delivery_time", x, rm.predict(rm.matrix(x)), T0 + h * HOUR)
    define_monitor(ws, Monitor("delivery_watch", "delivery_time", window="1h", performance={"rmse": {"max": 4.0}}), who="alice")
    runs = [run_monitor(ws, "delivery_watch", until=T0 + (h + 1) * HOUR) for h in range(2)]
    return SimpleNamespace(runs=runs, run_id=run)


def write_monitoring(ws):
    "Both monitored models in `ws`."
    return SimpleNamespace(credit=write_credit(ws), delivery=write_delivery(ws))


if __name__ == "__main__":  # build one to look at: python tests/monitoring_world.py DIR
    import sys
    from mlops_workbench.core.workspace import Workspace
    ws = Workspace.init(sys.argv[1])
    w = write_monitoring(ws)
    for r in w.credit.runs + w.delivery.runs: print(r.summary())
    ws.close()
