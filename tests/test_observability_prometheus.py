"""The workbench watched the way operators run it: Debian's Prometheus loads the rules shipped with the package and
scrapes two real gateways (`mlw serve`, a regression model read by a text key) and the workbench's `/metrics`
(`workbench_metrics_text`, mounted on the dashboards app as `mlw dashboards` serves it); Debian's Alertmanager
receives what fires. Faults are injected for real: a gateway answering 503 (`--fault`) and a pipeline run that fails.
The failed run's alert goes firing in Prometheus and arrives at Alertmanager, and resolves when a later run succeeds;
the failing gateway's error-rate alert goes pending (its `for: 2m` is the shipped rule's, not shortened); the healthy
gateway's request traces run gateway -> auth -> validate -> features -> predict -> log. Loopback only."""
import contextlib
import datetime as dt
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

import mlops_workbench.observability as obs
from conftest import free_port
from gateway_server import gateway
from prometheus_server import PrometheusServer, _get, prometheus_binary
from toy import jobs_world
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.features.online import materialize
from mlops_workbench.pipelines.runner import PipelineSpec, make_notebook, run_pipeline
from mlops_workbench.security.keys import create_key

RULES = Path(obs.__file__).with_name("prometheus_rules.yml")
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
UTC = dt.timezone.utc


def _wait(what: str, probe, timeout_s: float = 60, every: float = 0.25, why=lambda: ""):
    "Poll `probe()` until it returns something truthy (bounded); return it, or fail saying what was awaited."
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = probe()
        if got: return got
        time.sleep(every)
    pytest.fail(f"waited {timeout_s} s for {what}; {why()}", pytrace=False)


def _start(cmd, log: Path, ready_url: str, name: str, timeout_s: float = 30) -> subprocess.Popen:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None: pytest.fail(f"{name} exited with {proc.returncode}: {' '.join(cmd)}\n{log.read_text()[-3000:]}", pytrace=False)
        try:
            if _get(ready_url, timeout=1)[0] == 200: return proc
        except OSError: pass
        if time.monotonic() > deadline: pytest.fail(f"{name} not ready within {timeout_s} s\n{log.read_text()[-3000:]}", pytrace=False)
        time.sleep(0.1)


def _stop(proc):
    proc.terminate()
    try: proc.wait(15)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait()


@contextlib.contextmanager
def alertmanager():
    "Debian's Alertmanager on a free loopback port, one receiver with no integrations, clustering off; yields its URL."
    exe = shutil.which("prometheus-alertmanager") or (ALERTMANAGER if Path(ALERTMANAGER).exists() else None)
    if not exe:
        pytest.fail("prometheus-alertmanager not found; `apt-get install prometheus-alertmanager` (make sysdeps)", pytrace=False)
    tmp, port = Path(tempfile.mkdtemp(prefix="mlw-alertmanager-")), free_port()
    (tmp / "alertmanager.yml").write_text(json.dumps({
        "route": {"receiver": "mlops", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "mlops"}]}))
    cmd = [exe, f"--config.file={tmp / 'alertmanager.yml'}", f"--storage.path={tmp / 'data'}",
           f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"]
    url = f"http://127.0.0.1:{port}"
    proc = _start(cmd, tmp / "alertmanager.log", f"{url}/-/ready", "alertmanager")
    try: yield url
    finally:
        _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def prometheus_with_rules(jobs: dict, alertmanager_url: str, rules: Path = RULES):
    "Prometheus scraping `jobs` ({job: [host:port]}) every second, evaluating `rules` every second, alerting `alertmanager_url`."
    tmp, port = Path(tempfile.mkdtemp(prefix="mlw-prometheus-")), free_port()
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(rules)],
              "alerting": {"alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": [alertmanager_url.split("//")[1]]}]}]},
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]} for job, targets in jobs.items()]}
    (tmp / "prometheus.yml").write_text(json.dumps(config, indent=1))
    cmd = [prometheus_binary(), f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
           f"--web.listen-address=127.0.0.1:{port}", f"--web.console.templates={tmp}", f"--web.console.libraries={tmp}", "--log.level=warn"]
    url = f"http://127.0.0.1:{port}"
    proc = _start(cmd, tmp / "prometheus.log", f"{url}/-/ready", "prometheus")
    try: yield PrometheusServer(url, proc, tmp / "prometheus.log")
    finally:
        _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def workbench_metrics_server(ws, log: Path):
    "`mlw dashboards` on `ws` in a process of its own: its GET /metrics answers `workbench_metrics_text(ws, Accept)`; yields host:port."
    from test_dashboards import _stop, serve_workspace
    port = free_port()
    proc = serve_workspace(ws.root, port, log)
    try: yield f"127.0.0.1:{port}"
    finally: _stop(proc)


def prom_alerts(prom: PrometheusServer, name: str, **labels) -> list[dict]:
    "Prometheus' active alerts (pending or firing) called `name` whose labels include `labels`."
    _, body = _get(f"{prom.url}/api/v1/alerts")
    return [a for a in json.loads(body)["data"]["alerts"]
            if a["labels"].get("alertname") == name and all(a["labels"].get(k) == v for k, v in labels.items())]


def am_alerts(url: str, name: str, **labels) -> list[dict]:
    "Alertmanager's alerts called `name` with these labels (active ones, as its v2 API lists them)."
    q = urllib.parse.urlencode([("filter", f'alertname="{name}"')] + [("filter", f'{k}="{v}"') for k, v in labels.items()])
    status, body = _get(f"{url}/api/v2/alerts?{q}")
    assert status == 200, body[:500]
    return json.loads(body)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "A workspace serving the regression model `job_duration` (text site codes with nulls, dates as strings), an API key, and pipelines."
    ws = Workspace.init(tmp_path_factory.mktemp("obsprom") / "ws")
    jobs_world(ws, base=dt.datetime.now(UTC) - dt.timedelta(days=200))
    materialize(ws, "site_stats")
    key = create_key(ws, "scoring", ["predictor"], who="test").key
    d = ws.root.parent / "nbs"
    make_notebook(d / "ok.ipynb", "n = 1", "x = n + 1")
    make_notebook(d / "boom.ipynb", "path = ''", "import json", "json.loads(open(path).read())")  # a missing input file
    ok = PipelineSpec.from_dict({"name": "nightly", "steps": {"fit": {"notebook": str(d / "ok.ipynb")}}})
    bad = PipelineSpec.from_dict({"name": "nightly", "steps": {"fit": {"notebook": str(d / "boom.ipynb"),
                                                                       "parameters": {"path": str(d / "missing.json")}}}})
    yield dict(ws=ws, key=key, ok=ok, bad=bad)
    ws.close()


ROWS = [{"site_code": "site-001", "crew_size": 2, "crew": "alpha"}, {"site_code": None, "crew_size": 4, "crew": "gamma"}]


def test_an_injected_fault_fires_the_shipped_rules_in_prometheus_and_reaches_alertmanager(world, tmp_path):
    ws, key = world["ws"], world["key"]
    assert run_pipeline(ws, world["ok"], progress=False).status == "succeeded"
    spans_file = tmp_path / "gateway-spans.jsonl"
    post = lambda url: httpx.post(f"{url}/v1/models/job_duration/predict", json={"rows": ROWS}, headers={"X-API-Key": key}, timeout=30)
    with contextlib.ExitStack() as stack:
        wb = stack.enter_context(workbench_metrics_server(ws, tmp_path / "dashboards.log"))
        am = stack.enter_context(alertmanager())
        healthy, _ = stack.enter_context(gateway(ws.root, "job_duration/1", args=["--tracing", f"file://{spans_file}"]))
        failing, _ = stack.enter_context(gateway(ws.root, "job_duration/1", args=["--fault", "error_rate=1.0"]))
        hosts = {u: u.split("//")[1] for u in (healthy, failing)}
        prom = stack.enter_context(prometheus_with_rules({"mlw-gateway": list(hosts.values()), "mlw": [wb]}, am))

        why = lambda: f"targets: {prom.targets()}"
        # a first request each, seen by Prometheus, then the traffic: a rate needs two samples of a series
        assert post(healthy).status_code == 200 and post(failing).status_code == 503
        prom.wait_for(f'count(mlw_gateway_requests_total{{instance=~"{hosts[healthy]}|{hosts[failing]}",model="job_duration"}})', 2, timeout_s=60)
        answered = [post(healthy) for _ in range(9)]
        assert {r.status_code for r in answered} == {200}, answered[0].text
        assert {post(failing).status_code for _ in range(9)} == {503}

        # every target is scraped; the healthy gateway's answers are counted; the pipeline's latest run is fine
        prom.wait_for(f'sum(mlw_gateway_requests_total{{instance="{hosts[healthy]}",status="200",model="job_duration"}})', 10, timeout_s=60)
        prom.wait_for('mlw_pipeline_last_run_failed{pipeline="nightly"}', 0, timeout_s=60)
        assert prom.value('mlw_pipeline_runs{pipeline="nightly",status="succeeded"}') == 1
        assert prom.value('mlw_workbench_up') == 1

        # the failing gateway: its error-rate alert is active (pending for the rule's 2 minutes), the healthy one's is not
        gw_alert = _wait("MLWGatewayHighErrorRate on the failing gateway", lambda: prom_alerts(prom, "MLWGatewayHighErrorRate", instance=hosts[failing]), why=why)
        assert gw_alert[0]["state"] in ("pending", "firing") and float(gw_alert[0]["value"]) == 1.0
        assert not prom_alerts(prom, "MLWGatewayHighErrorRate", instance=hosts[healthy])
        assert not prom_alerts(prom, "MLWPipelineRunFailed")

        # the injected fault: a run of `nightly` fails
        bad = run_pipeline(ws, world["bad"], progress=False)
        assert bad.status == "failed" and "FileNotFoundError" in bad.step("fit").error["type"]
        firing = _wait("MLWPipelineRunFailed firing", lambda: [a for a in prom_alerts(prom, "MLWPipelineRunFailed", pipeline="nightly") if a["state"] == "firing"], why=why)
        assert firing[0]["labels"]["severity"] == "warning" and firing[0]["labels"]["job"] == "mlw"
        got = _wait("MLWPipelineRunFailed at Alertmanager", lambda: am_alerts(am, "MLWPipelineRunFailed", pipeline="nightly"))
        assert got[0]["status"]["state"] == "active" and got[0]["annotations"]["summary"] == "The latest run of pipeline nightly failed"
        assert got[0]["labels"]["team"] == "mlops" and got[0]["labels"]["instance"] == wb
        assert prom.value('mlw_pipeline_steps{pipeline="nightly",step="fit",status="failed"}') == 1

        # a later run that succeeds resolves it
        assert run_pipeline(ws, world["ok"], progress=False).status == "succeeded"
        _wait("MLWPipelineRunFailed to resolve", lambda: not prom_alerts(prom, "MLWPipelineRunFailed"), why=why)

    # the healthy gateway's request traces (flushed when it stopped): a root span per request, its steps as children
    spans = [json.loads(l) for l in spans_file.read_text().splitlines()]
    rid = answered[0].json()["request_id"]
    root = next(s for s in spans if s["parent_id"] is None and s["attributes"].get("request_id") == rid)
    assert root["name"] == "POST /v1/models/{name}/predict" and root["resource"]["attributes"]["service.name"] == "mlw-gateway"
    children = [s for s in spans if s["parent_id"] == root["context"]["span_id"]]
    assert [s["name"] for s in sorted(children, key=lambda s: s["start_time"])] == ["auth", "validate", "features", "predict", "log"]
    assert {s["context"]["trace_id"] for s in children} == {root["context"]["trace_id"]}
    assert next(s for s in children if s["name"] == "features")["attributes"]["rows"] == 2
