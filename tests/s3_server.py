"""A real S3-compatible server for tests: moto's standalone server (`python -m moto.server`) on a free loopback port.

moto is the S3-compatible server that installs from the package registries here (MinIO's server does not; its PyPI
package is the client SDK). It honours conditional writes (`If-None-Match: *`), which Delta's commits on S3 rely on.
It runs as its own process, so the writers under test do not share its interpreter.

`tests/conftest.py` wraps it in the session fixture `s3_endpoint`; `s3_bucket` gives each test a fresh bucket.
`strip_conditions_proxy` is a loopback proxy in front of it that drops `If-None-Match` / `If-Match`: a server that
ignores conditional writes, as some S3-compatible servers do.
"""
import contextlib, http.client, http.server, subprocess, sys, tempfile, threading, urllib.request, uuid
from pathlib import Path

import pytest

from conftest import free_port, wait_for_server

KEY_ID, SECRET = "mlw-test-key", "mlw-test-secret-0123456789"  # moto accepts any keys; these prove they are passed through


@contextlib.contextmanager
def s3_server(timeout_s: float = 60):
    "Start moto's server on 127.0.0.1:PORT; yield its endpoint URL; stop it on exit."
    port, log = free_port(), Path(tempfile.mkstemp(prefix="mlw-moto-", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        def ready():
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1): return True
        wait_for_server(proc, ready, "moto's server", log, timeout_s)
        yield endpoint
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.unlink(missing_ok=True)


def boto_client(endpoint: str):
    import boto3
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)


def new_bucket(endpoint: str) -> str:
    "A new, empty bucket on the server."
    name = f"mlw-{uuid.uuid4().hex[:12]}"
    boto_client(endpoint).create_bucket(Bucket=name)
    return name


def bucket_keys(endpoint: str, bucket: str, prefix: str = "") -> set[str]:
    "Every object key in `bucket` under `prefix`, listed with boto3 (not the code under test)."
    pages = boto_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


class _StripConditions(http.server.BaseHTTPRequestHandler):
    "Forward every request to the upstream server without its conditional headers."
    protocol_version = "HTTP/1.1"
    upstream = ""

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("if-none-match", "if-match", "host")}
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            self.send_response(r.status, r.reason)
            for k, v in r.getheaders():
                if k.lower() not in ("transfer-encoding", "content-length", "connection"): self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        finally:
            conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, *args): pass


@contextlib.contextmanager
def strip_conditions_proxy(endpoint: str):
    "A loopback endpoint in front of `endpoint` that drops `If-None-Match` and `If-Match`; yields its URL."
    handler = type("Handler", (_StripConditions,), {"upstream": endpoint.split("://", 1)[1]})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown(); server.server_close()
