"""A real Prometheus server for tests: Debian's `prometheus` on a free loopback port, a throw-away config and storage folder.

`prometheus_server(targets)` starts it scraping `targets` (`host:port` strings serving `/metrics`), waits until it is
ready, yields a `PrometheusServer` (`.url`, `.query(promql)`, `.value(promql)`, `.wait_for(promql, expected)`) and stops
it on exit (SIGTERM, then SIGKILL after 15 s; its folder is removed). Nothing leaves loopback: the config names only
the given targets, and Prometheus itself phones nowhere.
"""
import contextlib, json, shutil, subprocess, tempfile, time, urllib.error, urllib.parse, urllib.request
from pathlib import Path

import pytest

from conftest import free_port, wait_for_server

PROMETHEUS = "/usr/bin/prometheus"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, whatever *_proxy says


def prometheus_binary() -> str:
    "The `prometheus` executable, or fail the test with the fix (no skipping: the suite needs a real server)."
    exe = shutil.which("prometheus") or (PROMETHEUS if Path(PROMETHEUS).exists() else None)
    if not exe:
        pytest.fail("prometheus not found (looked on PATH and at /usr/bin/prometheus); run `make test` "
                    "(it apt-get installs the `prometheus` package) or `apt-get install prometheus`", pytrace=False)
    return exe


def _get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with _NO_PROXY.open(url, timeout=timeout) as r: return r.status, r.read()
    except urllib.error.HTTPError as e: return e.code, e.read()


class PrometheusServer:
    "A running Prometheus: its base URL and the HTTP query API."
    def __init__(self, url: str, proc: subprocess.Popen, log: Path):
        self.url, self.proc, self.log = url, proc, log

    def query(self, promql: str) -> list[dict]:
        "The result of an instant query: a list of {metric: labels, value: [time, 'text']} (a vector)."
        status, body = _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"prometheus query {promql!r} failed ({status}): {answer.get('error', body[:500])}")
        return answer["data"]["result"]

    def value(self, promql: str) -> float | None:
        "The single value of a query answering one series (e.g. a `sum(...)`); None while it answers none."
        result = self.query(promql)
        if not result: return None
        if len(result) != 1: raise AssertionError(f"prometheus query {promql!r} answered {len(result)} series, expected 1: {result}")
        return float(result[0]["value"][1])

    def wait_for(self, promql: str, expected: float, timeout_s: float = 30) -> float:
        "Poll `value(promql)` until it equals `expected` (bounded by `timeout_s`); return it."
        deadline, seen = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            seen = self.value(promql)
            if seen == expected: return seen
            time.sleep(0.25)
        raise AssertionError(f"prometheus: {promql!r} was {seen}, not {expected}, after {timeout_s} s; "
                             f"targets: {self.targets()}")

    def targets(self) -> list[dict]:
        "The active scrape targets with their health and last error."
        _, body = _get(f"{self.url}/api/v1/targets")
        return [{k: t.get(k) for k in ("scrapeUrl", "health", "lastError")} for t in json.loads(body)["data"]["activeTargets"]]


@contextlib.contextmanager
def prometheus_server(targets: list[str], scrape_interval: str = "1s", metrics_path: str = "/metrics", timeout_s: float = 30):
    "Start Prometheus on 127.0.0.1:PORT scraping `targets`; yield a `PrometheusServer`; stop it and remove its files on exit."
    exe, tmp, port = prometheus_binary(), Path(tempfile.mkdtemp(prefix="mlw-prometheus-")), free_port()
    config = {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
              "scrape_configs": [{"job_name": "mlw", "scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                                  "metrics_path": metrics_path, "static_configs": [{"targets": list(targets)}]}]}
    (tmp/"prometheus.yml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    log = tmp/"prometheus.log"
    # Debian's defaults point at /etc/prometheus and /var/lib/prometheus and listen on every interface: all overridden.
    cmd = [exe, f"--config.file={tmp/'prometheus.yml'}", f"--storage.tsdb.path={tmp/'data'}",
           f"--web.listen-address=127.0.0.1:{port}", f"--web.console.templates={tmp}", f"--web.console.libraries={tmp}",
           "--log.level=warn"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = PrometheusServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_for_server(proc, lambda: _get(f"{server.url}/-/ready", timeout=1)[0] == 200, "prometheus", log, timeout_s)
        yield server
    finally:
        proc.terminate()
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
