"""The pipeline runner seen through the workbench's one observability setup: a run is one trace (a span for the run, a
child span per step at the step's recorded times) written to the workspace's trace file by default or sent to an
OTLP/HTTP collector when the settings name one; its JSON log lines carry the run id, the step and the trace id."""
import datetime as dt
import http.server
import json
import logging
import threading

import pytest

from mlops_workbench.observability.logs import bind_request_id, bind_run_id
from mlops_workbench.observability.traces import span
from mlops_workbench.observability.workbench import configure_workbench_logging, workbench_tracing
from mlops_workbench.pipelines.runner import PipelineSpec, make_notebook, run_pipeline


def _spec(tmp_path, name="nightly"):
    "Four steps: prep, then fit and score side by side; score fails, so report (after score) is skipped."
    d = tmp_path / "nbs"
    make_notebook(d / "ok.ipynb", "n = 1", "x = n + 1")
    make_notebook(d / "boom.ipynb", "d = 0", "1 / d")
    return PipelineSpec.from_dict({"name": name, "steps": {
        "prep": {"notebook": str(d / "ok.ipynb")},
        "fit": {"notebook": str(d / "ok.ipynb"), "depends_on": ["prep"]},
        "score": {"notebook": str(d / "boom.ipynb"), "depends_on": ["prep"]},
        "report": {"notebook": str(d / "ok.ipynb"), "depends_on": ["score"]}}})


def _utc(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


@pytest.fixture
def json_log(ws):
    "The process's logging as the workspace's settings say: JSON lines to logs/mlw.jsonl; the handler removed after."
    ws.settings["observability"] = {"log_file": "logs/mlw.jsonl"}
    (ws.root / "logs").mkdir()
    h = configure_workbench_logging(ws)
    yield ws.root / "logs" / "mlw.jsonl"
    logging.getLogger().removeHandler(h)
    h.close()


def test_a_pipeline_run_is_one_trace_with_a_span_per_step_and_json_logs(ws, tmp_path, json_log):
    run = run_pipeline(ws, _spec(tmp_path), max_parallel=2, progress=False)
    assert run.status == "failed" and run.step("report").status == "skipped"

    spans = [json.loads(l) for l in (ws.root / "traces" / "mlw-pipelines.jsonl").read_text().splitlines()]
    roots = [s for s in spans if s["name"] == "pipeline.run"]
    assert len(roots) == 1
    root = roots[0]
    assert root["attributes"]["run_id"] == run.id and root["attributes"]["pipeline"] == "nightly"
    assert root["parent_id"] is None and root["status"]["status_code"] == "ERROR" and root["attributes"]["status"] == "failed"
    steps = {s["attributes"]["step"]: s for s in spans if s["name"] == "pipeline.step"}
    assert sorted(steps) == ["fit", "prep", "report", "score"] and len(spans) == 5
    for name, s in steps.items():
        assert s["context"]["trace_id"] == root["context"]["trace_id"] and s["parent_id"] == root["context"]["span_id"]
        assert s["attributes"]["run_id"] == run.id and s["attributes"]["status"] == run.step(name).status
        assert s["resource"]["attributes"]["service.name"] == "mlw-pipelines"
    for name in ("prep", "fit", "score"):  # the span is where the step record says the step ran
        rec = run.step(name)
        assert abs((_utc(steps[name]["start_time"]) - rec.started_at).total_seconds()) < 1e-5
        assert abs((_utc(steps[name]["end_time"]) - rec.ended_at).total_seconds()) < 1e-5
    assert steps["score"]["status"]["status_code"] == "ERROR" and "ZeroDivisionError" in steps["score"]["status"]["description"]
    assert steps["fit"]["status"]["status_code"] == "UNSET" and steps["report"]["status"]["status_code"] == "UNSET"

    lines = [json.loads(l) for l in json_log.read_text().splitlines()]
    mine = [l for l in lines if l.get("run_id") == run.id]
    trace_hex = root["context"]["trace_id"].removeprefix("0x")
    assert {l["trace_id"] for l in mine} == {trace_hex}  # every line of the run joins its trace
    said = sorted((l["message"], l.get("step", "")) for l in mine)
    assert said == sorted([("run started", ""), ("step started", "prep"), ("step succeeded", "prep"), ("step started", "fit"),
                           ("step succeeded", "fit"), ("step started", "score"), ("step failed", "score"),
                           ("step skipped", "report"), ("run failed", "")])
    failed = next(l for l in mine if l["message"] == "step failed")
    assert failed["level"] == "ERROR" and "ZeroDivisionError" in failed["error"] and failed["logger"] == "mlops_workbench.pipelines.runner"


def test_a_traceparent_reaches_the_step_and_tracing_off_writes_nothing(ws, tmp_path):
    d = tmp_path / "nbs"
    make_notebook(d / "env.ipynb", "", "import os\nfrom mlops_workbench.pipelines.runner import record_output",
                  "record_output('traceparent', os.environ.get('TRACEPARENT', ''))",
                  # work the step starts (a monitor run, say) traces itself through the one setup: in the run's trace
                  "from mlops_workbench.core.workspace import Workspace\nfrom mlops_workbench.observability.traces import span\n"
                  "from mlops_workbench.observability.workbench import workbench_tracing\n"
                  "with workbench_tracing(Workspace.open(), 'mlw-monitors'):\n    with span('monitor.run', monitor='m'): pass")
    spec = PipelineSpec.from_dict({"name": "env", "steps": {"a": {"notebook": str(d / "env.ipynb")}}})
    run = run_pipeline(ws, spec, progress=False)
    assert run.status == "succeeded", run.step("a").error
    root = next(json.loads(l) for l in (ws.root / "traces" / "mlw-pipelines.jsonl").read_text().splitlines() if '"pipeline.run"' in l)
    tp = run.step("a").outputs["traceparent"]  # 00-<trace id>-<the run span's id>-01
    assert tp.split("-")[1:3] == [root["context"]["trace_id"][2:], root["context"]["span_id"][2:]]
    inner = [json.loads(l) for l in (ws.root / "traces" / "mlw-monitors.jsonl").read_text().splitlines()]
    assert [(s["name"], s["context"]["trace_id"], s["parent_id"]) for s in inner] == [("monitor.run", root["context"]["trace_id"], root["context"]["span_id"])]

    ws.settings["observability"] = {"tracing": "off"}
    (ws.root / "traces" / "mlw-pipelines.jsonl").unlink()
    run = run_pipeline(ws, spec, progress=False)
    assert run.status == "succeeded" and run.step("a").outputs["traceparent"] == ""
    assert not (ws.root / "traces" / "mlw-pipelines.jsonl").exists()


class _Collector(http.server.BaseHTTPRequestHandler):
    "An OTLP/HTTP traces endpoint: keeps each ExportTraceServiceRequest body it is sent."
    bodies: list = []
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/v1/traces": self.bodies.append(body)
        self.send_response(200); self.send_header("content-type", "application/x-protobuf"); self.end_headers()
    def log_message(self, *a): pass


def test_spans_go_to_an_otlp_collector_when_the_settings_name_one(ws, tmp_path):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Collector.bodies = []
    try:
        ws.settings["observability"] = {"tracing": f"http://127.0.0.1:{srv.server_address[1]}"}
        d = tmp_path / "nbs"
        make_notebook(d / "ok.ipynb", "n = 1", "x = n + 1")
        run = run_pipeline(ws, PipelineSpec.from_dict({"name": "otlp", "steps": {"a": {"notebook": str(d / "ok.ipynb")},
                                                                               "b": {"notebook": str(d / "ok.ipynb"), "depends_on": ["a"]}}}), progress=False)
    finally:
        srv.shutdown(); srv.server_close()
    got = []
    for body in _Collector.bodies:  # the run's end flushes the batch: every span has arrived when run_pipeline returns
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
            for ss in rs.scope_spans:
                got += [(service, s.name, {a.key: a.value.string_value for a in s.attributes}.get("step", "")) for s in ss.spans
                        if {a.key: a.value.string_value for a in s.attributes}.get("run_id") == run.id]
    assert sorted(got) == [("mlw-pipelines", "pipeline.run", ""), ("mlw-pipelines", "pipeline.step", "a"), ("mlw-pipelines", "pipeline.step", "b")]
    assert not (ws.root / "traces").exists() or not (ws.root / "traces" / "mlw-pipelines.jsonl").exists()


def test_a_log_line_carries_run_request_and_trace_ids(ws, json_log):
    log = logging.getLogger("mlops_workbench.monitoring")
    with workbench_tracing(ws, "mlw-test"), bind_run_id("run-42"), span("monitor.run", monitor="m"):
        with bind_request_id("req-7"): log.warning("checked", extra={"monitor": "m"})
    logging.getLogger().handlers[-1].flush()
    line = json.loads(json_log.read_text().splitlines()[-1])
    assert (line["run_id"], line["request_id"], line["monitor"], line["level"]) == ("run-42", "req-7", "m", "WARNING")
    spans = [json.loads(l) for l in (ws.root / "traces" / "mlw-test.jsonl").read_text().splitlines()]
    assert [s["context"]["trace_id"][2:] for s in spans] == [line["trace_id"]]
    assert spans[0]["attributes"]["run_id"] == "run-42"
