"""Voila's kernels are bounded (issue 15, item 1): each view of a report starts a kernel of 230-470 MB, and requests a
client abandons used to leave theirs running for good. `voila_command` sets jupyter_server's idle culling and a
ceiling on live kernels (`CappedKernelManager.max_kernels`); this starts the real Voila server with that command, abandons
a dozen requests (client timeouts), reads a few pages whole, and waits (bounded) for the server's kernels and memory
to come back down. Kernels are counted as the server's child processes, since Voila does not expose /api/kernels.
"""
import socket
import time
import urllib.error
import urllib.request

import psutil
import pytest

from conftest import free_port
from test_dashboards import _serve, _stop

ABANDONED, VIEWS, CAP = 12, 3, 6
MiB = 1 << 20


def kernels(server: psutil.Process) -> list:
    "The server's live kernel processes."
    out = []
    for p in server.children(recursive=True):
        try:
            if "ipykernel" in " ".join(p.cmdline()): out.append(p)
        except psutil.Error: pass
    return out


def rss(server: psutil.Process) -> int:
    "Resident memory of the server and every process under it."
    total = 0
    for p in [server, *server.children(recursive=True)]:
        try: total += p.memory_info().rss
        except psutil.Error: pass
    return total


def wait_for(cond, timeout: float, what: str):
    "Poll `cond` until true, failing after `timeout` seconds with `what`; a bounded wait for a condition, not a timing."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if v := cond(): return v
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def abandon(port: int, query: str):
    "A client that times out: send the request, wait a moment for the first bytes, hang up without reading the page."
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET /{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        s.settimeout(0.5)
        try: s.recv(64)
        except OSError: pass


def view(port: int) -> str:
    "A whole page, as a browser that stays until it is rendered reads it (retrying while the kernel ceiling answers 503)."
    def get():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=300) as r: return r.read().decode()
        except urllib.error.HTTPError as e:
            if e.code == 503: return None
            raise
    return wait_for(get, 600, "a page view while the kernel ceiling was reached")


def test_abandoned_requests_and_views_leave_no_kernels(ws, tmp_path):
    from mlops_workbench.ui.shell import voila_command
    port = free_port()
    argv, env = voila_command("pipeline_run", port=port, ws=ws, cull_idle_s=5, cull_interval_s=1, max_kernels=CAP)
    proc = _serve(argv, env, port, tmp_path / "voila.log")
    try:
        server = psutil.Process(proc.pid)
        base = rss(server)
        peak = 0
        for i in range(ABANDONED):
            abandon(port, f"?run=abandoned-{i}")
            peak = max(peak, len(kernels(server)))
        assert peak > 0, "abandoned requests started no kernel: the test would prove nothing"
        for _ in range(VIEWS):
            page = view(port)
            assert "</html>" in page and "Traceback" not in page
            peak = max(peak, len(kernels(server)))
        peak_rss = rss(server)
        assert peak <= CAP, (peak, CAP)  # the ceiling held through the burst
        wait_for(lambda: not kernels(server), 300, "the idle kernels to be culled")
        after = wait_for(lambda: (m := rss(server)) < base + 200 * MiB and m, 60, "the server's memory to come back down")
        print(f"kernels at most {peak} (cap {CAP}); memory {base / MiB:.0f} MiB at start, {peak_rss / MiB:.0f} MiB after the views, "
              f"{after / MiB:.0f} MiB once culled")
        log = (tmp_path / "voila.log").read_text()
        assert "Culling" in log, log[-3000:]  # culled by jupyter_server's culler, the mechanism configured
    finally:
        _stop(proc)


def test_a_busy_port_stops_voila_instead_of_moving(ws, tmp_path):
    "`Voila.port_retries=0`: with its port taken Voila exits, rather than serving on another port than the one `mlw` printed."
    import subprocess
    from mlops_workbench.ui.shell import voila_command
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0)); taken.listen()
        argv, env = voila_command("pipeline_run", port=taken.getsockname()[1], ws=ws)
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0, p.stderr[-2000:]
    assert "is already in use" in p.stderr or "Address already in use" in p.stderr, p.stderr[-2000:]
