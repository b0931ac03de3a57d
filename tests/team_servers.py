"""Every server of the team profile, real and on loopback, for one test module: PostgreSQL databases for the metadata,
the studies and the MLflow server's backend store; an MLflow tracking server (artifacts in a bucket, served through
it); moto's S3 server with a bucket for the datasets; Redis; a Dask cluster of two worker processes.

`team_servers` (module scope) yields their URIs; `team_init_args(servers)` is the `mlw init --profile team` command line
for them. Import the fixtures into a test module: `from team_servers import team_servers, dask_scheduler`.
"""
from types import SimpleNamespace

import pytest

from mlflow_server import mlflow_server
from pg import _admin  # noqa: F401  (databases made below through the session's server)
from s3_server import new_bucket


@pytest.fixture(scope="module")
def dask_scheduler():
    "A Dask cluster of two worker processes on loopback; yields its scheduler's tcp:// address."
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def team_servers(pg_server, s3_endpoint, redis_uri, dask_scheduler):
    "The URIs of every team server, fresh databases and buckets for this module."
    import uuid
    from sqlalchemy.engine import make_url
    port = make_url(pg_server).port
    names = {role: f"mlw_{role}_{uuid.uuid4().hex[:8]}" for role in ("metadata", "studies", "tracking")}
    for n in names.values(): _admin(port, f"CREATE DATABASE {n}")
    db = lambda role: pg_server.rsplit("/", 1)[0] + "/" + names[role]
    try:
        with mlflow_server(db("tracking"), s3_endpoint, new_bucket(s3_endpoint)) as tracking:
            yield SimpleNamespace(metadata=db("metadata"), studies=db("studies"), tracking=tracking, s3_endpoint=s3_endpoint,
                                  bucket=new_bucket(s3_endpoint), online=redis_uri, compute=dask_scheduler)
    finally:
        for n in names.values(): _admin(port, f"DROP DATABASE IF EXISTS {n} WITH (FORCE)")


def team_init_args(s, root) -> list[str]:
    "`mlw init ROOT --profile team ...` for the servers `s`, the S3 keys read from the secrets store."
    return ["init", str(root), "--profile", "team", "--metadata", s.metadata, "--storage", f"s3://{s.bucket}/team",
            "--storage_endpoint", s.s3_endpoint, "--storage_region", "us-east-1", "--storage_keys", "--online", s.online,
            "--tracking", s.tracking, "--compute", s.compute, "--studies", s.studies]
