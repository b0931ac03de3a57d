"""`mlw doctor` on the team profile against real servers started here: PostgreSQL (metadata and studies), an MLflow
tracking server (PostgreSQL backend store, artifacts on S3), moto's S3 server (storage, keys from the secrets store),
Redis (online features) and a Dask cluster of two worker processes. Healthy: every line ok, exit 0. Broken (a server
gone, a secret missing): each broken role is a failed line naming the problem and what to do, the others still ok,
exit 1; no password printed.
"""
import io
import contextlib
from pathlib import Path

import pytest
import tomli_w
import tomllib

from mlops_workbench.cli import main
from mlops_workbench.core.doctor import doctor
from mlops_workbench.core.workspace import Workspace
from mlflow_server import mlflow_server
from pg import pg_new_database, pg_server  # noqa: F401
from s3_server import new_bucket
from test_storage_s3 import s3_workspace


@pytest.fixture
def dask_scheduler():
    "A Dask cluster of two worker processes on loopback; yields its scheduler's tcp:// address."
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def team_root(tmp_path, s3_endpoint, s3_bucket, pg_new_database, redis_uri, dask_scheduler):
    "A workspace folder on the team profile, every role on a real server."
    metadata, studies, tracking_db = pg_new_database(), pg_new_database(), pg_new_database()
    with mlflow_server(tracking_db, s3_endpoint, new_bucket(s3_endpoint)) as tracking:
        ws = s3_workspace(tmp_path / "ws", s3_endpoint, s3_bucket, metadata=metadata)
        ws.close()
        settings = tomllib.loads((ws.root / "mlw.toml").read_text())
        settings["backends"].update(online=redis_uri, tracking=tracking, compute=dask_scheduler, studies=studies)
        (ws.root / "mlw.toml").write_text(tomli_w.dumps(settings))
        yield ws.root


def run_doctor(root: Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out): code = main(["doctor", "--workspace", str(root)])
    return code, out.getvalue()


def edit(root: Path, **backends):
    settings = tomllib.loads((root / "mlw.toml").read_text())
    settings["backends"].update(backends)
    (root / "mlw.toml").write_text(tomli_w.dumps(settings))


def test_a_healthy_team_profile_passes_every_check(team_root):
    code, out = run_doctor(team_root)
    assert code == 0, out
    assert out.rstrip().endswith("all checks passed")
    ws = Workspace.open(team_root, migrate=False)
    try: found = {f.role: f for f in doctor(ws)}
    finally: ws.close()
    assert found["metadata"].detail.startswith("postgresql ") and "schema v" in found["metadata"].detail
    assert "conditional writes honoured" in found["storage"].detail
    assert found["online"].detail.startswith("Redis ")
    assert found["tracking"].detail.startswith("MLflow server ")
    assert found["compute"].detail.startswith("2 worker(s), 2 thread(s), package versions match")
    assert found["studies"].detail == "0 studies held"


def test_a_broken_team_profile_names_each_broken_role(team_root):
    from mlops_workbench.security.secrets import delete_secret
    ws = Workspace.open(team_root)
    delete_secret(ws, "storage.secret_access_key", who="ops")  # the storage keys' secret is gone
    ws.close()
    edit(team_root, online="redis://127.0.0.1:9/0", tracking="http://127.0.0.1:9", compute="tcp://127.0.0.1:9?timeout=2",
         studies="postgresql://postgres@127.0.0.1:9/nothing")
    code, out = run_doctor(team_root)
    assert code == 1, out
    ws = Workspace.open(team_root, migrate=False)
    try: found = {f.role: f for f in doctor(ws)}
    finally: ws.close()
    assert found["metadata"].ok, found["metadata"]
    broken = {r for r, f in found.items() if not f.ok}
    assert broken == {"storage", "online", "tracking", "compute", "studies"}, out
    assert "secret 'storage.secret_access_key', which is not set; set it with `mlw secrets set storage.secret_access_key`" in found["storage"].detail
    assert "unreachable" in found["tracking"].detail and "mlflow server" in found["tracking"].detail
    assert "Dask scheduler is unreachable" in found["compute"].detail
    assert "5 check(s) failed" in out
    for role in broken: assert f"{role}" in out and "FAILED" in out
