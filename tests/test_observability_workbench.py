"""The deployment manager and the monitors through the one observability setup, on the regression world of the
monitoring tests (delivery minutes from distance, items with nulls and a text zone, dates as strings, no id column):
a deployment is a trace, each monitor run a span, each with a JSON log line joined to it by trace id, and the
workbench's /metrics (`workbench_metrics_text`) reports exactly what the metadata store holds for them."""
import io
import json
import logging

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from monitoring_world import write_delivery
from mlops_workbench.core.metadata import monitor_results
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.observability.logs import configure_logging
from mlops_workbench.observability.workbench import workbench_metrics_text


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "write_delivery's workspace (train, register, deploy direct, two monitor runs: healthy, then drifted), logged as JSON."
    buf = io.StringIO()
    h = configure_logging("INFO", stream=buf)
    try:
        ws = Workspace.init(tmp_path_factory.mktemp("obswb") / "ws")
        w = write_delivery(ws)
    finally:
        logging.getLogger().removeHandler(h)
    yield dict(ws=ws, w=w, lines=[json.loads(l) for l in buf.getvalue().splitlines()])
    ws.close()


def _spans(ws, service):
    return [json.loads(l) for l in (ws.root / "traces" / f"{service}.jsonl").read_text().splitlines()]


def test_a_deployment_is_a_trace_and_its_log_line_joins_it(world):
    ws, lines = world["ws"], world["lines"]
    spans = _spans(ws, "mlw-deploy")
    root = next(s for s in spans if s["name"] == "deployment.run")
    assert root["parent_id"] is None and root["status"]["status_code"] == "UNSET"
    assert {k: root["attributes"][k] for k in ("model", "version", "environment", "strategy", "state")} == \
        {"model": "delivery_time", "version": 1, "environment": "production", "strategy": "direct", "state": "succeeded"}
    children = [s["name"] for s in spans if s["parent_id"] == root["context"]["span_id"]]
    assert children == ["deployment.finish"]  # direct, checks skipped: one stage
    line = next(l for l in lines if l["message"] == "deployment succeeded")
    assert line["logger"] == "mlops_workbench.deploy.rollout" and line["deployment_id"] == root["attributes"]["deployment_id"]
    assert line["trace_id"] == root["context"]["trace_id"][2:]


def test_each_monitor_run_is_a_span_with_its_status(world):
    ws, lines, runs = world["ws"], world["lines"], world["w"].runs
    spans = [s for s in _spans(ws, "mlw-monitors") if s["name"] == "monitor.run"]
    assert [(s["attributes"]["monitor_run"], s["attributes"]["status"]) for s in spans] == [(r.id, r.status) for r in runs]
    assert runs[-1].status == "breached" and spans[-1]["status"]["status_code"] == "ERROR"
    assert "data_drift" in spans[-1]["status"]["description"]
    logged = [l for l in lines if l["message"].startswith("monitor run")]
    assert [(l["monitor_run"], l["level"]) for l in logged] == [(runs[0].id, "INFO" if runs[0].status != "breached" else "WARNING"), (runs[1].id, "WARNING")]
    assert [l["trace_id"] for l in logged] == [s["context"]["trace_id"][2:] for s in spans]


def test_the_workbench_metrics_say_what_the_store_holds(world):
    ws, last = world["ws"], world["w"].runs[-1]
    body, _ = workbench_metrics_text(ws)
    got = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples: got[(s.name, frozenset(s.labels.items()))] = s.value
    one = lambda name, **labels: got[(name, frozenset(labels.items()))]
    assert one("mlw_deployments", environment="production", strategy="direct", state="succeeded") == 1
    assert one("mlw_monitor_runs", monitor="delivery_watch", model="delivery_time", status="breached") == 1
    assert one("mlw_monitor_breached", monitor="delivery_watch", model="delivery_time") == 1
    assert one("mlw_monitor_last_run_timestamp_seconds", monitor="delivery_watch", model="delivery_time") == last.run_at.timestamp()
    with ws.metadata.begin() as c:
        rows = c.execute(sa.select(monitor_results).where(monitor_results.c.run_id == last.id)).all()
    assert rows and any(r.column == "zone" for r in rows)  # the text feature has its statistic
    for r in rows:  # every statistic of the latest run, exactly
        labels = dict(monitor="delivery_watch", model="delivery_time", kind=r.kind, metric=r.metric, column=r.column or "")
        if r.value is not None: assert one("mlw_monitor_value", **labels) == r.value
        if r.threshold is not None: assert one("mlw_monitor_threshold", **labels) == r.threshold
        assert one("mlw_monitor_value_breached", **labels) == (1 if r.breached else 0)
    share = next(r for r in rows if r.metric == "drift_share")
    assert one("mlw_monitor_drift_share", monitor="delivery_watch", model="delivery_time", kind="data_drift") == share.value
    assert share.value > one("mlw_monitor_drift_share_threshold", monitor="delivery_watch", model="delivery_time", kind="data_drift")
    assert one("mlw_alerts_open", severity="warning", status="firing") >= 1  # the drift alert the monitor fired
