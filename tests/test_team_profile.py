"""The team profile end to end, as a new team runs it: `mlw init --profile team` against real servers (PostgreSQL,
an MLflow tracking server, moto's S3 server, Redis, a Dask cluster of two worker processes), the S3 keys set with
`mlw secrets set` (on stdin), `mlw doctor` all ok, then the demo pipeline on it, leaving the same kinds of records as
on the embedded profile: datasets and features on S3 (the feature view computed in key buckets on the Dask workers),
runs and registry on the MLflow server, trials in PostgreSQL.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_workbench.core.workspace import Workspace
from pg import pg_server  # noqa: F401
from s3_server import KEY_ID, SECRET, bucket_keys
from team_servers import dask_scheduler, team_init_args, team_servers  # noqa: F401


def mlw(*args, stdin: str | None = None, cwd=None, timeout=1800):
    env = {k: v for k, v in os.environ.items() if k not in ("MLW_HOME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    return subprocess.run([str(Path(sys.executable).parent / "mlw"), *map(str, args)], input=stdin, capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def team_ws(team_servers, tmp_path_factory):
    root = tmp_path_factory.mktemp("team") / "ws"
    p = mlw(*team_init_args(team_servers, root))
    assert p.returncode == 0, p.stderr
    assert "(team profile)" in p.stdout and "mlw secrets set storage.access_key_id" in p.stdout
    for name, value in (("storage.access_key_id", KEY_ID), ("storage.secret_access_key", SECRET)):
        p = mlw("secrets", "set", name, "--workspace", root, stdin=value)
        assert p.returncode == 0, p.stderr
    return root


def test_init_writes_no_secret_and_doctor_passes(team_ws, team_servers):
    text = (team_ws / "mlw.toml").read_text()
    assert SECRET not in text and KEY_ID not in text and 'secret_access_key = "secret:storage.secret_access_key"' in text
    p = mlw("doctor", "--workspace", team_ws)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.rstrip().endswith("all checks passed"), p.stdout
    assert re.search(r"^storage +ok +s3://", p.stdout, re.M) and re.search(r"^compute +ok +tcp://", p.stdout, re.M), p.stdout


def test_team_init_refuses_what_a_team_cannot_share(tmp_path, team_servers):
    p = mlw("init", tmp_path / "a", "--profile", "team", "--metadata", team_servers.metadata)
    assert p.returncode != 0 and "give --storage URI, --online URI, --tracking URI, --compute URI, --studies URI" in p.stderr, p.stderr
    args = team_init_args(team_servers, tmp_path / "b")
    args[args.index("--online") + 1] = "sqlite:///" + str(tmp_path / "online.db")
    p = mlw(*args)
    assert p.returncode != 0 and "keep their state on this host" in p.stderr, p.stderr
    args = team_init_args(team_servers, tmp_path / "c")
    args[args.index("--metadata") + 1] = team_servers.metadata.replace("postgres@", "postgres:hunter22@")
    p = mlw(*args)
    assert p.returncode != 0 and "a password in mlw.toml would be stored in clear" in p.stderr and "hunter22" not in p.stderr, p.stderr
    assert not any((tmp_path / n).exists() for n in "abc")


# what the demo records in the metadata database, step by step: data, quality, features, training sets, the registry's
# audit, deployments and traffic, monitoring, alerts and the retraining it starts, ci, the audit log, the run itself
LIFECYCLE_RECORDS = {"datasets", "dataset_versions", "validation_reports", "quality_metrics", "feature_views", "feature_builds",
                     "materializations", "training_sets", "model_audit", "deployments", "environment_endpoints", "monitors",
                     "monitor_runs", "monitor_results", "alerts", "retrainings", "ci_runs", "ci_stages", "api_keys", "audit_log",
                     "pipeline_runs", "pipeline_steps", "secrets"}


def test_the_demo_runs_on_the_team_profile(team_ws, team_servers):
    p = mlw("run", "demo", "--workspace", team_ws, "--param", "n_applications", "5000", "--quiet")
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    ws = Workspace.open(team_ws)
    try:
        from mlops_workbench.core.storage import list_datasets
        from mlops_workbench.pipelines.runner import list_runs
        run = list_runs(ws, limit=1)[0]
        assert run.status == "succeeded", [(s.name, s.status, s.error) for s in run.steps]
        datasets = {d["name"] for d in list_datasets(ws)}
        assert {"applications", "transactions"} <= datasets, datasets
        keys = bucket_keys(team_servers.s3_endpoint, team_servers.bucket, "team/")
        assert any(k.startswith("team/applications/_delta_log/") for k in keys)  # the data is on S3, not in the folder
        assert not (team_ws / "data").exists()
        models = ws.backend("tracking").client.search_registered_models()
        assert [m.name for m in models], "the registry is on the MLflow server"
        assert ws.backend("studies").names(), "the search's study is in PostgreSQL"
        import sqlalchemy as sa
        from mlops_workbench.core import metadata as md
        with ws.metadata.begin() as c:
            filled = {name for name, t in md.meta.tables.items() if c.execute(sa.select(sa.func.count()).select_from(t)).scalar()}
            stores = {r.store for r in c.execute(sa.select(md.materializations.c.store, md.materializations.c.rows)) if r.rows}
        assert LIFECYCLE_RECORDS <= filled, sorted(LIFECYCLE_RECORDS - filled)
        assert stores == {team_servers.online}, stores  # features materialized into Redis
        from mlops_workbench.core.storage import dataset_version
        from mlops_workbench.features.offline import list_builds
        build = list_builds(ws)[0]
        steps = dataset_version(ws, build.table, build.table_version).lineage["steps"][0]
        assert steps["buckets"] >= 2, steps  # computed in key buckets on the cluster's workers, not in this process
    finally:
        ws.close()
