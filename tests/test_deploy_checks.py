"""Deployment checks against real gateway processes (`mlw serve` via `gateway_process`), over loopback HTTP.

One workspace, one gateway serving three endpoints: the demo's credit model v1, its v2 under the endpoint `v2`, and a
differently shaped model (`job_duration`: regression, no id column, text site codes with nulls, dates as strings,
features by text key). The demo model and the regression model pass their integration checks; checks of v1 pointed at
the endpoint serving v2 fail with the failing cases listed; the performance check is bounded by its request count, a
gateway made slow (a real TCP proxy in front of it that holds every request 100 ms) fails a p99 SLO the direct gateway
meets by construction, a body the model refuses stops before any load, and a machine without wrk gets NotSupported
naming the Debian package. No timing is asserted beyond what the proxy's delay makes certain."""
import datetime as dt
import json
import socket
import threading
import time
import warnings

import pytest

from toy import jobs_world
from mlops_workbench.core.errors import InvalidInput, NotSupported
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.deploy.checks import (CheckReport, PerfReport, PerformanceSLO, integration_checks, performance_check,
                                           request_rows)
from mlops_workbench.experiments.definition import demo_experiment
from mlops_workbench.features.online import materialize
from mlops_workbench.registry.gates import default_gates
from mlops_workbench.registry.validation import validate_model
from mlops_workbench.registry.versions import register_model
from mlops_workbench.security.keys import create_key, list_keys
from mlops_workbench.serving.gateway import gateway_process
from mlops_workbench.serving.model import load_served_model
from mlops_workbench.training.fit import load_holdout, train

UTC = dt.timezone.utc
warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "Two versions of the credit model, the jobs model with fresh features, both materialized, a predictor key; one gateway."
    ws = Workspace.init(tmp_path_factory.mktemp("deploy") / "ws")
    exp = demo_experiment(ws, n_applications=1500)
    runs = [train(ws, exp, p, run_name=f"v{i}").run_id for i, p in enumerate(({"num_leaves": 7, "n_estimators": 20}, {"num_leaves": 15, "n_estimators": 30}), 1)]
    for r in runs: register_model(ws, r, "credit_default", validate_model(ws, r, default_gates("binary")), who="test")
    jobs, _ = jobs_world(ws, base=dt.datetime.now(UTC) - dt.timedelta(days=200))  # readings up to now: served features are fresh
    materialize(ws, "customer_spend")
    materialize(ws, "site_stats")
    key = create_key(ws, "deploy-bot", ["predictor"], who="test").key
    with gateway_process(ws, "credit_default/1", "v2=credit_default/2", "job_duration/1") as gw:
        yield dict(ws=ws, runs=runs, jobs=jobs, key=key, url=gw.url)
    ws.close()


def _roundtrip(report):
    return type(report).from_dict(json.loads(json.dumps(report.to_dict())))


def test_the_demo_model_passes(world):
    ws = world["ws"]
    rep = integration_checks(ws, "credit_default/1", world["url"], world["key"], who="test")
    assert rep.passed, [(c.name, c.detail) for c in rep.failures]
    names = {c.name for c in rep.cases}
    assert {"ready", "serves the version", "OpenAPI request schema", "golden rows equal offline", "golden rows one at a time",
            "keyed rows equal offline point-in-time", "wrong type is 422", "unknown field is 422", "unseen level is 422",
            "empty batch is 422", "malformed JSON is 400", "oversize body is 413", "wrong content type is 415",
            "unknown endpoint is 404", "no credentials is 401", "unknown key is 401", "viewer key is 403"} == names
    assert not any(c.skipped for c in rep.cases)
    keyed = next(c for c in rep.cases if c.name == "keyed rows equal offline point-in-time")
    assert keyed.got["rows"] >= 10 and keyed.got["max_abs_diff"] <= 1e-9, keyed
    assert (rep.model, rep.version, rep.endpoint) == ("credit_default", 1, "credit_default")
    assert _roundtrip(rep).to_dict() == rep.to_dict() and "<table>" in rep._repr_html_()
    assert list(list_keys(ws)["principal"]) == ["deploy-bot"]  # the check's viewer key is revoked
    assert set(list_keys(ws, include_revoked=True)["principal"]) == {"deploy-bot", "deploy-checks"}


def test_a_regression_model_keyed_by_text_codes_passes(world):
    rep = integration_checks(world["ws"], "job_duration/1", world["url"], world["key"], golden_rows=30)
    assert rep.passed, [(c.name, c.detail) for c in rep.failures]
    got = {c.name: c for c in rep.cases}
    assert got["golden rows equal offline"].got["rows"] == 30
    assert not got["keyed rows equal offline point-in-time"].skipped and got["keyed rows equal offline point-in-time"].got["rows"] >= 5
    assert "crew" in got["unseen level is 422"].expected["message names"] or "last_state" in got["unseen level is 422"].expected["message names"]


def test_the_wrong_version_fails_with_the_failing_cases(world):
    "The golden set from v1, the endpoint serving v2: the deployment would be stopped, and the record says why."
    rep = integration_checks(world["ws"], "credit_default/1", world["url"], world["key"], endpoint="v2")
    assert not rep.passed
    failing = {c.name for c in rep.failures}
    assert {"serves the version", "OpenAPI request schema", "golden rows equal offline", "golden rows one at a time",
            "keyed rows equal offline point-in-time"} == failing, failing
    version = next(c for c in rep.failures if c.name == "serves the version")
    assert version.expected == {"model": "credit_default", "version": 1} and version.got["version"] == 2
    golden = next(c for c in rep.failures if c.name == "golden rows equal offline")
    assert golden.got["max_abs_diff"] > 1e-9 and golden.detail.startswith("row ")
    saved = json.loads(json.dumps(rep.to_dict()))  # as a deployment record keeps it
    assert saved["passed"] is False and {c["name"] for c in saved["cases"] if not c["passed"]} == failing
    assert all(c.passed for c in rep.cases if c.group in ("bad requests", "auth"))


def test_an_unreachable_endpoint_fails_every_case_but_raises_nothing(world):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: connections are refused
        rep = integration_checks(world["ws"], "credit_default/1", dead, world["key"], golden_rows=5)
    assert len(rep.cases) == 17 and rep.failures == rep.cases  # each case failed on its own, the error its detail
    assert all("ConnectError" in c.detail or "ConnectionRefusedError" in c.detail for c in rep.failures), [c.detail for c in rep.failures]
    with pytest.raises(InvalidInput, match="golden_rows 0 is invalid"): integration_checks(world["ws"], "credit_default/1", dead, world["key"], golden_rows=0)


class DelayProxy:
    "A TCP proxy on loopback that holds every chunk a client sends for `delay_s` before passing it on: a slow gateway."
    def __init__(self, target_port: int, delay_s: float):
        self.target, self.delay, self.sock = target_port, delay_s, socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try: client, _ = self.sock.accept()
            except OSError: return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(client, server, self.delay), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, 0), daemon=True).start()

    @staticmethod
    def _pump(src, dst, delay):
        try:
            while data := src.recv(65536):
                if delay: time.sleep(delay)
                dst.sendall(data)
        except OSError: pass
        finally:
            for s in (src, dst):
                try: s.shutdown(socket.SHUT_RDWR)
                except OSError: pass

    def close(self):
        self.closed = True
        self.sock.close()


def _body(world):
    ws = world["ws"]
    _, rows = request_rows(load_served_model(ws, "credit_default/1"), load_holdout(ws, world["runs"][0]), 1)
    return {"rows": rows}


def test_performance_is_bounded_and_a_slow_gateway_fails_its_slo(world):
    body, path = _body(world), "/v1/models/credit_default/predict"
    direct = performance_check(world["url"] + path, world["key"], body, requests=1500, duration_s=5, connections=4)
    assert direct.passed and direct.error_rate == 0 and direct.errors == {}, direct
    assert direct.requests <= 1500 + 4 and (direct.bounded_by == "requests") == (direct.requests >= 1500)
    assert [c.name for c in direct.checks] == ["a sample request succeeds", "error rate within SLO"]
    assert PerfReport.from_dict(json.loads(json.dumps(direct.to_dict()))) == direct
    proxy = DelayProxy(int(world["url"].rsplit(":", 1)[1]), delay_s=0.1)
    try:
        slow = performance_check(proxy.url + path, world["key"], body, requests=200, duration_s=2, connections=2,
                                 slo=PerformanceSLO(p99_ms=50, max_error_rate=0.0), baseline=direct, warmup=2)
    finally: proxy.close()
    assert slow.p50_ms >= 100 and slow.error_rate == 0 and slow.bounded_by == "time"  # every request waited 100 ms in the proxy
    assert not slow.passed and "p99 latency within SLO" in {c.name for c in slow.failures}
    assert any(r.startswith(f"p99 latency {slow.p99_ms:.2f} ms is over the SLO's 50 ms") for r in slow.reasons), slow.reasons
    assert slow.baseline["rps"] == direct.rps and {"p99 latency against baseline", "throughput against baseline"} <= {c.name for c in slow.checks}
    assert "<svg" in slow._repr_html_()


def test_a_refused_body_stops_before_the_load_and_missing_wrk_is_not_supported(world, monkeypatch, tmp_path):
    body = _body(world)
    url = world["url"] + "/v1/models/credit_default/predict"
    rep = performance_check(url, None, body, requests=50, duration_s=1)
    assert not rep.passed and rep.requests == 0 and "HTTP 401" in rep.reasons[0]
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without wrk
    with pytest.raises(NotSupported, match="install the Debian package 'wrk'"):
        performance_check(url, world["key"], body, requests=50, duration_s=1)
