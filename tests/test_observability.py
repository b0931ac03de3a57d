"""Observability with the real things: a Starlette app using GatewayMetrics under uvicorn (one worker and two), scraped
by Debian's Prometheus; its JSON logs parsed line by line; spans exported to memory and to a real OTLP/HTTP endpoint."""
import http.server, json, os, signal, subprocess, sys, textwrap, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, free_port
from prometheus_server import prometheus_server

SECRET = "pw-Zq81-never-logged"  # the test app's stand-in for a database password

# The app under test: the shape of the gateway's use of the observability modules, one route with the status asked for.
APP = '''
import logging, os, time
from contextlib import asynccontextmanager
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from mlops_workbench.observability.logs import bind_request_id, configure_logging
from mlops_workbench.observability.metrics import GatewayMetrics
from mlops_workbench.observability.traces import span

SECRET = os.environ["OBS_TEST_SECRET"]
configure_logging(redact=lambda s: s.replace(SECRET, "***"))
metrics = GatewayMetrics(multiproc_dir=os.environ.get("OBS_TEST_MULTIPROC_DIR") or None)
log = logging.getLogger("obs_app")
ROUTE = "/predict/{code}"

@asynccontextmanager
async def lifespan(app):
    metrics.set_queue_depth(1)
    metrics.set_model_loaded("toy", 7)
    yield
    metrics.mark_process_dead()

async def predict(request):
    t = time.perf_counter()
    code = int(request.path_params["code"])
    with bind_request_id(request.headers.get("x-request-id")) as rid:
        with span("predict", model="toy"):
            log.info("predicted", extra={"status": code, "pid": os.getpid()})
        if code >= 500:
            try: raise RuntimeError(f"backend refused password {SECRET}")
            except RuntimeError: log.exception("predict failed")
            metrics.observe_error(ROUTE, "backend_down")
        response = JSONResponse({"pid": os.getpid(), "request_id": rid}, status_code=code)
    metrics.observe_request(ROUTE, "toy", 7, code, time.perf_counter() - t)
    return response

async def prom(request):
    body, content_type = metrics.render(request.headers.get("accept"))
    return Response(body, headers={"content-type": content_type})

app = Starlette(routes=[Route(ROUTE, predict), Route("/metrics", prom)], lifespan=lifespan)
'''

# What `mlw serve --workers N` will do: JSON logs for uvicorn too (log_config=None), the multi-process folder
# prepared and named in the environment before the workers start.
LAUNCHER = '''
import os, sys
import uvicorn
from mlops_workbench.observability.logs import configure_logging
from mlops_workbench.observability.metrics import prepare_multiproc_dir

if __name__ == "__main__":
    port, workers, multiproc_dir = int(sys.argv[1]), int(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else "")
    configure_logging()
    if multiproc_dir:
        os.environ.update(prepare_multiproc_dir(multiproc_dir))
        os.environ["OBS_TEST_MULTIPROC_DIR"] = multiproc_dir
    uvicorn.run("obs_app:app", host="127.0.0.1", port=port, workers=workers, log_config=None)
'''

STATUSES = [200] * 12 + [404] * 3 + [422] * 2 + [503] * 2


class App:
    "The test app under uvicorn in a subprocess: its URL, its stderr once stopped."
    def __init__(self, folder: Path, workers: int = 1, multiproc_dir: Path | None = None):
        (folder/"obs_app.py").write_text(APP)
        (folder/"launch.py").write_text(LAUNCHER)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = folder/"stderr.log"
        env = {**os.environ, "OBS_TEST_SECRET": SECRET, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        args = [sys.executable, str(folder/"launch.py"), str(self.port), str(workers)] + ([str(multiproc_dir)] if multiproc_dir else [])
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=self._err)
        self.client = httpx.Client(base_url=self.url, trust_env=False, timeout=10)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"the test app exited with {self.proc.returncode}:\n{self.stderr_path.read_text()[-3000:]}", pytrace=False)
            try:
                if self.client.get("/metrics").status_code == 200: break
            except httpx.TransportError: pass
            if time.monotonic() > deadline: pytest.fail(f"the test app did not answer within 60 s:\n{self.stderr_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def call(self, code: int, rid: str) -> dict:
        "One request on a new connection (so that uvicorn's workers share them); the app's JSON answer."
        with httpx.Client(base_url=self.url, trust_env=False, timeout=10) as c:
            r = c.get(f"/predict/{code}", headers={"x-request-id": rid})
        assert r.status_code == code, (r.status_code, r.text)
        return r.json()

    def stop(self) -> list[str]:
        "SIGTERM (a graceful shutdown, every worker's lifespan exit runs); the stderr lines."
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try: self.proc.wait(30)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        self._err.close()
        return self.stderr_path.read_text().splitlines()


@pytest.fixture
def app_factory(tmp_path):
    "Start test apps; each is stopped (no orphan process) when the test ends."
    apps = []
    def start(**kw):
        apps.append(App(tmp_path, **kw))
        return apps[-1]
    yield start
    for a in apps: a.stop()


def scraped(body: str) -> dict:
    "The samples of a /metrics body: {(name, frozenset(labels)): value}."
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(body) for s in f.samples}


def test_prometheus_scrapes_gateway_metrics(app_factory):
    app = app_factory()
    sent = [app.call(code, f"req-{i}") for i, code in enumerate(STATUSES)]
    test_ids = [s["request_id"] for s in sent]
    assert test_ids == [f"req-{i}" for i in range(len(STATUSES))]
    n = len(STATUSES)
    labels = {"route": "/predict/{code}", "model": "toy", "version": "7"}

    # The body the route serves, read directly.
    text = app.client.get("/metrics").text
    samples = scraped(text)
    for code in (200, 404, 422, 503):
        assert samples[("mlw_gateway_requests_total", frozenset({**labels, "status": str(code)}.items()))] == STATUSES.count(code)
    assert samples[("mlw_gateway_request_duration_seconds_count", frozenset(labels.items()))] == n

    # The same numbers as Prometheus stores them, scraped over HTTP with its own Accept header (OpenMetrics).
    with prometheus_server([f"127.0.0.1:{app.port}"]) as prom:
        prom.wait_for("sum(mlw_gateway_requests_total)", n)
        prom.wait_for("sum(mlw_gateway_request_duration_seconds_count)", n)
        assert prom.value('sum(mlw_gateway_request_duration_seconds_bucket{le="+Inf"})') == n
        assert prom.value('up{job="mlw"}') == 1
        series = prom.query("mlw_gateway_requests_total")
        got = {r["metric"]["status"]: float(r["value"][1]) for r in series}
        assert got == {str(c): float(STATUSES.count(c)) for c in set(STATUSES)}
        for r in series:
            assert set(r["metric"]) == {"__name__", "instance", "job", "route", "model", "version", "status"}, r["metric"]
            assert {k: r["metric"][k] for k in labels} == labels
        buckets = {r["metric"]["le"] for r in prom.query("mlw_gateway_request_duration_seconds_bucket")}
        assert {"0.0005", "0.001", "2.5", "+Inf"} <= buckets, buckets
        assert prom.value('mlw_gateway_errors_total{route="/predict/{code}",reason="backend_down"}') == 2
        assert prom.value("mlw_gateway_inference_log_queue_depth") == 1
        assert prom.value('mlw_gateway_model_loaded{model="toy",version="7"}') == 1
        # The latency quantile operators will chart: computable, and inside the buckets' range.
        p99 = prom.value("histogram_quantile(0.99, sum by (le) (mlw_gateway_request_duration_seconds_bucket))")
        assert p99 is not None and 0 < p99 <= 2.5

    # Every line the process wrote (uvicorn's own included) is one JSON object; request ids flow; the secret never appears.
    lines = app.stop()
    records = [json.loads(line) for line in lines]
    assert {r["logger"] for r in records} >= {"obs_app", "uvicorn.error", "uvicorn.access"}
    assert not [r for r in records if "color_message" in r]  # uvicorn's ANSI copy of the message is left out
    predicted = [r for r in records if r["message"] == "predicted"]
    assert [r["request_id"] for r in predicted] == test_ids
    assert [r["status"] for r in predicted] == STATUSES
    failed = [r for r in records if r["message"] == "predict failed"]
    assert len(failed) == 2 and all(r["request_id"] in test_ids and r["level"] == "ERROR" for r in failed)
    assert all("RuntimeError: backend refused password ***" in r["exc_info"] for r in failed)
    assert SECRET not in "\n".join(lines)


def test_two_workers_are_summed(app_factory, tmp_path):
    mp = tmp_path/"prom-multiproc"
    mp.mkdir()
    (mp/"counter_1.db").write_bytes(b"stale")  # a previous run's file: prepare_multiproc_dir must clear it
    app = app_factory(workers=2, multiproc_dir=mp)

    # Requests on new connections, a few at a time, until both workers have answered some (bounded).
    pids, n = {}, 0
    with ThreadPoolExecutor(8) as pool:
        while len(pids) < 2 and n < 2000:
            for answer in pool.map(lambda i: app.call(200, f"mp-{i}"), range(n, n + 16)):
                pids[answer["pid"]] = pids.get(answer["pid"], 0) + 1
            n += 16
    assert len(pids) == 2, f"one worker answered all {n} requests: {pids}"
    assert app.proc.pid not in pids

    # Whichever worker answers /metrics, it reports both workers' counts.
    for _ in range(6):
        s = scraped(app.client.get("/metrics").text)
        assert s[("mlw_gateway_requests_total", frozenset({"route": "/predict/{code}", "model": "toy", "version": "7", "status": "200"}.items()))] == n
        assert s[("mlw_gateway_inference_log_queue_depth", frozenset())] == 2  # livesum: 1 per live worker
        assert s[("mlw_gateway_model_loaded", frozenset({"model": "toy", "version": "7"}.items()))] == 1  # livemax

    with prometheus_server([f"127.0.0.1:{app.port}"]) as prom:
        prom.wait_for("sum(mlw_gateway_requests_total)", n)
        prom.wait_for("sum(mlw_gateway_request_duration_seconds_count)", n)
        assert prom.value("mlw_gateway_inference_log_queue_depth") == 2

    # A graceful stop: each worker's lifespan exit marks it dead (live gauges gone), counters stay for the next run's sum.
    lines = app.stop()
    assert all(json.loads(line) for line in lines)
    files = sorted(f.name for f in mp.iterdir())
    assert not [f for f in files if f.startswith("gauge_live")], files
    assert sorted(f for f in files if f.startswith("counter_")) == sorted(f"counter_{p}.db" for p in pids), files
    from mlops_workbench.observability.metrics import render_multiproc
    s = scraped(render_multiproc(mp)[0].decode())
    assert sum(v for (name, _), v in s.items() if name == "mlw_gateway_requests_total") == n
    assert ("mlw_gateway_inference_log_queue_depth", frozenset()) not in s or s[("mlw_gateway_inference_log_queue_depth", frozenset())] == 0


def test_spans_carry_the_request_id():
    from mlops_workbench.observability.logs import bind_request_id
    from mlops_workbench.observability.traces import configure_tracing, shutdown_tracing, span
    exporter = configure_tracing("mlw-gateway-test", "memory")
    try:
        for rid in ("a1", "b2"):
            with bind_request_id(rid), span("request", route="/predict"):
                for step in ("auth", "validation", "features", "predict", "logging"):
                    with span(step): pass
        spans = exporter.get_finished_spans()
        assert len(spans) == 12
        for rid in ("a1", "b2"):
            mine = [s for s in spans if s.attributes["request_id"] == rid]
            root = next(s for s in mine if s.name == "request")
            assert sorted(s.name for s in mine if s.parent and s.parent.span_id == root.context.span_id) == \
                sorted(["auth", "validation", "features", "predict", "logging"])
            assert {s.context.trace_id for s in mine} == {root.context.trace_id}
            assert root.resource.attributes["service.name"] == "mlw-gateway-test"
    finally:
        shutdown_tracing()


class _OTLPReceiver(http.server.BaseHTTPRequestHandler):
    "A minimal OTLP/HTTP trace endpoint: keeps each POSTed ExportTraceServiceRequest, answers the empty response."
    received: list = []
    def do_POST(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/v1/traces" and self.headers["content-type"] == "application/x-protobuf":
            msg = ExportTraceServiceRequest(); msg.ParseFromString(body)
            type(self).received.append(msg)
            out, code = ExportTraceServiceResponse().SerializeToString(), 200
        else: out, code = b"", 404
        self.send_response(code); self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(out))); self.end_headers(); self.wfile.write(out)
    def log_message(self, *a): pass


def test_otlp_export_reaches_a_collector():
    from mlops_workbench.observability.logs import bind_request_id
    from mlops_workbench.observability.traces import configure_tracing, shutdown_tracing, span
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OTLPReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        configure_tracing("mlw-otlp-test", f"http://127.0.0.1:{server.server_address[1]}")  # a bare host: /v1/traces added
        with bind_request_id("otlp-1"), span("request"):
            with span("predict", model="toy"): pass
        shutdown_tracing()  # flushes the batch
        spans = [(s, rs.resource) for m in _OTLPReceiver.received for rs in m.resource_spans for ss in rs.scope_spans for s in ss.spans]
        assert sorted(s.name for s, _ in spans) == ["predict", "request"]
        for s, resource in spans:
            attrs = {a.key: a.value.string_value for a in s.attributes}
            assert attrs["request_id"] == "otlp-1"
            assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == "mlw-otlp-test"
    finally:
        shutdown_tracing()
        server.shutdown(); server.server_close()
