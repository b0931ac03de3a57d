"""Shared pytest fixtures: a fresh workspace per test, headless Debian Chromium, screenshot folder, real Redis servers, a real OIDC issuer."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "screenshots"

# RECIPES.md: Debian's chromium, never a downloaded browser; the resolver rule makes any
# stray internet request fail at once instead of hanging the page.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


@pytest.fixture
def ws(tmp_path, monkeypatch):
    "A freshly initialised workspace on the embedded backends."
    from mlops_workbench.core.workspace import Workspace
    monkeypatch.delenv("MLW_HOME", raising=False)
    return Workspace.init(tmp_path / "ws")


@pytest.fixture(scope="session")
def browser():
    "One headless Chromium for the session (Playwright driving Debian's binary)."
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run 'make test' (it apt-get installs chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    "A fresh browser page that records every request leaving loopback in `page.offsite`."
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    pg.offsite = []
    pg.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "http://localhost", "ws://", "data:", "blob:", "about:"))
          else pg.offsite.append(r.url))
    yield pg
    ctx.close()


@pytest.fixture
def shot():
    "Save a full-page screenshot under test-output/screenshots/NAME.png and return its path."
    SHOTS.mkdir(parents=True, exist_ok=True)
    def _shot(page, name):
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
    return _shot


def free_port():
    "A free loopback TCP port."
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def edit_settings(root, backends: dict | None = None, options: dict | None = None):
    """Change workspace `root`'s `mlw.toml` as a person edits it by hand: roles' URIs in `[backends]`, and whole
    `[backend_options.<role>]` tables (no checks: the tests of what opening or building refuses write with this)."""
    import tomli_w, tomllib
    from pathlib import Path
    f = Path(root) / "mlw.toml"
    settings = tomllib.loads(f.read_text())
    settings["backends"].update(backends or {})
    if options: settings.setdefault("backend_options", {}).update(options)
    f.write_text(tomli_w.dumps(settings))


def wait_for_server(proc, ready, what: str, log, timeout_s: float):
    """Poll `ready()` (True once the server answers; OSError while it does not yet) until it is, failing the test with the
    server's log when its process `proc` exits or `timeout_s` passes."""
    import time
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None: pytest.fail(f"{what} exited with {proc.returncode}: {log.read_text()[-3000:]}", pytrace=False)
        try:
            if ready(): return
        except OSError: pass
        if time.monotonic() > deadline: pytest.fail(f"{what} did not answer within {timeout_s} s: {log.read_text()[-3000:]}", pytrace=False)
        time.sleep(0.1)


@pytest.fixture(scope="session")
def redis_uri():
    "A real redis-server on a free loopback port for the session (tests/redis_server.py); yields `redis://127.0.0.1:PORT/0`."
    from redis_server import redis_server  # here, not at the top: redis_server imports free_port from this module
    with redis_server() as uri:
        yield uri


@pytest.fixture(scope="session")
def rediss_uri():
    "A real redis-server speaking TLS only (self-signed certificate) for the session; yields its `rediss://` URI."
    from redis_server import redis_server
    with redis_server(tls=True) as uri:
        yield uri


@pytest.fixture(scope="session")
def s3_endpoint():
    "A real S3-compatible server (moto's, tests/s3_server.py) on a free loopback port for the session; yields its endpoint URL."
    from s3_server import s3_server
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint):
    "A fresh, empty bucket on the session's S3 server; yields its name."
    from s3_server import new_bucket
    return new_bucket(s3_endpoint)


@pytest.fixture
def oidc_issuer():
    "A real OIDC issuer (tests/oidc_issuer.py) in its own process on a loopback port, fresh per test; yields its handle (.url, .mint, .rotate, .token, .claims, .stats, .stop)."
    from oidc_issuer import oidc_issuer as start_issuer
    with start_issuer() as issuer:
        yield issuer


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory):
    """NEEDS PyPI or pip's cache, and about a minute, once per session: a virtualenv with exactly what a build's Dockerfile
    installs (the serving lock, a wheel of this checkout). Its .python, .mlw, .wheel, .lock, .pins and .timings."""
    from fresh_venv import make
    return make(tmp_path_factory.mktemp("fresh-venv"))
