"""Deployment records for real: the state machine on the demo's credit model, refusals (never validated, rejected,
archived, unknown environment) with nothing written, a second deployment to a busy environment refused when 4
processes race for it on SQLite and on PostgreSQL (and by the database's own index when a writer skips the lock),
rollback moving the `production` alias back through the audited registry, a caller without the deployer role
refused (403) and audited, and `mlw deploy` through the installed console script. A second model shaped
differently (regression on `toy("regression")` without its id column) goes through the same paths.
Real MLflow stores and metadata databases; no mocks."""
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2-core machines: every LightGBM below runs on one thread

from pg import pg_new_database, pg_server  # noqa: F401  (fixtures)
from toy import toy
from mlops_workbench.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from mlops_workbench.core.metadata import deployments, utcnow
from mlops_workbench.core.storage import write_dataset
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.deploy.deployments import *
from mlops_workbench.experiments.definition import Experiment, FloatParam, TimeSplit, demo_experiment
from mlops_workbench.registry.gates import ModelSize
from mlops_workbench.registry.validation import validate_model
from mlops_workbench.registry.versions import alias_history, archive, get_model, register_model, version_at
from mlops_workbench.security.audit import read_audit, verify_audit
from mlops_workbench.security.keys import authenticate_key, create_key
from mlops_workbench.training.fit import train

pytestmark = pytest.mark.timeout(900)

MLW = str(Path(sys.executable).parent / "mlw")
ENV = {k: v for k, v in os.environ.items() if k != "MLW_HOME"}


def register_regression(ws, name="toy_reg", versions=2) -> list:
    "`versions` versions of a regression model on toy data without its id column, each passing its gates; their run ids."
    write_dataset(ws, "toy_regression", toy("regression").drop("region_id"), source={"kind": "test", "location": "toy()"})
    e = Experiment(name="toy_regression", target="label", task="regression", dataset="toy_regression", split=TimeSplit("t", 0.25),
                   metric="rmse", search_space={"learning_rate": FloatParam(0.05, 0.3)}, params={"num_threads": 1}, num_boost_round=30)
    runs = [train(ws, e, {"learning_rate": lr}).run_id for lr in (0.1, 0.2)[:versions]]
    for rid in runs: register_model(ws, rid, name, validate_model(ws, rid, [ModelSize()], name=name, log=False), who="trainer")
    return runs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "One workspace with the demo's credit model (v1) and a regression model (v1, v2)."
    ws = Workspace.init(tmp_path_factory.mktemp("deploy") / "ws")
    exp = demo_experiment(ws, n_applications=2000)
    credit = train(ws, exp, {"learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 40}).run_id
    register_model(ws, credit, "credit_default", validate_model(ws, credit, [ModelSize()], name="credit_default", log=False), who="trainer")
    runs = register_regression(ws)
    yield ws, {"credit": credit, "reg": runs}
    ws.close()


def deploy_actions(ws, deployment_id) -> list:
    "The audit log's deploy.* actions about one deployment, oldest first."
    return [r["action"] for r in read_audit(ws, action="deploy.*").iter_rows(named=True) if json.loads(r["detail"]).get("deployment") == deployment_id]


def walk(ws, d, who="ci"):
    "Take deployment `d` from pending to rolling_out."
    for s in ("staging", "testing", "rolling_out"): d = transition_deployment(ws, d.id, s, who=who)
    return d


# -- the state machine ------------------------------------------------------------------------------------------------
def test_state_machine(world):
    ws, _ = world
    d = start_deployment(ws, "credit_default@candidate", "staging", "blue_green", who="ann")
    assert (d.state, d.model, d.version, d.endpoint, d.strategy, d.created_by, d.previous_version) == ("pending", "credit_default", 1, "credit_default", "blue_green", "ann", None)
    with pytest.raises(Conflict, match=f"deployment {d.id} \\(credit_default v1 to staging\\) is pending and cannot become testing; from pending: staging, failed, rolled_back"):
        transition_deployment(ws, d.id, "testing")
    with pytest.raises(Conflict, match="is pending; only a rolling_out deployment can succeed"): finish_deployment(ws, d.id)
    d = transition_deployment(ws, d.id, "staging", who="ci", reason="gateway up on port 8123")
    d = transition_deployment(ws, d.id, "testing", who="ci")
    d = record_check(ws, d.id, "integration", {"passed": True, "cases": 40})
    d = record_check(ws, d.id, "performance", {"passed": True, "p99_ms": 3.2, "rps": 800.0})
    d = transition_deployment(ws, d.id, "rolling_out", who="ci")
    d = record_step(ws, d.id, 1.0, {"switched": True})
    d = finish_deployment(ws, d.id, who="ci")
    assert [(t["state"], t["by"]) for t in d.transitions] == [("pending", "ann"), ("staging", "ci"), ("testing", "ci"), ("rolling_out", "ci"), ("succeeded", "ci")]
    assert d.transitions[1]["reason"] == "gateway up on port 8123"
    assert (d.outcome, d.active, sorted(d.checks), [s["share"] for s in d.steps]) == ("succeeded", False, ["integration", "performance"], [1.0])
    assert d.finished_at is not None and d.finished_at >= d.created_at
    assert get_model(ws, "credit_default").aliases["staging"] == 1
    assert get_traffic(ws, "staging", "credit_default").shares() == {1: 1.0}
    assert deploy_actions(ws, d.id) == ["deploy.pending", "deploy.staging", "deploy.testing", "deploy.check", "deploy.check", "deploy.rolling_out",
                                        "deploy.step", "deploy.succeeded", "deploy.traffic"]
    rows = read_audit(ws, action="deploy.*")
    assert set(rows["resource"]) == {"endpoint:credit_default"}
    assert verify_audit(ws).ok
    for bad in ("testing", "failed"):
        with pytest.raises(Conflict): transition_deployment(ws, d.id, bad, reason="late")
    with pytest.raises(InvalidInput, match="through rollback"): transition_deployment(ws, d.id, "rolled_back")
    assert "succeeded" in d._repr_html_() and "integration" in d._repr_html_()
    assert get_deployment(ws, d.id) == d


# -- refusals -------------------------------------------------------------------------------------------------------------
def test_refused_versions_and_environments_write_nothing(world):
    ws, runs = world
    c = ws.backend("tracking").client
    raw = c.create_model_version("toy_reg", c.get_model_version("toy_reg", "1").source, run_id=runs["reg"][0])  # straight into MLflow
    rejected = register_model(ws, runs["reg"][1], "toy_reg", validate_model(ws, runs["reg"][1], [ModelSize(max_bytes=10)], name="toy_reg", log=False), who="trainer")
    assert rejected.tags["mlw.validation"] == "rejected"
    spare = register_model(ws, runs["reg"][1], "toy_reg", validate_model(ws, runs["reg"][1], [ModelSize()], name="toy_reg", log=False), who="trainer")
    archive(ws, "toy_reg", spare.version, who="ann", reason="not needed")
    before_history, before_audit = deployment_history(ws).height, read_audit(ws).height
    cases = [(f"toy_reg/{raw.version}", "staging", Conflict, f"model 'toy_reg' v{raw.version} was never validated and cannot be deployed to 'staging'"),
             (f"toy_reg/{rejected.version}", "staging", Conflict, f"model 'toy_reg' v{rejected.version} was rejected by its validation gates"),
             (f"toy_reg/{spare.version}", "production", Conflict, f"model 'toy_reg' v{spare.version} is archived and cannot be deployed to 'production'"),
             ("toy_reg/1", "prod", NotFound, "environment 'prod' not found; environments: staging, production"),
             ("toy_reg@production", "staging", NotFound, "model 'toy_reg' has no alias 'production'"),
             ("toy_reg", "staging", InvalidInput, "names no alias or version")]
    for ref, env, exc, msg in cases:
        with pytest.raises(exc) as e: start_deployment(ws, ref, env, who="ann")
        assert msg in str(e.value), (ref, str(e.value))
    with pytest.raises(InvalidInput, match="strategy 'big_bang' is not one of"): start_deployment(ws, "toy_reg/1", "staging", "big_bang")
    with pytest.raises(InvalidInput, match="params must be a dict of plain JSON values"): start_deployment(ws, "toy_reg/1", "staging", params={"at": dt.date.today()})
    assert (deployment_history(ws).height, read_audit(ws).height) == (before_history, before_audit)


# -- one unfinished deployment per environment, across processes ----------------------------------------------------
# Opens the workspace, says `ready`; then per `go` line tries one deployment and prints `ok <id>` or the error on one line.
RACE_SCRIPT = textwrap.dedent("""
    import sys
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.deploy.deployments import start_deployment
    from mlops_workbench.serving.refs import resolve_model
    ws = Workspace.open(sys.argv[1])
    resolve_model(ws, "toy_reg/1")  # warm: MLflow's client and imports, so the racers start together
    print("ready", flush=True)
    for line in sys.stdin:
        try: print("ok", start_deployment(ws, "toy_reg@candidate", "production", "canary", who=sys.argv[2]).id, flush=True)
        except Exception as e: print(f"{type(e).__name__}: {' '.join(str(e).split())}", flush=True)
""")
PROCESSES, ROUNDS = 4, 5


@pytest.fixture(params=["sqlite", "postgresql"])
def race_ws(request, tmp_path, monkeypatch):
    "A workspace with a registered regression model, its metadata on SQLite or on a real PostgreSQL server."
    monkeypatch.delenv("MLW_HOME", raising=False)
    backends = {"metadata": request.getfixturevalue("pg_new_database")()} if request.param == "postgresql" else None
    ws = Workspace.init(tmp_path / "ws", backends=backends)
    register_regression(ws, versions=1)
    yield ws
    ws.close()


def test_second_deployment_to_an_environment_is_refused_across_processes(race_ws, tmp_path):
    ws = race_ws
    procs = [subprocess.Popen([sys.executable, "-c", RACE_SCRIPT, str(ws.root), f"racer{i}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=ENV) for i in range(PROCESSES)]
    rounds = []
    try:
        for p in procs: assert p.stdout.readline().strip() == "ready", p.communicate(timeout=120)[1]
        for _ in range(ROUNDS):
            for p in procs: p.stdin.write("go\n"); p.stdin.flush()  # all loaded and waiting: they race
            got = [p.stdout.readline().strip() for p in procs]
            won = [g for g in got if g.startswith("ok ")]
            assert len(won) == 1, got
            winner = int(won[0].split()[1])
            for g in got:
                if g in won: continue
                assert g.startswith(f"Conflict: environment 'production' already has an unfinished deployment: {winner}, toy_reg v1 by canary, pending"), got
            assert active_deployment(ws, "production").id == winner
            rounds.append(winner)
            fail_deployment(ws, winner, "race round over", who="referee")  # frees the environment for the next round
    finally:
        for p in procs: p.stdin.close()
        for p in procs:
            try: p.wait(timeout=60)
            except subprocess.TimeoutExpired: p.kill(); p.wait()
    h = deployment_history(ws, "production")
    assert (h.height, sorted(h["id"]), set(h["state"])) == (ROUNDS, sorted(rounds), {"failed"})
    assert verify_audit(ws).ok


def test_the_database_refuses_a_second_unfinished_deployment_itself(race_ws):
    "A writer that skips start_deployment (and its lock) still cannot add a second unfinished row: the partial unique index."
    ws = race_ws
    d = start_deployment(ws, "toy_reg/1", "production", who="ann")
    now = utcnow()
    row = dict(model="toy_reg", version=1, run_id=d.run_id, ref="toy_reg/1", environment="production", endpoint="toy_reg", strategy="direct",
               state="pending", params={}, steps=[], checks={}, transitions=[], created_by="rogue", created_at=now, updated_at=now)
    with pytest.raises(sa.exc.IntegrityError):
        with ws.metadata.begin() as c: c.execute(deployments.insert().values(**row))
    with ws.metadata.begin() as c: c.execute(deployments.insert().values(**{**row, "environment": "staging"}))  # another environment: fine
    with ws.metadata.begin() as c: c.execute(deployments.insert().values(**{**row, "state": "failed", "finished_at": now}))  # finished: fine
    assert [r["environment"] for r in deployment_history(ws).iter_rows(named=True)].count("production") == 2


# -- rollback ---------------------------------------------------------------------------------------------------------------
def test_rollback_moves_production_back_and_version_at_stays_true(world):
    ws, _ = world
    d1 = finish_deployment(ws, walk(ws, start_deployment(ws, "toy_reg/1", "production", who="ann")).id, who="ci")
    served_v1 = utcnow()
    d2 = walk(ws, start_deployment(ws, "toy_reg/2", "production", "canary", who="ann"))
    assert d2.previous_version == 1
    set_traffic(ws, "production", "toy_reg", 1, 2, 0.1, who="ci", deployment_id=d2.id)
    assert get_traffic(ws, "production", "toy_reg").shares() == {1: 0.9, 2: 0.1}
    d2 = finish_deployment(ws, d2.id, who="ci")
    served_v2 = utcnow()
    assert (get_model(ws, "toy_reg").aliases["production"], get_traffic(ws, "production", "toy_reg").describe()) == (2, "v2 100%")
    g = traffic_generation(ws, "production")
    r = rollback(ws, "production", who="bob", reason="error rate up for big baskets")
    assert (r.id, r.state, r.outcome, r.reason, r.transitions[-1]["by"]) == (d2.id, "rolled_back", "rolled_back", "error rate up for big baskets", "bob")
    assert get_model(ws, "toy_reg").aliases["production"] == 1
    assert get_traffic(ws, "production", "toy_reg").describe() == "v1 100%" and traffic_generation(ws, "production") > g
    assert [version_at(ws, "toy_reg", "production", t) for t in (served_v1, served_v2, utcnow())] == [1, 2, 1]
    last = alias_history(ws, "toy_reg", "production").tail(2)
    assert last.select("version", "action", "actor").rows() == [(2, "alias_removed", "bob"), (1, "alias_set", "bob")]
    assert last["reason"].to_list() == ["error rate up for big baskets"] * 2
    assert deploy_actions(ws, d2.id)[-2:] == ["deploy.rolled_back", "deploy.traffic"]
    with pytest.raises(Conflict, match=f"deployment {d1.id} put toy_reg v1 in production with nothing before it"):
        rollback(ws, "production", who="bob", reason="again", endpoint="toy_reg")
    # an unfinished deployment is ended by a rollback, and what served before keeps serving
    d3 = walk(ws, start_deployment(ws, "toy_reg/2", "production", "canary", who="ann"))
    set_traffic(ws, "production", "toy_reg", 1, 2, 0.25, who="ci", deployment_id=d3.id)
    r3 = rollback(ws, "production", who="bob", reason="canary analysis failed")
    assert (r3.id, r3.state, get_traffic(ws, "production", "toy_reg").describe(), get_model(ws, "toy_reg").aliases["production"]) == (d3.id, "rolled_back", "v1 100%", 1)
    assert active_deployment(ws, "production") is None


# -- RBAC ----------------------------------------------------------------------------------------------------------------------
def test_caller_without_deployer_role_is_refused_and_audited(world):
    ws, _ = world
    predictor = authenticate_key(ws, create_key(ws, "scoring-svc", ["predictor"], who="admin").key)
    deployer = authenticate_key(ws, create_key(ws, "release-bot", ["deployer"], models=["toy_reg"], who="admin").key)
    n = deployment_history(ws).height
    with pytest.raises(Forbidden) as e: start_deployment(ws, "toy_reg/1", "staging", who=predictor)
    assert e.value.http_status == 403 and "'scoring-svc' (roles: predictor; via api_key) may not endpoint.deploy on endpoint:toy_reg: it needs role deployer" in str(e.value)
    with pytest.raises(Forbidden): rollback(ws, "production", who=predictor, reason="x")
    with pytest.raises(Forbidden): define_environment(ws, "qa", who=predictor)
    with pytest.raises(Forbidden, match="scoped to model"): start_deployment(ws, "credit_default/1", "production", who=deployer)  # out of its key's scope
    denied = read_audit(ws, action="access.denied").filter(read_audit(ws, action="access.denied")["principal"].is_in(["scoring-svc", "release-bot"]))
    assert denied.select("principal", "resource", "outcome").rows() == [("scoring-svc", "endpoint:toy_reg", "denied"), ("scoring-svc", "endpoint:toy_reg", "denied"),
                                                                        ("scoring-svc", "endpoint", "denied"), ("release-bot", "endpoint:credit_default", "denied")]
    assert [json.loads(x)["action"] for x in denied["detail"]] == ["endpoint.deploy", "endpoint.rollback", "endpoint.deploy", "endpoint.deploy"]
    assert deployment_history(ws).height == n
    d = start_deployment(ws, "toy_reg/1", "staging", who=deployer)
    assert d.created_by == "release-bot"
    d = fail_deployment(ws, d.id, "done with the check", who=deployer)
    assert d.transitions[-1]["by"] == "release-bot"


# -- the CLI ---------------------------------------------------------------------------------------------------------------------
def mlw(*args, ws):
    return subprocess.run([MLW, *map(str, args), "--workspace", str(ws.root)], env=ENV, capture_output=True, text=True, timeout=300)


def test_mlw_deploy(world):
    ws, _ = world
    p = mlw("deploy", "credit_default@candidate", "--env", "production", "--strategy", "canary", "--who", "carol", "--record_only", ws=ws)
    assert p.returncode == 0, p.stderr
    d = active_deployment(ws, "production")
    assert p.stdout == f"recorded deployment {d.id}: credit_default v1 (credit_default@candidate) to production/credit_default by canary, replacing nothing; state pending\n"
    assert (d.state, d.created_by, d.strategy) == ("pending", "carol", "canary")
    assert f"--record_only: deployment {d.id} stays pending" in p.stderr
    p = mlw("deploy", "toy_reg/1", "--env", "production", ws=ws)
    assert p.returncode == 2 and p.stderr.startswith(f"mlw: error: environment 'production' already has an unfinished deployment: {d.id}, credit_default v1 by canary, pending, started by carol")
    p = mlw("deploy", "status", "--env", "production", ws=ws)
    assert p.returncode == 0 and f"unfinished: {d.id}" in p.stdout and "SLO p99 <= 250 ms" in p.stdout, p.stdout
    p = mlw("deploy", "rollback", "--env", "production", "--who", "carol", ws=ws)
    assert p.returncode == 2 and "a reason is required" in p.stderr
    p = mlw("deploy", "rollback", "--env", "production", "--reason", "not today", "--who", "carol", ws=ws)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"deployment {d.id} (credit_default v1) in production is rolled_back: credit_default serves ")
    assert get_deployment(ws, d.id).reason == "not today"
    p = mlw("deploy", "history", "--env", "production", ws=ws)
    assert p.returncode == 0 and f"credit_default v1    canary     rolled_back by carol  (not today)" in p.stdout, p.stdout
    p = mlw("deploy", "credit_default@candidate", ws=ws)
    assert p.returncode == 2 and "needs --env" in p.stderr
