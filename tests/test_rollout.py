"""Rollouts for real (`deploy.rollout`): `mlw serve --env production` gateway processes steered through the
environment's traffic table while threads send real requests over loopback.

A canary of credit_default v2 passes its staging checks and every step, and the `production` alias moves; a canary
whose candidate is made to answer errors (the gateway's off-by-default `--fault`), and one made slow part-way through
the rollout, are each rolled back automatically within one analysis step with the reason in the record; blue-green
switches under load without one failed request; a second, differently shaped model (`job_duration`: regression,
text site codes, dates as strings) whose features were never materialized online fails its integration checks in
staging and is stopped with nothing promoted, then, materialized, goes in. Counts and durations are bounded; no
wall-clock time is asserted."""
import datetime as dt
import threading
import warnings

import httpx
import pytest

from gateway_server import gateway
from toy import jobs_world
from mlops_workbench.deploy.checks import TrafficReplay, request_rows
from mlops_workbench.deploy.deployments import SLO, define_environment, get_traffic
from mlops_workbench.deploy.rollout import deploy, gateway_url
from mlops_workbench.experiments.definition import demo_experiment
from mlops_workbench.features.online import materialize
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.registry.gates import default_gates
from mlops_workbench.registry.validation import validate_model
from mlops_workbench.registry.versions import get_model, register_model
from mlops_workbench.security.keys import create_key
from mlops_workbench.serving.model import load_served_model
from mlops_workbench.training.fit import load_holdout, train

UTC = dt.timezone.utc
warnings.filterwarnings("ignore", category=UserWarning)
FAST = dict(steps=[0.2, 0.5, 1.0], step_s=2.5, max_step_s=30, poll_s=0.5, min_requests=5, apply_timeout_s=60)  # a step waits for 5 canary requests
CHECKS = dict(golden_rows=20, perf_requests=300, perf_duration_s=3, perf_connections=2, baseline=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "Three versions of the credit model (v1 in production), the jobs model (not materialized), a predictor key."
    ws = Workspace.init(tmp_path_factory.mktemp("rollout") / "ws")
    exp = demo_experiment(ws, n_applications=1200)
    runs = [train(ws, exp, {"num_leaves": n, "n_estimators": 15}, run_name=f"v{i}").run_id for i, n in enumerate((5, 9, 13), 1)]
    for r in runs: register_model(ws, r, "credit_default", validate_model(ws, r, default_gates("binary")), who="test")
    jobs_world(ws, base=dt.datetime.now(UTC) - dt.timedelta(days=200))
    materialize(ws, "customer_spend")
    define_environment(ws, "production", slo=SLO(p99_ms=2000, error_rate=0.05), who="test")  # a shared CI machine: room for noise
    d = deploy(ws, "credit_default/1", "production", "direct", checks=False, who="test")  # nothing served before: straight in
    assert d.state == "succeeded" and get_model(ws, "credit_default").aliases["production"] == 1
    sm = load_served_model(ws, "credit_default/1")
    _, rows = request_rows(sm, load_holdout(ws, sm.run_id), 1)
    yield dict(ws=ws, row=rows[0], key=create_key(ws, "traffic", ["predictor"], who="test").key)
    ws.close()


def Load(url, key, row, threads=2, limit=500_000):
    "Threads sending `row` (a fresh routing key each) until the block ends or `limit` requests (the library's TrafficReplay)."
    return TrafficReplay(url, key, "credit_default", [row], threads=threads, limit=limit)


def _serving(ws, version):
    t = get_traffic(ws, "production", "credit_default")
    return (t.primary_version, t.candidate_version) == (version, None) and get_model(ws, "credit_default").aliases["production"] == version


def test_a_canary_that_holds_is_promoted_step_by_step(world):
    ws = world["ws"]
    with gateway(ws.root, args=["--env", "production"]) as (url, _):
        assert gateway_url(ws, "production") == url  # found through the gateway's announcement
        with Load(url, world["key"], world["row"]) as load:
            d = deploy(ws, "credit_default/2", "production", "canary", who="test", **FAST, **CHECKS, latency_slack_ms=250)  # a busy CI machine must not fail it
    assert d.state == "succeeded", d.reason
    assert d.checks["integration"]["passed"] and d.checks["performance"]["passed"]
    assert [s["share"] for s in d.steps] == [0.2, 0.5, 1.0]
    assert all(s["analysis"]["passed"] and s["analysis"]["canary"]["version"] == 2 for s in d.steps)
    assert d.steps[-1]["analysis"]["judged"] and all(s["analysis"]["judged"] or "not judged" in s["analysis"]["note"] for s in d.steps)
    assert [t["state"] for t in d.transitions] == ["pending", "staging", "testing", "rolling_out", "succeeded"]
    assert _serving(ws, 2)
    assert set(load.status) == {200} and {1, 2} <= set(load.versions)


@pytest.mark.parametrize("fault, why", [("version=3,error_rate=0.6", "error rate"),  # errors from the start
                                         ("version=3,delay_ms=300,after_s=6", "p99")])  # slow, starting part-way through
def test_a_failing_canary_is_rolled_back_within_a_step(world, fault, why):
    ws = world["ws"]
    with gateway(ws.root, args=["--env", "production", "--fault", fault]) as (url, _):
        with Load(url, world["key"], world["row"], threads=3) as load:
            d = deploy(ws, "credit_default/3", "production", "canary", checks=False, who="test", **{**FAST, "steps": [0.2, 0.4, 0.6, 0.8, 1.0]})
        assert d.state == "rolled_back" and d.reason.startswith("canary analysis failed at ") and why in d.reason, d.reason
        last = d.steps[-1]["analysis"]
        assert not last["passed"] and last["judged"] and last["canary"]["version"] == 3
        assert len(d.steps) < 5 or last["early"]  # stopped at the failing step's first judged look
        assert all(s["analysis"]["passed"] for s in d.steps[:-1])
        assert _serving(ws, 2)  # traffic back to the primary alone, the alias never moved
        r = httpx.get(f"{url}/v1/models/credit_default", headers={"X-API-Key": world["key"]}).json()
        assert r["version"] == 2 and "candidate" not in r  # the gateway itself serves v2 alone again
    assert load.versions[3] >= 5 and load.versions[2] > 0


def test_blue_green_switches_under_load_without_dropping_a_request(world):
    ws = world["ws"]
    with gateway(ws.root, args=["--env", "production"]) as (url, _):
        with Load(url, world["key"], world["row"], threads=3) as load:
            d = deploy(ws, "credit_default/3", "production", "blue_green", checks=False, who="test", warm_s=3, poll_s=0.5, min_requests=5)
    assert d.state == "succeeded", d.reason
    assert [s["share"] for s in d.steps] == [0.0, 1.0] and d.steps[1]["analysis"]["passed"]
    assert _serving(ws, 3)
    assert set(load.status) == {200}, load.status  # not one request dropped or failed across the switch
    assert load.versions[2] > 0 and load.versions[3] > 0


def test_a_staging_model_failing_integration_is_stopped_then_goes_in_when_fixed(world):
    "job_duration's features were never materialized online: keyed requests cannot equal offline."
    ws = world["ws"]
    d = deploy(ws, "job_duration/1", "production", "canary", who="test", **FAST, **CHECKS)
    assert d.state == "failed" and d.reason.startswith("integration checks failed: "), d.reason
    failing = [c["name"] for c in d.checks["integration"]["cases"] if not c["passed"]]
    assert failing and all(c in d.reason for c in failing[:3])
    assert "performance" not in d.checks  # stopped at the first failing check
    assert "production" not in get_model(ws, "job_duration").aliases and get_traffic(ws, "production", "job_duration") is None
    materialize(ws, "site_stats")
    d = deploy(ws, "job_duration/1", "production", "canary", who="test", **FAST, **CHECKS)
    assert d.state == "succeeded", d.reason
    assert d.checks["integration"]["passed"] and d.checks["performance"]["passed"]
    assert get_model(ws, "job_duration").aliases["production"] == 1


def test_shadow_logs_the_candidate_and_promotes_nothing(world):
    ws = world["ws"]
    cur = get_model(ws, "credit_default").aliases["production"]
    other = 1 if cur != 1 else 2
    with gateway(ws.root, args=["--env", "production"]) as (url, _):
        with Load(url, world["key"], world["row"]) as load:
            d = deploy(ws, f"credit_default/{other}", "production", "shadow", checks=False, who="test", window_s=3, min_requests=5)
    assert d.state == "rolled_back" and d.reason.startswith("shadow only"), d.reason
    a = d.steps[0]["analysis"]
    assert a["passed"] and a["shadow"]["version"] == other and a["paired_rows"] > 0 and a["mean_abs_diff"] is not None
    assert _serving(ws, cur) and set(load.versions) == {cur}  # answers came from the primary only


def test_the_deploy_pipeline_runs_a_rollout_with_its_outputs_recorded(world):
    from mlops_workbench.pipelines.runner import run_pipeline
    ws = world["ws"]
    cur = get_model(ws, "credit_default").aliases["production"]
    other = 1 if cur != 1 else 2
    with gateway(ws.root, args=["--env", "production"]) as (url, _):
        run = run_pipeline(ws, "deploy", {"model": f"credit_default/{other}", "strategy": "blue_green", "warm_s": 2.0, "checks": False,
                                          "who": "pipeline"}, progress=False)
    run.raise_for_status()
    outs = run.step("deploy").outputs
    assert (outs["state"], outs["model"], outs["version"], outs["previous_version"], outs["steps"]) == ("succeeded", "credit_default", other, cur, 2)
    assert _serving(ws, other)
    bad = run_pipeline(ws, "deploy", {"model": "credit_default/99", "strategy": "canary"}, progress=False)
    assert bad.status == "failed" and "credit_default" in str(bad.step("deploy").error)


def test_mlw_deploy_runs_the_rollout(world):
    import subprocess, sys
    from pathlib import Path
    ws = world["ws"]
    cur = get_model(ws, "credit_default").aliases["production"]
    other = 1 if cur != 1 else 2
    mlw = str(Path(sys.executable).with_name("mlw"))
    with gateway(ws.root, args=["--env", "production"]) as (url, _):
        with Load(url, world["key"], world["row"]):
            p = subprocess.run([mlw, "deploy", f"credit_default/{other}", "--env", "production", "--strategy", "canary", "--steps", "0.5,1",
                                "--step_s", "2", "--who", "carol", "--workspace", str(ws.root)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("recorded deployment ") and f"credit_default v{other}" in lines[0] and f"replacing v{cur}" in lines[0]
    assert lines[1:] == ["  step 1: 50% passed", "  step 2: 100% passed", f"deployment {lines[0].split()[2].rstrip(':')} succeeded"], p.stdout
    assert _serving(ws, other)


def test_a_gateway_killed_mid_canary_fails_the_deployment_and_restores_traffic(world):
    import signal, time
    from mlops_workbench.core.errors import Unavailable
    from mlops_workbench.deploy.deployments import active_deployment, get_deployment
    from gateway_server import stop
    ws = world["ws"]
    cur = get_model(ws, "credit_default").aliases["production"]
    other = 1 if cur != 1 else 2
    got = {}
    with gateway(ws.root, args=["--env", "production"]) as (url, proc):
        def run():
            try: got["d"] = deploy(ws, f"credit_default/{other}", "production", "canary", checks=False, who="test", **{**FAST, "step_s": 30})
            except Exception as e: got["error"] = e
        with Load(url, world["key"], world["row"], limit=2000):
            t = threading.Thread(target=run)
            t.start()
            deadline = time.monotonic() + 120
            while (a := active_deployment(ws, "production")) is None or a.state != "rolling_out":
                assert time.monotonic() < deadline and t.is_alive(), got
                time.sleep(0.2)
            time.sleep(2)  # inside the first step
            stop(proc, signal.SIGKILL)
            t.join(120)
    assert isinstance(got.get("error"), Unavailable), got
    d = get_deployment(ws, a.id)
    assert d.state == "failed" and d.reason.startswith("the rollout stopped: Unavailable: the gateway at "), d.reason
    assert _serving(ws, cur)  # the traffic table serves the primary alone: a restarted gateway serves what it did
