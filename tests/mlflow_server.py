"""A real MLflow tracking server for tests: `mlflow server` in its own process on a free loopback port, its backend store
a fresh PostgreSQL database and its artifacts in a bucket of the S3 server (`--serve-artifacts`: clients log artifacts
through the server and need no S3 keys), as a team runs it."""
import contextlib, os, subprocess, sys, tempfile, urllib.request
from pathlib import Path

import pytest

from conftest import free_port, wait_for_server
from s3_server import KEY_ID, SECRET


@contextlib.contextmanager
def mlflow_server(backend_uri: str, s3_endpoint: str, bucket: str, timeout_s: float = 120):
    "Start `mlflow server` on `backend_uri` (postgresql://...) with artifacts in `s3://bucket/mlartifacts`; yield its URL."
    port, log = free_port(), Path(tempfile.mkstemp(prefix="mlw-mlflow-", suffix=".log")[1])
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1"}
    store = backend_uri.replace("postgresql://", "postgresql+psycopg://", 1)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--artifacts-destination", f"s3://{bucket}/mlartifacts",
           "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready():
            with urllib.request.urlopen(f"{url}/health", timeout=1) as r: return r.status == 200
        wait_for_server(proc, ready, "mlflow server", log, timeout_s)
        yield url
    finally:
        import signal
        with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.unlink(missing_ok=True)
