"""A real Redis server for tests: Debian's `redis-server` on a free loopback port, in a throw-away folder, no persistence.

`tests/conftest.py` wraps it in the session fixtures `redis_uri` (plain TCP) and `rediss_uri` (TLS with a throw-away
self-signed certificate); use those. `redis_server()` is the context manager behind them, for a server of your own.
"""
import contextlib, shutil, subprocess, tempfile, time
from pathlib import Path

import pytest

from conftest import free_port

REDIS_SERVER = "/usr/bin/redis-server"


def redis_server_binary() -> str:
    "The `redis-server` executable, or fail the test with the fix (no skipping: the suite needs a real server)."
    exe = shutil.which("redis-server") or (REDIS_SERVER if Path(REDIS_SERVER).exists() else None)
    if not exe:
        pytest.fail("redis-server not found (looked on PATH and at /usr/bin/redis-server); run `make test` "
                    "(it apt-get installs the `redis-server` package) or `apt-get install redis-server`", pytrace=False)
    return exe


def _self_signed(folder: Path) -> tuple[Path, Path]:
    "A key and a certificate for 127.0.0.1, valid for a day, made with the openssl CLI."
    key, cert = folder/"server.key", folder/"server.crt"
    if not shutil.which("openssl"):
        pytest.fail("openssl not found: the TLS Redis fixture makes its certificate with it; `apt-get install openssl`", pytrace=False)
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True, text=True)
    if p.returncode != 0: pytest.fail(f"openssl could not make a test certificate: {p.stderr[-2000:]}", pytrace=False)
    return key, cert


@contextlib.contextmanager
def redis_server(*args: str, tls: bool = False, timeout_s: float = 20, port: int | None = None, folder: Path | None = None):
    """Start `redis-server` on 127.0.0.1:PORT with extra `args`; yield its URI (`rediss://` when `tls`); stop it on exit.

    `port` and `folder` start it where an earlier one ran (a restart: with `--appendonly yes` among `args` it finds its
    data again); a given folder is kept."""
    import redis
    exe, port = redis_server_binary(), port or free_port()
    tmp = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="mlw-redis-"))
    log = tmp/"redis.log"
    # Loopback only, nothing saved to disk (it is thrown away), its files in our folder.
    cmd = [exe, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp), "--logfile", str(log), *args]
    if tls:
        key, cert = _self_signed(tmp)
        cmd += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
        uri = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    else:
        cmd += ["--port", str(port)]
        uri = f"redis://127.0.0.1:{port}/0"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, client = time.monotonic() + timeout_s, redis.Redis.from_url(uri, socket_connect_timeout=1)
        while True:
            if proc.poll() is not None:
                tail = log.read_text()[-3000:] if log.exists() else ""
                pytest.fail(f"redis-server exited with {proc.returncode}: {' '.join(cmd)}\n{proc.stderr.read()[-2000:]}\n{tail}", pytrace=False)
            try:
                if client.ping(): break
            except redis.ConnectionError: pass
            if time.monotonic() > deadline: pytest.fail(f"redis-server did not answer PING within {timeout_s} s: {' '.join(cmd)}", pytrace=False)
            time.sleep(0.05)
        client.close()
        yield uri
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        proc.stderr.close()
        if folder is None: shutil.rmtree(tmp, ignore_errors=True)
