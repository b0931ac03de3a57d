"""`mlw ci promote` for real (`cicd.promotion`): staging through the deployment manager, acceptance cases sent over
loopback to the gateway that follows the staging environment, then production by the project's strategy, with
`mlw serve --env staging` and `mlw serve --env production` gateway processes steered through their traffic tables.

One module workspace holds two differently shaped worlds. The jobs world (`toy.jobs_world`: a regression target, no
id column, text site codes with nulls as the feature key, visit days as strings) is the sample project's
(tests/ci_project): a fresh copy is taken through `mlw ci run` and then `mlw ci promote` to production, the alias
moved; then a second version whose staged endpoint answers errors (the gateway's off-by-default `--fault`) fails
acceptance after staging and is rolled back, staging serving the first version again and production untouched, the
developer told through a real webhook (a second sink down: queued, the outcome unchanged). The credit world (binary,
integer ids) goes through a canary under load, and a version production's smoke cases refuse is rolled back there.
A caller whose key lacks the deployer role is refused and audited; a missing or invalid promote section is refused
with nothing recorded. Counts and states are asserted, never wall-clock times."""
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import tomli_w
import yaml

from gateway_server import gateway
from toy import jobs_world
from mlops_workbench.alerts import deliver_pending, list_deliveries
from mlops_workbench.cicd.ci import list_ci_runs, load_ci_config
from mlops_workbench.cicd.promotion import get_promotion, list_promotions, run_promotion
from mlops_workbench.core.errors import Forbidden, InvalidInput
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.deploy.checks import TrafficReplay, request_rows
from mlops_workbench.deploy.deployments import SLO, define_environment, get_deployment, get_traffic
from mlops_workbench.experiments.definition import demo_experiment
from mlops_workbench.features.online import materialize
from mlops_workbench.registry.gates import default_gates
from mlops_workbench.registry.validation import validate_model
from mlops_workbench.registry.versions import get_model, register_model
from mlops_workbench.security.audit import read_audit
from mlops_workbench.security.keys import create_key
from mlops_workbench.security.rbac import Principal
from mlops_workbench.serving.model import load_served_model
from mlops_workbench.training.fit import load_holdout, train
from webhook import Hook, dead_port

UTC = dt.timezone.utc
PROJECT = Path(__file__).resolve().parent / "ci_project"
BIN = Path(sys.executable).parent
warnings.filterwarnings("ignore", category=UserWarning)


def _sinks(ws, sinks):
    "Set the workspace's alert sinks in memory and in its settings file (for `mlw` processes)."
    f = ws.root / "mlw.toml"
    s = tomllib.loads(f.read_text())
    if sinks is None: s.pop("alerts", None); ws.settings.pop("alerts", None)
    else: s["alerts"] = ws.settings["alerts"] = {"sinks": sinks, "backoff": 1}
    f.write_text(tomli_w.dumps(s))


def _train_jobs_v2(ws):
    "A second version of job_duration (more leaves), validated and registered: it becomes the candidate."
    from mlops_workbench.experiments.definition import Experiment, IntParam, KFold
    exp = Experiment(name="job_duration", target="duration", task="regression", feature_service="site_svc", entities="jobs",
                     exclude=["visit_day"], split=KFold(k=3), search_space={"num_leaves": IntParam(4, 16)},
                     params={"num_threads": 1}, trials=1, num_boost_round=30)
    run_id = train(ws, exp, {"num_leaves": 9, "min_child_samples": 5}, run_name="jobs-v2").run_id
    register_model(ws, run_id, "job_duration", validate_model(ws, run_id, default_gates("regression")), who="test")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "The jobs world (features materialized) and three credit versions; staging and production with room for a busy CI machine."
    ws = Workspace.init(tmp_path_factory.mktemp("promote") / "ws")
    jobs_world(ws, base=dt.datetime.now(UTC) - dt.timedelta(days=200))
    materialize(ws, "site_stats")
    exp = demo_experiment(ws, n_applications=1200)
    for i, n in enumerate((5, 9, 13), 1):
        r = train(ws, exp, {"num_leaves": n, "n_estimators": 15}, run_name=f"credit-v{i}").run_id
        register_model(ws, r, "credit_default", validate_model(ws, r, default_gates("binary")), who="test")
    materialize(ws, "customer_spend")
    for env, p99 in (("staging", 3000), ("production", 2000)):
        define_environment(ws, env, slo=SLO(p99_ms=p99, error_rate=0.05), who="test")
    yield ws
    ws.close()


@pytest.fixture
def project(tmp_path):
    "A fresh checkout of the sample project."
    return Path(shutil.copytree(PROJECT, tmp_path / "project"))


def _mlw(*args, ws, cwd, env=None):
    return subprocess.run([str(BIN / "mlw"), *args], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**{k: v for k, v in os.environ.items() if k not in ("MLW_API_KEY", "MLW_DEPLOY_KEY")}, "MLW_HOME": str(ws.root), **(env or {})})


def _serves(url, key, endpoint, version):
    import httpx
    r = httpx.get(f"{url}/v1/models/{endpoint}", headers={"X-API-Key": key}, timeout=10).json()
    return r["version"] == version and "candidate" not in r


def test_the_sample_project_goes_from_a_clean_checkout_to_production(world, project):
    "`mlw ci run` on a fresh copy, then `mlw ci promote`: staging, acceptance, production; the alias moves; the developer is told."
    ws = world
    p = _mlw("ci", "run", "--who", "dev", "--no_notify", ws=ws, cwd=project)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    hook = Hook()
    _sinks(ws, [{"kind": "webhook", "name": "team", "url": hook.url}])
    key = create_key(ws, "watcher", ["predictor"], who="test").key
    deployer = create_key(ws, "ci-deployer", ["deployer"], who="test").key  # the CI system's secret: it acts with the key's roles
    try:
        with gateway(ws.root, args=["--env", "staging"]) as (staging, _), gateway(ws.root, args=["--env", "production"]) as (production, _):
            p = _mlw("ci", "promote", ws=ws, cwd=project, env={"MLW_DEPLOY_KEY": deployer})
            assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-3000:]
            assert _serves(staging, key, "job_duration", 1) and _serves(production, key, "job_duration", 1)  # the real gateways serve it
    finally:
        _sinks(ws, None)
        hook.close()
    pr = list_promotions(ws, limit=1)[0]
    assert p.stdout.startswith(f"promotion {pr.id}: job_duration v1 promoted"), p.stdout
    assert (pr.state, pr.model, pr.version, pr.previous_version, pr.exit_code) == ("promoted", "job_duration", 1, None, 0)
    assert [(s.stage, s.outcome) for s in pr.run.stages] == [("staging", "passed"), ("acceptance", "passed"), ("production", "passed")]
    assert get_model(ws, "job_duration").aliases["production"] == 1 == get_model(ws, "job_duration").aliases["staging"]
    assert get_traffic(ws, "production", "job_duration").primary_version == 1
    st = pr.stage("staging")
    assert st.detail["gateway"] == staging and st.detail["gateway_from"] == "running"
    assert {"integration", "performance", "deployment"} <= {c.classname.split(".")[1] for c in st.cases}
    assert get_deployment(ws, pr.deployments["staging"]).checks["integration"]["passed"]
    acc = {c.name: c for c in pr.stage("acceptance").cases}
    assert set(acc) == {"a crew of five takes long", "a crew of one is quick", "a site nobody knows still answers", "load: 60 requests over 2 connections"}
    assert all(c.outcome == "passed" for c in acc.values()), acc
    load = json.loads(acc["load: 60 requests over 2 connections"].detail)
    assert (load["requests"], load["errors"]) == (60, 0)
    prod = pr.stage("production")
    assert prod.detail["aliases"]["production"] == 1 and prod.detail["previous_version"] is None
    assert {c.classname for c in prod.cases} >= {"production.smoke.cases", "production.deployment"}
    assert get_deployment(ws, pr.deployments["production"]).state == "succeeded"
    [body] = hook.bodies
    assert body["rule"] == "ci_promotion" and body["severity"] == "info" and body["details"]["event"] == "promoted"
    assert body["text"].startswith("[INFO] mlw ci promote job-duration: job_duration v1 promoted to production") and body["text"].endswith(f"ci-cd?run={pr.id}")
    assert pr.notification["deliveries"] == {"team": "delivered"}
    audit = read_audit(ws, action="ci.promote").row(-1, named=True)
    assert (audit["principal"], audit["outcome"], audit["resource"]) == ("ci-deployer", "ok", "model:job_duration")
    assert json.loads(audit["detail"])["via"] == "api_key" and pr.run.who == "ci-deployer"
    assert {"deploy.pending", "deploy.succeeded"} <= set(read_audit(ws, principal="ci-deployer")["action"])
    moved = [json.loads(r["detail"]) for r in read_audit(ws, action="alias.set").iter_rows(named=True) if r["principal"] == "ci-deployer"]
    assert any(m.get("alias") == "production" for m in moved), moved  # the alias moved through the audited registry path
    shown = _mlw("ci", "show", str(pr.id), ws=ws, cwd=project)
    assert shown.returncode == 0 and f"ci run {pr.id} of job-duration: passed" in shown.stdout and "acceptance" in shown.stdout
    assert "promoted to production" in Path(pr.run.summary_path).read_text()


def test_acceptance_failing_after_staging_rolls_back_and_tells_the_developer(world, project):
    "job_duration v2's staged endpoint answers errors: staging goes back to v1, production never sees v2, the record says why."
    ws = world
    _train_jobs_v2(ws)
    assert get_model(ws, "job_duration").aliases["candidate"] == 2
    up, dead = Hook(), dead_port()
    _sinks(ws, [{"kind": "webhook", "name": "team", "url": up.url}, {"kind": "webhook", "name": "down", "url": f"http://127.0.0.1:{dead}/hook", "timeout": 2}])
    try:
        with gateway(ws.root, args=["--env", "staging", "--fault", "version=2,error_rate=1.0"]) as (staging, _), \
             gateway(ws.root, args=["--env", "production"]) as (production, _):
            pr = run_promotion(ws, config=project / "mlw-ci.yaml", who="dev")
            key = create_key(ws, "watcher2", ["predictor"], who="test").key
            assert _serves(staging, key, "job_duration", 1) and _serves(production, key, "job_duration", 1)
        assert (pr.state, pr.version, pr.exit_code) == ("rolled_back", 2, 1), pr.reason
        assert pr.reason.startswith("acceptance failed after staging (4 of 4 case(s)): a crew of five takes long: HTTP 5"), pr.reason
        assert "staging rolled back" in pr.reason and "production untouched" in pr.reason
        assert [(s.stage, s.outcome) for s in pr.run.stages] == [("staging", "passed"), ("acceptance", "failed"), ("production", "skipped")]
        assert pr.stage("staging").detail["previous_version"] == 1
        m = get_model(ws, "job_duration")
        assert (m.aliases["staging"], m.aliases["production"]) == (1, 1)  # staging back on v1; production never moved
        assert get_traffic(ws, "staging", "job_duration").primary_version == 1 and get_traffic(ws, "production", "job_duration").primary_version == 1
        back = get_deployment(ws, pr.deployments["rollback_staging"])
        assert back.id == pr.deployments["staging"] and back.state == "rolled_back" and "acceptance failed" in back.reason
        assert "production" not in pr.deployments
        assert pr.notification["deliveries"] == {"team": "delivered", "down": "pending"}  # a sink down changes nothing
        [body] = up.bodies
        assert body["severity"] == "warning" and body["details"]["event"] == "rolled_back" and body["details"]["stage"] == "acceptance"
        assert "job_duration v2 rolled back" in body["text"] and "acceptance failed after staging" in body["text"] and f"run={pr.id}" in body["text"]
        later = Hook(dead)  # the sink comes back on its port
        try: out = deliver_pending(ws, now=dt.datetime.now(UTC) + dt.timedelta(minutes=5))
        finally: later.close()
        assert out["delivered"] == 1 and later.bodies[0]["details"]["run"] == pr.id and "text" in later.bodies[0]
        assert get_promotion(ws, pr.id).state == "rolled_back"
        audit = read_audit(ws, action="ci.promote").row(-1, named=True)
        assert (audit["principal"], audit["outcome"]) == ("dev", "failed") and json.loads(audit["detail"])["state"] == "rolled_back"
        assert read_audit(ws, action="deploy.rolled_back").height >= 1
    finally:
        _sinks(ws, None)
        up.close()


def test_the_credit_model_canaries_into_production_and_a_smoke_failure_rolls_production_back(world, tmp_path):
    "The other shape: v1 straight in, v2 by canary under load, v3 refused by production's smoke cases (its answers fail there)."
    ws = world
    sm = load_served_model(ws, "credit_default/1")
    _, rows = request_rows(sm, load_holdout(ws, sm.run_id), 3)
    cfg = {"project": "credit", "report_url": "http://127.0.0.1:5006/ci-cd?run={run}", "stages": {"model": {"model": "credit_default@candidate"}},
           "promote": {"model": "credit_default/1",
                       "staging": {"golden_rows": 10, "perf_requests": 200, "perf_duration_s": 2, "perf_connections": 2, "baseline": False},
                       "acceptance": {"cases": [{"name": f"applicant {i}", "row": r, "min": 0.0, "max": 1.0} for i, r in enumerate(rows)],
                                      "load": {"requests": 40, "connections": 2}},
                       "production": {"strategy": "canary", "steps": [0.5, 1.0], "step_s": 2, "min_requests": 5, "max_step_s": 30, "smoke": True}}}
    (tmp_path / "mlw-ci.yaml").write_text(yaml.safe_dump(cfg))
    config = tmp_path / "mlw-ci.yaml"
    key = create_key(ws, "traffic", ["predictor"], who="test").key
    with gateway(ws.root, args=["--env", "production", "--fault", "version=3,error_rate=1.0"]) as (production, _):
        first = run_promotion(ws, config=config, who="dev", notify=False)  # no staging gateway runs: the promotion starts its own
        assert first.state == "promoted", first.reason
        assert first.stage("staging").detail["gateway_from"] == "started for this promotion"
        with TrafficReplay(production, key, "credit_default", rows, threads=2) as load:
            second = run_promotion(ws, "credit_default/2", config, who="dev", notify=False)
        assert (second.state, second.previous_version) == ("promoted", 1), second.reason
        d = get_deployment(ws, second.deployments["production"])
        assert d.strategy == "canary" and [s["share"] for s in d.steps] == [0.5, 1.0] and all(s["analysis"]["passed"] for s in d.steps)
        assert load.versions[2] > 0 and set(load.status) == {200}
        cfg["promote"]["production"] = {"strategy": "direct", "smoke": True}  # no canary analysis: the smoke cases are what catch it
        (tmp_path / "direct.yaml").write_text(yaml.safe_dump(cfg))
        third = run_promotion(ws, "credit_default/3", tmp_path / "direct.yaml", who="dev", notify=False)  # staging is clean; production's gateway fails v3
        assert _serves(production, key, "credit_default", 2)
    assert third.state == "rolled_back" and third.reason.startswith("smoke cases failed in production (3)"), third.reason
    assert [(s.stage, s.outcome) for s in third.run.stages] == [("staging", "passed"), ("acceptance", "passed"), ("production", "failed")]
    m = get_model(ws, "credit_default")
    assert (m.aliases["production"], m.aliases["staging"]) == (2, 3)  # production back on v2
    assert get_deployment(ws, third.deployments["production"]).state == "rolled_back"
    assert "production rolled back" in third.stage("production").detail["rollback"]


def test_a_caller_without_the_deployer_role_is_refused_and_audited(world, project):
    ws = world
    before = len(list_ci_runs(ws, limit=1000))
    viewer = create_key(ws, "ci-bot", ["predictor"], who="test")
    p = _mlw("ci", "promote", "--api_key", viewer.key, ws=ws, cwd=project)
    assert p.returncode == 2 and "mlw ci promote of 'job_duration' refused" in p.stderr and "needs role deployer" in p.stderr, p.stderr
    p = _mlw("ci", "promote", ws=ws, cwd=project, env={"MLW_DEPLOY_KEY": viewer.key})  # as a CI system passes its secret
    assert p.returncode == 2 and "refused" in p.stderr
    row = read_audit(ws, action="access.denied").row(-1, named=True)
    assert (row["principal"], row["outcome"], json.loads(row["detail"])["action"]) == ("ci-bot", "denied", "ci.promote")
    with pytest.raises(Forbidden, match="needs role deployer"):
        run_promotion(ws, config=project / "mlw-ci.yaml", who=Principal("vic", {"viewer"}, "oidc"))
    scoped = Principal("dee", {"deployer"}, "api_key", models={"credit_default"})
    with pytest.raises(Forbidden, match="scoped to model"): run_promotion(ws, config=project / "mlw-ci.yaml", who=scoped)
    assert len(list_ci_runs(ws, limit=1000)) == before  # nothing recorded
    p = _mlw("ci", "promote", "--api_key", "mlw_nope", ws=ws, cwd=project)
    assert p.returncode == 2 and "API key" in p.stderr


def test_a_missing_or_invalid_promote_section_is_refused_with_nothing_recorded(world, project):
    ws = world
    before = len(list_ci_runs(ws, limit=1000))
    d = yaml.safe_load((project / "mlw-ci.yaml").read_text())
    promote = d.pop("promote")
    (project / "mlw-ci.yaml").write_text(yaml.safe_dump(d))
    p = _mlw("ci", "promote", ws=ws, cwd=project)
    assert p.returncode == 2 and "has no promote section" in p.stderr and "mlw-ci.yaml" in p.stderr, p.stderr
    p = _mlw("ci", "promote", "--config", "nope.yaml", ws=ws, cwd=project)
    assert p.returncode == 2 and "does not exist" in p.stderr
    promote["acceptance"]["cases"][0].pop("min")
    promote["acceptance"]["load"]["connections"] = 0
    promote["production"]["strategy"] = "shadow"
    promote["production"]["steps"] = [1.0, 0.5]
    promote["staging"]["gateway"] = "localhost:8000"
    d["promote"] = promote
    (project / "mlw-ci.yaml").write_text(yaml.safe_dump(d))
    p = _mlw("ci", "promote", ws=ws, cwd=project)
    assert p.returncode == 2, p.stderr
    for part in ("promote.acceptance.cases[0] (a crew of five takes long) says nothing to check", "promote.acceptance.load.connections must be a count",
                 "promote.production.strategy must be one of direct, blue_green, canary, got 'shadow'", "promote.production: rollout policy is invalid",
                 "promote.staging.gateway must be the URL"):
        assert part in p.stderr, (part, p.stderr)
    run = _mlw("ci", "run", ws=ws, cwd=project)  # the section is checked for every action alike
    assert run.returncode == 2 and "promote.production.strategy" in run.stderr
    with pytest.raises(InvalidInput, match="promote.model must be a model reference"):
        load_ci_config({"project": "x", "stages": {"unit": {}}, "promote": {"acceptance": {"cases": [{"row": {"a": 1}, "min": 0}]}}}, root=project)
    d["promote"]["model"] = "job_duration/99"
    for k in ("acceptance",): d["promote"][k] = {"cases": [{"name": "x", "row": {"crew_size": 1}, "min": 0}]}
    d["promote"]["production"] = {"strategy": "direct"}
    d["promote"]["staging"] = {}
    (project / "mlw-ci.yaml").write_text(yaml.safe_dump(d))
    p = _mlw("ci", "promote", ws=ws, cwd=project)
    assert p.returncode == 2 and "job_duration" in p.stderr and "99" in p.stderr, p.stderr
    assert len(list_ci_runs(ws, limit=1000)) == before
