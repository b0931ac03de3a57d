"""HTTP servers under load, for the bench scripts: a server subprocess pinned to one core, wrk pinned to another.

A server runs in its own session (process group), so `Server.stop` ends it and every process it started (MLflow's
`models serve` runs uvicorn as a child) with one signal; should the bench itself be killed, the kernel sends the server
SIGTERM (PR_SET_PDEATHSIG), so nothing outlives it. wrk POSTs one JSON body from a Lua script whose `done` hook
prints the figures as one JSON line (exact microseconds, error counts by kind), so nothing depends on parsing wrk's
human units: the script and the runner are the package's (`mlops_workbench.deploy.checks.wrk_script` and `run_wrk`,
which a deployment's performance check uses too); `lua_script` and `wrk` here keep the bench's call shapes.
"""
import ctypes, os, shutil, signal, socket, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path

def _die_with_parent():
    "In the child before exec: SIGTERM when the bench dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG survives exec)."
    if sys.platform.startswith("linux"):
        try: ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError): pass


def cpus() -> list[int]:
    "The cores this process may run on."
    return sorted(os.sched_getaffinity(0))


def pinned(cmd: list, cpu: int | None) -> list:
    "`cmd` run on core `cpu` (as is when `cpu` is None or taskset is missing)."
    return cmd if cpu is None or not shutil.which("taskset") else ["taskset", "-c", str(cpu), *map(str, cmd)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, headers: dict | None = None, timeout: float = 10) -> tuple[int, bytes]:
    "Status and body of one POST (an HTTP error's too)."
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r: return r.status, r.read()
    except urllib.error.HTTPError as e: return e.code, e.read()


class Server:
    "A server subprocess on loopback, pinned to `cpu`, its output in `log`; stop() ends its whole process group."
    def __init__(self, name: str, cmd: list, log: Path, cpu: int | None = 0, env: dict | None = None, cwd=None):
        self.name, self.log = name, Path(log)
        self._out = open(self.log, "wb")
        self.proc = subprocess.Popen(pinned(cmd, cpu), stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent)

    def tail(self, n: int = 15) -> str:
        try: return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError: return ""

    def wait_ready(self, url: str, body: bytes, headers: dict | None = None, timeout: float = 60) -> bytes:
        "Poll `url` with `body` until it answers 200; its response. Raises if the server exits or `timeout` passes."
        end, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode} before it answered; its log ends:\n{self.tail()}")
            try:
                status, out = post(url, body, headers, timeout=5)
                if status == 200: return out
                last = f"HTTP {status}: {out[:300].decode(errors='replace')}"
            except OSError as e: last = f"{type(e).__name__}: {e}"
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} did not answer 200 within {timeout:.0f} s (last: {last}); its log ends:\n{self.tail()}")

    def stop(self, grace: float = 5):
        "SIGTERM to the server's process group, SIGKILL after `grace` seconds; idempotent."
        if self.proc.poll() is None:
            try: os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError: pass
            try: self.proc.wait(grace)
            except subprocess.TimeoutExpired: pass
        try: os.killpg(self.proc.pid, signal.SIGKILL)  # the group's stragglers (children that ignored SIGTERM), if any
        except (ProcessLookupError, PermissionError): pass
        if self.proc.poll() is None: self.proc.wait(5)
        self._out.close()


def lua_script(path: Path, body: str, headers: dict | None = None) -> Path:
    "Write a wrk script that POSTs `body` (JSON) with `headers` (no per-answer Lua hook: wrk's own 4xx/5xx count only)."
    from mlops_workbench.deploy.checks import wrk_script
    path.write_text(wrk_script(body, headers, count_status=False))
    return path


def wrk(url: str, script: Path, seconds: float, connections: int = 16, threads: int = 1, cpu: int | None = 1,
        timeout: str = "2s") -> dict:
    "One wrk run: requests/s, latency percentiles in ms, error counts (and p95, mean, duration, a spread of percentiles)."
    from mlops_workbench.deploy.checks import run_wrk
    return run_wrk(url, script, seconds, connections, threads, cpu, timeout_s=float(timeout.rstrip("s")))
