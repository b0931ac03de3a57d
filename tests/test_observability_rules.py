"""The alerting rules shipped with the package: valid for Debian's `promtool`, passing their unit tests
(`promtool test rules`), and naming only metrics the workbench emits (a renamed metric would leave a rule silent)."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import mlops_workbench.observability as obs
from mlops_workbench.observability.metrics import GatewayMetrics
from mlops_workbench.observability.workbench import workbench_metrics_text

RULES = Path(obs.__file__).with_name("prometheus_rules.yml")
RULES_TEST = Path(obs.__file__).with_name("prometheus_rules_test.yml")
PROMTOOL = "/usr/bin/promtool"


def promtool() -> str:
    exe = shutil.which("promtool") or (PROMTOOL if Path(PROMTOOL).exists() else None)
    if not exe:
        pytest.fail("promtool not found (PATH, /usr/bin/promtool); it comes with Debian's `prometheus` package: "
                    "run `make sysdeps` or `apt-get install prometheus`", pytrace=False)
    return exe


def _promtool(*args, cwd=None) -> str:
    r = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert r.returncode == 0, f"promtool {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def test_the_rules_file_is_valid_and_its_unit_tests_pass():
    assert RULES.exists() and RULES_TEST.exists(), "the rules and their tests ship beside observability/__init__.py"
    assert "SUCCESS: 7 rules found" in _promtool("check", "rules", str(RULES))
    assert "SUCCESS" in _promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)


def test_a_broken_rule_is_caught_by_promtool(tmp_path):
    "The unit tests have teeth: a rule whose threshold moved fails them."
    (tmp_path / "prometheus_rules.yml").write_text(RULES.read_text().replace("> 0.05", "> 0.5"))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    r = subprocess.run([promtool(), "test", "rules", RULES_TEST.name], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode != 0 and "MLWGatewayHighErrorRate" in r.stdout + r.stderr


def test_every_metric_a_rule_names_is_emitted(ws):
    "The names in the rules' expressions, against what the gateway and the workbench collector actually expose."
    gw = GatewayMetrics()
    gw.observe_request("/v1/models/{name}/predict", "m", 1, 200, 0.01)
    emitted = set(re.findall(r"^(mlw_[a-z0-9_]+)", gw.render()[0].decode(), re.M))
    from mlops_workbench.core.metadata import monitor_runs, monitor_results, utcnow
    with ws.metadata.begin() as c:  # a monitor run with a drift share, so the monitor families have samples
        rid = c.execute(monitor_runs.insert().values(monitor="m", model="jobs", run_at=utcnow(), reference_rows=1, current_rows=1,
                                                     status="ok", report={}, alerts=[])).inserted_primary_key[0]
        c.execute(monitor_results.insert().values(run_id=rid, monitor="m", at=utcnow(), kind="data_drift", metric="drift_share",
                                                  column=None, value=0.1, threshold=0.5, breached=False))
    emitted |= set(re.findall(r"^# TYPE (mlw_[a-z0-9_]+)", workbench_metrics_text(ws)[0].decode(), re.M))
    named = set()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            named |= set(re.findall(r"\b(mlw_[a-z0-9_]+)", rule["expr"]))
    base = lambda n: re.sub(r"_(bucket|count|sum|total)$", "", n)
    missing = {n for n in named if n not in emitted and base(n) not in {base(e) for e in emitted}}
    assert not missing, f"rules name metrics nothing emits: {sorted(missing)}"
    assert {"mlw_gateway_requests_total", "mlw_pipeline_last_run_failed", "mlw_monitor_drift_share"} <= named
