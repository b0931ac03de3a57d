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

from mlops_workbench.cli import main
from conftest import edit_settings
from mlops_workbench.core.doctor import doctor
from mlops_workbench.core.workspace import Workspace
from pg import pg_new_database, pg_server  # noqa: F401
from s3_server import KEY_ID, SECRET
from team_servers import dask_scheduler, team_init_args, team_servers  # noqa: F401


@pytest.fixture
def team_root(tmp_path, team_servers, pg_new_database):
    "A workspace folder of its own on the team profile (`mlw init --profile team`), every role on a real server, its S3 keys set."
    from mlops_workbench.security.secrets import put_secret
    root = tmp_path / "ws"
    args = team_init_args(team_servers, root)
    args[args.index("--metadata") + 1] = pg_new_database()  # its own catalog and secrets (its own key file)
    with contextlib.redirect_stdout(io.StringIO()): assert main(args) == 0
    ws = Workspace.open(root)
    put_secret(ws, "storage.access_key_id", KEY_ID, who="ops")
    put_secret(ws, "storage.secret_access_key", SECRET, who="ops")
    ws.close()
    return root


def run_doctor(root: Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out): code = main(["doctor", "--workspace", str(root)])
    return code, out.getvalue()


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
    assert found["studies"].detail.endswith(" held")


def test_a_broken_team_profile_names_each_broken_role(team_root):
    from mlops_workbench.security.secrets import delete_secret
    ws = Workspace.open(team_root)
    delete_secret(ws, "storage.secret_access_key", who="ops")  # the storage keys' secret is gone
    ws.close()
    edit_settings(team_root, dict(online="redis://127.0.0.1:9/0", tracking="http://127.0.0.1:9", compute="tcp://127.0.0.1:9?timeout=2",
                                   studies="postgresql://postgres@127.0.0.1:9/nothing"))
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
