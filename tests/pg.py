"""A real PostgreSQL server for tests: Debian's binaries, a throw-away cluster on loopback, fresh databases per test.

Import the fixtures into a test module (`from pg import pg_server, pg_new_database`); pytest puts `tests/` on `sys.path`.
"""
import glob, os, shutil, subprocess, tempfile, uuid
from pathlib import Path

import pytest

from conftest import free_port

# The server's time zone is deliberately not UTC: timestamps must come back in UTC whatever the server's setting.
SERVER_TIMEZONE = "Asia/Kolkata"


def pg_bin_dir() -> Path:
    "The newest `/usr/lib/postgresql/*/bin` holding the server binaries, or fail the test with the fix."
    dirs = sorted((Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
                  key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not dirs or not all((dirs[-1]/b).exists() for b in ("pg_ctl", "postgres")):
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under /usr/lib/postgresql/*/bin; "
                    "run `make test` (it apt-get installs the `postgresql` package) or `apt-get install postgresql`", pytrace=False)
    return dirs[-1]


def _as_server_user(cmd: list) -> list:
    "initdb and postgres refuse to run as root: run them as the `postgres` system user when we are root."
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list, what: str, log: Path | None = None):
    p = subprocess.run(_as_server_user(cmd), capture_output=True, text=True)
    if p.returncode != 0:
        tail = log.read_text()[-3000:] if log and log.exists() else ""
        pytest.fail(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stdout[-2000:]}{p.stderr[-2000:]}\n{tail}", pytrace=False)
    return p


def _admin(port: int, sql: str):
    "Run one statement as the superuser on the maintenance database, outside a transaction."
    import psycopg
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True, connect_timeout=10) as c:
        c.execute(sql)


@pytest.fixture(scope="session")
def pg_server():
    "Start a PostgreSQL cluster on 127.0.0.1:PORT (trust auth, loopback only); yield the URI of its `mlw_test` database."
    bindir = pg_bin_dir()
    # Not under pytest's tmp_path: that is 0700 root and the server user could not enter it. Short, for the socket path.
    tmp = Path(tempfile.mkdtemp(prefix="mlw-pg-"))
    data, log, port = tmp/"data", tmp/"server.log", free_port()
    if os.geteuid() == 0: shutil.chown(tmp, "postgres", "postgres")
    started = False
    try:
        _run([str(bindir/"initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"], "initdb")
        # Loopback only, no TCP elsewhere, the socket in our folder; durability off: it is thrown away.
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={tmp} -c timezone={SERVER_TIMEZONE} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        started = True  # from here on, stop it on the way out even if `start` reports a failure
        _run([str(bindir/"pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"], "starting PostgreSQL", log)
        _run([str(bindir/"pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-t", "30"], "waiting for PostgreSQL", log)
        _admin(port, "CREATE DATABASE mlw_test")
        yield f"postgresql://postgres@127.0.0.1:{port}/mlw_test"
    finally:
        if started: subprocess.run(_as_server_user([str(bindir/"pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]), capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def pg_new_database(pg_server):
    "A function that creates a fresh, empty database on the session's server and returns its URI; all are dropped afterwards."
    from sqlalchemy.engine import make_url
    port, names = make_url(pg_server).port, []
    def new() -> str:
        names.append(f"mlw_{uuid.uuid4().hex[:12]}")
        _admin(port, f"CREATE DATABASE {names[-1]}")
        return pg_server.rsplit("/", 1)[0] + "/" + names[-1]
    yield new
    for n in names: _admin(port, f"DROP DATABASE IF EXISTS {n} WITH (FORCE)")  # FORCE: a workspace may still hold pooled connections
