"""A real gateway process for tests: `mlw serve` in a subprocess on a free loopback port, ready when /readyz says so."""
import contextlib, os, signal, subprocess, sys, time
from pathlib import Path

import httpx

from conftest import free_port

MLW = str(Path(sys.executable).with_name("mlw"))


@contextlib.contextmanager
def gateway(workspace, *refs, args=(), env=None, ready=True, timeout_s=180):
    """`mlw serve REFS...` on a free port; yields (base_url, process). Stops it with SIGTERM (drains its inference log)."""
    port = free_port()
    log = open(Path(workspace) / f"gateway-{port}.log", "w")
    proc = subprocess.Popen([MLW, "serve", *refs, "--port", str(port), "--workspace", str(workspace), "--reload_s", "0.5", *args],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, last = time.monotonic() + timeout_s, None
        while True:
            if proc.poll() is not None: raise RuntimeError(f"gateway exited with {proc.returncode}:\n" + Path(log.name).read_text()[-3000:])
            try:
                last = httpx.get(f"{url}/readyz" if ready else f"{url}/healthz", timeout=2)
                if last.status_code == 200: break
            except httpx.TransportError: pass
            if time.monotonic() > deadline: raise TimeoutError(f"gateway not ready after {timeout_s}s: {last and last.text}\n" + Path(log.name).read_text()[-3000:])
            time.sleep(0.1)
        yield url, proc
    finally:
        stop(proc)
        log.close()


def stop(proc, sig=signal.SIGTERM, timeout_s=60):
    "Signal the gateway's process group and wait for it (SIGKILL after `timeout_s`)."
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, sig)
        try: proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def log_text(workspace, url) -> str:
    return (Path(workspace) / f"gateway-{url.rsplit(':', 1)[1]}.log").read_text()
