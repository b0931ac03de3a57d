"""Concurrent writers on one workspace (issue 18): validate, feature apply + build + materialize, experiment search, register
and promote, alert delivery, each run by several processes at once (tests/writers_worker.py, started together through a
gate file) on SQLite and on PostgreSQL metadata, and on the team profile (PostgreSQL metadata and studies, Delta tables
on S3, Redis, an MLflow tracking server, a Dask cluster: tests/team_servers.py). Afterwards the catalog, the Delta tables, the MLflow registry and the audit
tables must agree, every failure a writer reported must be a workbench error (never a raw driver error), and a failed
writer must have left nothing behind.

Ingest races are tested in test_ingest.py. Small data throughout: the point is the interleaving, not the volume.
"""
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pg import _admin, pg_server  # noqa: F401  (fixture)
from team_servers import dask_scheduler, team_servers  # noqa: F401  (fixtures)
from mlops_workbench.core.workspace import Workspace

pytestmark = pytest.mark.timeout(600)
WORKER = str(Path(__file__).with_name("writers_worker.py"))
ENV = {k: v for k, v in os.environ.items() if k != "MLW_HOME"}
UTC = dt.timezone.utc
RAW = ("IntegrityError", "OperationalError", "database is locked", "psycopg", "sqlite3", "UNIQUE constraint", "duplicate key",
       "UniqueViolation", "RESOURCE_ALREADY_EXISTS", "Traceback")


def team_workspace(request, root: Path) -> Workspace:
    "A workspace on every team server, made by `mlw init --profile team`, with its own catalog database and its S3 keys set."
    from mlops_workbench.cli import main
    from mlops_workbench.security.secrets import put_secret
    from s3_server import KEY_ID, SECRET
    from team_servers import team_init_args
    from sqlalchemy.engine import make_url
    servers, pg = request.getfixturevalue("team_servers"), request.getfixturevalue("pg_server")
    name = f"mlw_{uuid.uuid4().hex[:12]}"
    _admin(make_url(pg).port, f"CREATE DATABASE {name}")
    args = team_init_args(servers, root)
    args[args.index("--metadata") + 1] = pg.rsplit("/", 1)[0] + "/" + name
    assert main(args) == 0
    ws = Workspace.open(root)
    put_secret(ws, "storage.access_key_id", KEY_ID, who="ops")
    put_secret(ws, "storage.secret_access_key", SECRET, who="ops")
    return ws


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "team"])
def mws(request, tmp_path_factory):
    "One workspace per metadata backend for the module (MLflow's migrations cost seconds per store); each test uses its own names."
    backends = {}
    if request.param == "team":
        ws = team_workspace(request, tmp_path_factory.mktemp("writers-team") / "ws")
        ws.kind = "team"
        yield ws
        ws.close()
        return
    if request.param == "postgresql":
        uri = request.getfixturevalue("pg_server")
        from sqlalchemy.engine import make_url
        name = f"mlw_{uuid.uuid4().hex[:12]}"
        _admin(make_url(uri).port, f"CREATE DATABASE {name}")
        backends["metadata"] = uri.rsplit("/", 1)[0] + "/" + name
    ws = Workspace.init(tmp_path_factory.mktemp(f"writers-{request.param}") / "ws", backends=backends)
    ws.kind = request.param
    yield ws
    ws.close()


def race(ws, task, args) -> list[dict]:
    "Run `task` once per element of `args` in processes of their own, started together; their outcomes, in order."
    gate = Path(tempfile.mkdtemp()) / "go"
    procs = [subprocess.Popen([sys.executable, WORKER, task, str(ws.root), str(gate), str(a)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in args]
    import time
    time.sleep(0.5)
    gate.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        line = [x for x in out.splitlines() if x.startswith("RESULT ")]
        assert line, f"worker {task} died (exit {p.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
        outs.append(json.loads(line[-1][len("RESULT "):]))
    for o in outs:  # every failure a user could see is a workbench error naming the thing, never a driver's
        if not o["ok"]:
            assert o["mlw"], f"{task}: a raw {o['type']} reached the caller: {o['message']}\n{o['traceback']}"
            assert not any(r in o["message"] for r in RAW), f"{task}: a driver error leaked into the message: {o['message']}"
    print(task, [(o["ok"], o.get("result") or o["message"][:200]) for o in outs])
    return outs


def q(ws, stmt):
    with ws.metadata.begin() as c: return c.execute(stmt).all()


def delta_commits(ws, name) -> list[int]:
    "The versions in dataset `name`'s Delta log, listed in its folder or under its prefix."
    from mlops_workbench.core.storage import _commit_number
    return sorted(v for p in ws.backend("storage").files(name, "_delta_log") if (v := _commit_number(p)) is not None)


def scan(ws, name, version) -> pl.LazyFrame:
    "Dataset `name`'s Delta table at `version`, read directly (not through the catalog)."
    store = ws.backend("storage")
    return pl.scan_delta(store.table_uri(name), version=version, storage_options=store.storage_options)


def check_catalog(ws, name):
    "The catalog records exactly the Delta table's commits, each with the rows the table holds at that version."
    from mlops_workbench.core.metadata import dataset_versions
    rows = q(ws, sa.select(dataset_versions.c.version, dataset_versions.c.row_count).where(dataset_versions.c.dataset == name)
                .order_by(dataset_versions.c.version))
    assert [r.version for r in rows] == delta_commits(ws, name), f"dataset {name!r}: catalog and Delta log disagree"
    for r in rows:
        assert scan(ws, name, r.version).select(pl.len()).collect().item() == r.row_count, f"{name} v{r.version}"
    return rows


def visits(n=400, seed=3) -> pl.DataFrame:
    "Shop visits: no id column, text shop codes (some null), a text channel with stray values, times as strings, nullable spend."
    r = np.random.default_rng(seed)
    base = dt.datetime(2025, 1, 1, tzinfo=UTC)
    times = [base + dt.timedelta(minutes=int(m)) for m in r.integers(0, 60 * 24 * 50, n)]
    return pl.DataFrame({
        "shop_code": [None if r.random() < 0.05 else f"shop-{i:02d}" for i in r.integers(0, 12, n)],
        "channel": r.choice(["web", "store", "phone"], n, p=[0.5, 0.45, 0.05]).tolist(),
        "seen_at": [t.strftime("%Y-%m-%d %H:%M:%S") for t in times],
        "spend": [None if r.random() < 0.1 else round(float(v), 2) for v in r.gamma(2.0, 20.0, n)],
        "items": r.integers(1, 6, n).tolist()})


@pytest.fixture(scope="module")
def with_visits(mws):
    from mlops_workbench.core.storage import write_dataset
    df = visits().with_columns(pl.col("seen_at").str.to_datetime("%Y-%m-%d %H:%M:%S", time_zone="UTC"))
    write_dataset(mws, "visits", df, source={"kind": "test", "location": "visits()"})
    return mws


# -- validate -------------------------------------------------------------------------------------------------------------

def test_two_validations_of_one_version(with_visits):
    from mlops_workbench.core.metadata import quality_metrics, validation_reports
    ws = with_visits
    outs = race(ws, "validate", ["a", "b"])
    assert any(o["ok"] for o in outs), outs
    reports = q(ws, sa.select(validation_reports).where(validation_reports.c.dataset == "visits"))
    assert len(reports) == 1, f"{len(reports)} reports of visits v0: a rerun replaces the earlier one"  # replaced, not doubled
    rep = reports[0]
    assert rep.id in [o["result"]["id"] for o in outs if o["ok"]]
    dup = q(ws, sa.select(quality_metrics.c.metric, quality_metrics.c.column, sa.func.count()).where(quality_metrics.c.dataset == "visits")
            .group_by(quality_metrics.c.version, quality_metrics.c.metric, quality_metrics.c.column).having(sa.func.count() > 1))
    assert not dup, f"quality metrics recorded twice: {dup}"
    out_versions = [r.version for r in check_catalog(ws, "visits_validated")]
    q_versions = [r.version for r in check_catalog(ws, "visits_quarantine")]
    assert rep.output_version in out_versions and rep.quarantine_version in q_versions
    # the quarantine holds the quarantined rows of one validation, not of each
    held = scan(ws, "visits_quarantine", q_versions[-1]).select(pl.len()).collect().item()
    assert held == rep.rows_quarantined > 0
    passed = scan(ws, "visits_validated", out_versions[-1]).select(pl.len()).collect().item()
    assert passed == rep.rows - rep.rows_quarantined
    # the report and the metrics alone, from three processes at the same instant: still one report, one point per metric
    outs = race(ws, "record", ["a", "b", "c"])
    assert all(o["ok"] for o in outs), outs
    reports = q(ws, sa.select(validation_reports.c.id).where(validation_reports.c.dataset == "visits"))
    assert [r.id for r in reports] in [[o["result"]["id"]] for o in outs], f"{len(reports)} reports of visits v0 after three records"
    dup = q(ws, sa.select(quality_metrics.c.metric, quality_metrics.c.column, sa.func.count()).where(quality_metrics.c.dataset == "visits")
            .group_by(quality_metrics.c.version, quality_metrics.c.metric, quality_metrics.c.column).having(sa.func.count() > 1))
    assert not dup, f"quality metrics recorded twice: {dup}"


# -- features -------------------------------------------------------------------------------------------------------------

def test_three_processes_apply_build_and_materialize_one_view(with_visits):
    from mlops_workbench.core.metadata import feature_builds, feature_entities, feature_views, materializations
    ws = with_visits
    outs = race(ws, "features", ["a", "b", "c"])
    ok = [o["result"] for o in outs if o["ok"]]
    assert ok, outs
    assert len(q(ws, sa.select(feature_views).where(feature_views.c.name == "shop_stats"))) == 1  # one definition: losers joined it
    assert len(q(ws, sa.select(feature_entities).where(feature_entities.c.name == "shop"))) == 1
    assert sorted(s for r in ok for s in r["applied"][1:]) .count("created") <= 1
    table = [r.version for r in check_catalog(ws, "fv_shop_stats")]
    builds = q(ws, sa.select(feature_builds).where(feature_builds.c.view == "shop_stats"))
    assert sorted(b.table_version for b in builds) == table, "every build records its own table version, and every version is a build"
    assert {r["build"] for r in ok} <= {b.id for b in builds}
    mats = q(ws, sa.select(materializations).where(materializations.c.view == "shop_stats"))
    assert all(m.status in ("complete", "failed") for m in mats), [m.status for m in mats]
    assert {r["materialization"] for r in ok} <= {m.id for m in mats if m.status == "complete"}
    for o in outs:
        if not o["ok"]: assert "shop_stats" in o["message"] or "fv_shop_stats" in o["message"], o["message"]
    from mlops_workbench.features.online import get_online_features
    got = get_online_features(ws, ["shop_stats:last_spend"], [{"shop_code": "shop-01"}], now=dt.datetime(2025, 3, 1, tzinfo=UTC)).to_dict()
    assert got["shop_code"] == ["shop-01"]
    # one training set, asked for by three processes at once: one record, the same id for all
    outs = race(ws, "training_set", ["a", "b", "c"])
    assert all(o["ok"] for o in outs), outs
    from mlops_workbench.core.metadata import training_sets
    ids = {o["result"]["id"] for o in outs}
    assert len(ids) == 1 and [r.id for r in q(ws, sa.select(training_sets.c.id))] == list(ids)


# -- experiment search ----------------------------------------------------------------------------------------------------

def test_three_processes_search_one_study(with_visits, tmp_path):
    import optuna
    from optuna.trial import TrialState
    from mlops_workbench.experiments.definition import Experiment, IntParam, KFold
    from mlops_workbench.experiments.results import _runs
    from mlops_workbench.experiments.search import load_study
    ws = with_visits
    exp = Experiment(name="visit_spend_search", target="items", task="regression", dataset="visits", exclude=["seen_at", "shop_code"],
                     split=KFold(k=2), search_space={"num_leaves": IntParam(4, 16)}, params={"num_threads": 1}, trials=4, num_boost_round=15)
    y = tmp_path / "exp.yaml"
    y.write_text(exp.to_yaml())
    outs = race(ws, "search", [y] * 3)
    assert any(o["ok"] for o in outs), outs
    for o in outs:
        if not o["ok"]: assert "visit_spend_search" in o["message"], o["message"]
    study = load_study(ws, exp)
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == exp.trials
    c = ws.backend("tracking").client
    eid = c.get_experiment_by_name(exp.name).experiment_id
    runs = _runs(c, eid, "")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, f"{len(parents)} parent runs: a search that lost the race must not leave one"
    kids = [int(r.data.tags["mlw.trial"]) for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(kids) == sorted(t.number for t in trials), "one child run per trial, none twice"
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert {o["result"]["parent"] for o in outs if o["ok"]} == {parents[0].info.run_id}


# -- register and promote -------------------------------------------------------------------------------------------------

def test_three_processes_register_and_promote_one_model(with_visits):
    from mlops_workbench.core.metadata import audit_log, model_audit
    from mlops_workbench.experiments.definition import Experiment, IntParam, KFold
    from mlops_workbench.registry.versions import get_model, model_versions
    from mlops_workbench.security.audit import verify_audit
    from mlops_workbench.training.fit import train
    ws = with_visits
    exp = Experiment(name="visit_spend", target="items", task="regression", dataset="visits", exclude=["seen_at", "shop_code"],
                     split=KFold(k=2), search_space={"num_leaves": IntParam(4, 16)}, params={"num_threads": 1}, trials=1, num_boost_round=15)
    run_id = train(ws, exp, {"num_leaves": 8}).run_id
    outs = race(ws, "register", [f"{run_id},user{i}" for i in range(3)])
    assert any(o["ok"] for o in outs), outs
    for o in outs:
        if not o["ok"]: assert "visit_spend" in o["message"], o["message"]
    versions = {v["version"] for v in model_versions(ws, "visit_spend")}
    assert {o["result"]["version"] for o in outs if o["ok"]} <= versions
    rows = q(ws, sa.select(model_audit).where(model_audit.c.model == "visit_spend").order_by(model_audit.c.at, model_audit.c.id))
    assert sorted(r.version for r in rows if r.action == "registered") == sorted(versions), "one 'registered' row per MLflow version"
    # replaying the production alias's trail gives the alias MLflow holds, and every removal names the version it removed
    prod = None
    for r in rows:
        if r.alias != "production": continue
        if r.action == "alias_removed": assert prod == r.version, f"trail removes v{r.version} from production, but v{prod} held it"; prod = None
        elif r.action == "alias_set": assert prod is None, f"trail sets v{r.version} over v{prod} without removing it"; prod = r.version
    assert prod == int(get_model(ws, "visit_spend").aliases["production"])
    logged = q(ws, sa.select(audit_log.c.action, sa.func.count()).where(audit_log.c.resource == "model:visit_spend").group_by(audit_log.c.action))
    want = {}
    for r in rows: want[{"registered": "model.register", "alias_set": "alias.set", "alias_removed": "alias.remove"}[r.action]] = \
        want.get({"registered": "model.register", "alias_set": "alias.set", "alias_removed": "alias.remove"}[r.action], 0) + 1
    assert dict(logged) == want
    assert verify_audit(ws).ok


# -- alert delivery -------------------------------------------------------------------------------------------------------

def test_three_processes_deliver_the_same_queue(mws):
    from mlops_workbench.alerts import AlertRule, Threshold, fire, list_deliveries
    ws = mws
    t0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    rule = AlertRule("spend_null_share", "warning", Threshold("null_share", ">", 0.05), dedup_by=["shop"], cooldown=600)
    ids = [fire(ws, rule, "dataset:visits", f"spend nulls in shop-{i}", labels={"shop": f"shop-{i}"}, now=t0, deliver=False).id for i in range(12)]
    outs = race(ws, "deliver", [t0.isoformat()] * 3)
    assert all(o["ok"] for o in outs), outs
    assert sum(o["result"]["delivered"] for o in outs) == 12
    ds = [d for d in list_deliveries(ws, limit=1000) if d.alert_id in ids]
    assert len(ds) == 12 and all(d.status == "delivered" and d.attempts == 1 for d in ds)
    lines = [json.loads(x) for x in ws.path("alerts.jsonl").read_text().splitlines()]
    sent = [x["id"] for x in lines if x["id"] in ids]
    assert sorted(sent) == sorted(ids), "each alert delivered exactly once"
