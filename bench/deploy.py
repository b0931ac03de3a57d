"""Deployments under load: requests dropped and p99 during a blue-green switch and each canary step, against the same load
with no switch; and the time from a failed canary analysis to a full rollback (issue 13).

Run: .venv/bin/python bench/deploy.py [--quick] [--seconds 20] [--connections 8] [--step_s 5] [--warm_s 5] [--repeat 3]
                                      [--reload_s 2] [--error_rate 0.6] [--timeline]

A temporary workspace with three validated versions of the demo's credit_default model (LightGBM, 15 trees of 5, 9 and
13 leaves), v1 deployed `direct` to a `production` environment (SLO p99 2000 ms, error rate 5%: room for a shared VM).
ONE gateway process, `mlw serve --env production --reload_s R --fault version=3,error_rate=E`, pinned to core 0,
follows the environment's traffic table for the whole run (the fault only ever touches v3, which only the rollback
phase deploys). wrk (Debian package `wrk`), pinned to core 1, one thread, --connections keep-alive connections, a
closed loop (each connection sends its next request when the last is answered), POSTs one holdout row to
/v1/models/credit_default/predict. The deployments run in this process (`deploy(..., checks=False)`: the rollout alone,
no staging gateway or wrk performance check), through the same API the tests use.

Figures are exact per request, not histogram estimates: wrk's Lua script stamps each request's send and answer with
CLOCK_REALTIME (LuaJIT ffi), gives it a unique X-Request-ID (the gateway echoes it) and X-Routing-Key (so a canary
share splits requests, not connections), and logs the answer's status and model version. A window's figures are
those of the requests SENT in it: answered (2xx or not), "dropped" = non-2xx answers + requests never answered (the
connection broke: wrk's socket errors; a request still unanswered when wrk stops counts as in flight, not lost, when it
was sent within max(0.5 s, 10 x the run's p99) of the stop), latency p50/p99 from send to answer, and which version
answered. The deployment record's timestamps (same clock) place the windows; wrk's own socket-error counts are printed
per run too.
Each window's p99 is shown as a ratio to the baseline run's (p99/base) and to the same run's requests sent while no
deployment was going on (p99/out: the seconds before it started and after it finished), the in-run control that
other load on a shared machine hits alike. 'gw wait' is the share of the window's time the gateway's threads spent
waiting for a CPU (the run queue, from /proc/PID/task/*/schedstat, sampled every 0.1 s): high where the machine's
other work, not the deployment, took the gateway's core. --timeline prints the canary run in half-second bins beside
its events, with the gateway's CPU and run-queue wait per bin.

  baseline    --seconds of load, v1 alone, nothing changes
  blue-green  the same load for the same time; after 2 s, blue-green v1 -> v2 (green loaded beside blue at share 0,
              switched, blue kept warm --warm_s, then unloaded). Window: deploy start -> finished
  canary      (v1 put back first, direct, without load) canary v1 -> v2, steps 5% 25% 50% 100% of --step_s each
              (poll 0.5 s; latency_slack_ms 250 so a busy VM's noise does not roll it back). Step k's window: from
              the previous step's record (deploy start for the first) to step k's record, so it includes the move into
              the step (the apply wait: the gateway picks up a traffic change within --reload_s)
  control     (full run only) the baseline once more, after the canary: how far two identical runs differ now
  rollback    --repeat times: canary v2 -> v3, v3 answering errors at --error_rate (the gateway's --fault), so the
              first analysis fails. From the verdict (the failing step's record time) to: the traffic table showing v2
              alone (the rolled_back transition's time: the same transaction writes the table), the gateway describing
              v2 alone (GET /v1/models/credit_default polled every 20 ms), the last answer from v3 in the load (2xx or its
              injected errors). Full
              rollback = the latest of the three; each repeat and the median.

Shared 2-core VMs swing run to run: compare the figures within one run (the load average is printed before and after).
The gateway and wrk are stopped, and the workspace removed, whatever happens. About 2.5 minutes; --quick about 80 s.
Nothing is asserted on time.
"""
import argparse, datetime as dt, json, os, shutil, signal, statistics, subprocess, sys, tempfile, threading, time, warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wrk import Server, free_port, pinned  # noqa: E402  bench/_wrk.py

BIN = Path(sys.executable).parent
NAME, ENV = "credit_default", "production"
ROUTE = f"/v1/models/{NAME}/predict"

LUA = r"""local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } mlw_ts; int clock_gettime(int, mlw_ts *); ]]
local ts = ffi.new("mlw_ts")
local function now_us() ffi.C.clock_gettime(0, ts); return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000) end
wrk.method = "POST"
wrk.body = [==[@BODY@]==]
local base = { ["Content-Type"] = "application/json", ["X-API-Key"] = [==[@KEY@]==] }
local n, nthreads = 0, 0
function setup(thread) nthreads = nthreads + 1; thread:set("id", nthreads) end
function init(args)
  out = io.open(string.format("@PREFIX@%d.log", id), "w")
  out:setvbuf("full", 1048576)
end
function request()
  n = n + 1
  local rid = string.format("b%d-%d", id, n)
  local h = {}
  for k, v in pairs(base) do h[k] = v end
  h["X-Request-ID"] = rid
  h["X-Routing-Key"] = rid
  out:write("S ", rid, " ", string.format("%.0f", now_us()), "\n")
  return wrk.format(nil, nil, h, nil)
end
function response(status, headers, body)
  local rid = headers["x-request-id"] or headers["X-Request-ID"] or headers["X-Request-Id"] or "-"
  local v = string.match(body, '"version"%s*:%s*(%d+)') or "-"
  out:write("R ", rid, " ", string.format("%.0f", now_us()), " ", status, " ", v, "\n")
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %.0f, "duration_us": %.0f, "p99_us": %.0f, "connect": %.0f, "read": %.0f, '
    .. '"write": %.0f, "status": %.0f, "timeout": %.0f}\n', summary.requests, summary.duration, latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class Load:
    "One wrk run in the background (pinned to `cpu`), every request logged by the Lua script above; stop() ends it early."
    def __init__(self, url: str, body: str, key: str, folder: Path, tag: str, seconds: float, connections: int, cpu: int | None):
        self.prefix = folder / f"wrk-{tag}-"
        script = folder / f"wrk-{tag}.lua"
        script.write_text(LUA.replace("@BODY@", body).replace("@KEY@", key).replace("@PREFIX@", str(self.prefix)))
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--timeout=5s", "-s", str(script), url + ROUTE]
        self.t_start = time.time()
        self.proc = subprocess.Popen(pinned(cmd, cpu), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.limit = seconds

    def stop(self, after_s: float = 0.0):
        "Let it run `after_s` more seconds, then SIGINT (wrk prints its figures and flushes the log), and read the log."
        if after_s: time.sleep(after_s)
        if self.proc.poll() is None: self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=self.limit + 60)
        line = next((l for l in out.splitlines() if l.startswith("WRK_JSON ")), None)
        if self.proc.returncode != 0 or line is None: raise RuntimeError(f"wrk failed (status {self.proc.returncode}): {out[-800:]}")
        self.summary = json.loads(line[len("WRK_JSON "):])
        self.t_end = min(time.time(), self.t_start + self.summary["duration_us"] / 1e6 + 0.05)  # when the load stopped
        self.log = L = read_log(sorted(self.prefix.parent.glob(self.prefix.name + "*.log")))
        lat = L["t1"] - L["t0"]
        lat = lat[~np.isnan(lat)]
        # unanswered when wrk stopped: in flight if sent within max(0.5 s, 10 x the run's p99) of the stop, else lost
        self.in_flight_s = max(0.5, 10 * float(np.percentile(lat, 99))) if lat.size else 0.5
        return self

    def wait(self):
        "Let wrk run its full --duration, then read the log."
        self.proc.wait(self.limit + 60)
        return self.stop()


def read_log(paths: list) -> dict:
    "Per request: send time, answer time (nan when never answered), status (0), version (0), as numpy arrays (seconds)."
    sent, got = {}, {}
    for p in paths:
        for line in p.read_text().splitlines():
            f = line.split()
            if len(f) == 3 and f[0] == "S": sent[f[1]] = int(f[2])
            elif len(f) == 5 and f[0] == "R": got[f[1]] = (int(f[2]), int(f[3]), int(f[4]) if f[4] != "-" else 0)
    for rid in [r for r in sent if r.endswith("-1") and r not in got]: del sent[rid]  # wrk calls request() once per thread before it connects: never sent
    rids = list(sent)
    t0 = np.array([sent[r] for r in rids], dtype=np.float64) / 1e6
    ans = [got.get(r) for r in rids]
    t1 = np.array([a[0] / 1e6 if a else np.nan for a in ans])
    status = np.array([a[1] if a else 0 for a in ans])
    version = np.array([a[2] if a else 0 for a in ans])
    order = np.argsort(t0)
    return {"t0": t0[order], "t1": t1[order], "status": status[order], "version": version[order], "unmatched": len(set(got) - set(sent))}


def window(load: Load, a: float, b: float, *more) -> dict:
    "Figures of the requests sent in [a, b) (and more spans: a2, b2, ...); one unanswered that was sent just before wrk stopped is in flight, not lost."
    L, spans = load.log, [(a, b), *zip(more[::2], more[1::2])]
    sel = np.zeros(L["t0"].shape, bool)
    for x, y in spans: sel |= (L["t0"] >= x) & (L["t0"] < y)
    t0, t1, st, ver = L["t0"][sel], L["t1"][sel], L["status"][sel], L["version"][sel]
    answered = ~np.isnan(t1)
    in_flight = (~answered) & (t0 > load.t_end - load.in_flight_s)  # sent just before wrk stopped: in flight, not lost
    lost = int(((~answered) & ~in_flight).sum())
    non2xx = int((answered & ((st < 200) | (st > 299))).sum())
    lat = (t1[answered] - t0[answered]) * 1e3
    vs = {int(v): int((ver[answered] == v).sum()) for v in np.unique(ver[answered]) if v}
    bad = answered & ((st < 200) | (st > 299))
    vs.update({f"HTTP {int(c)}": int((st[bad] == c).sum()) for c in np.unique(st[bad])})
    if lost: vs["lost"] = lost
    cw = [GATEWAY_CPU.between(x, y) for x, y in spans] if GATEWAY_CPU else []
    wait = sum(w for _, w in cw) if cw and all(w is not None for _, w in cw) else None
    return {"secs": sum(max(0.0, y - x) for x, y in spans), "requests": int(sel.sum()), "non2xx": non2xx, "lost": lost, "dropped": non2xx + lost,
            "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"), "versions": vs, "wait": wait}


class CPU(threading.Thread):
    "Every 0.1 s, the gateway's CPU time and its time waiting for a CPU (run queue), summed over its processes' threads."
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stopped, self.samples = pid, threading.Event(), []  # (time, cpu s, wait s)
    def pids(self) -> list:
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            for t in Path(f"/proc/{p}/task").glob("*/children"):
                try: todo += [int(c) for c in t.read_text().split()]
                except OSError: pass
        return out
    def read(self) -> tuple:
        cpu = wait = 0
        for p in self.pids():
            for t in Path(f"/proc/{p}/task").glob("*/schedstat"):
                try: c, w, _ = t.read_text().split()
                except (OSError, ValueError): continue
                cpu, wait = cpu + int(c), wait + int(w)
        return cpu / 1e9, wait / 1e9
    def run(self):
        while not self.stopped.is_set():
            self.samples.append((time.time(), *self.read()))
            time.sleep(0.1)
    def between(self, a: float, b: float) -> tuple:
        "CPU seconds and run-queue wait seconds of the gateway between times a and b (nearest samples), or (None, None)."
        s = [x for x in self.samples if a <= x[0] <= b]
        if len(s) < 2: return None, None
        return s[-1][1] - s[0][1], s[-1][2] - s[0][2]


CALLS: list = []  # (name, start, end) of the rollout's analysis calls in this process, timed by timed_analysis()


def timed_analysis():
    "Time each call of the rollout's analysis helpers (scrape: the gateway's /metrics; distribution: the inference log read)."
    from mlops_workbench.deploy import rollout
    def wrap(name, fn):
        def timed(*args, **kw):
            t = time.time()
            try: return fn(*args, **kw)
            finally: CALLS.append((name, t, time.time()))
        return timed
    for name in ("scrape", "distribution"): setattr(rollout, name, wrap(name, getattr(rollout, name)))


GATEWAY_CPU: CPU | None = None  # set once the gateway runs: windows then show its run-queue wait


def ts(iso: str) -> float: return dt.datetime.fromisoformat(iso).timestamp()


def build(root: Path, n_applications: int) -> dict:
    "Three validated versions of credit_default, v1 in production, a predictor key, one request row (as the rollout tests do)."
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.deploy.checks import request_rows
    from mlops_workbench.deploy.deployments import SLO, define_environment
    from mlops_workbench.deploy.rollout import deploy
    from mlops_workbench.experiments.definition import demo_experiment
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import validate_model
    from mlops_workbench.registry.versions import register_model
    from mlops_workbench.security.keys import create_key
    from mlops_workbench.serving.model import load_served_model
    from mlops_workbench.training.fit import load_holdout, train
    ws = Workspace.init(root / "ws")
    exp = demo_experiment(ws, n_applications=n_applications)
    runs = [train(ws, exp, {"num_leaves": n, "n_estimators": 15}, run_name=f"v{i}").run_id for i, n in enumerate((5, 9, 13), 1)]
    for r in runs: register_model(ws, r, NAME, validate_model(ws, r, default_gates("binary")), who="bench")
    define_environment(ws, ENV, slo=SLO(p99_ms=2000, error_rate=0.05), who="bench")
    d = deploy(ws, f"{NAME}/1", ENV, "direct", checks=False, who="bench")
    if d.state != "succeeded": raise RuntimeError(f"the first deployment of v1 ended {d.state}: {d.reason}")
    sm = load_served_model(ws, f"{NAME}/1")
    _, rows = request_rows(sm, load_holdout(ws, sm.run_id), 1)
    return {"ws": ws, "body": json.dumps({"rows": rows}), "key": create_key(ws, "bench", ["predictor"], who="bench").key}


class Deploying(threading.Thread):
    "A deployment run in a thread (the load keeps going meanwhile); its start time, the Deployment, or the error."
    def __init__(self, ws, ref: str, strategy: str, **params):
        super().__init__(daemon=True)
        self.ws, self.ref, self.strategy, self.params, self.result, self.error = ws, ref, strategy, params, None, None
    def run(self):
        from mlops_workbench.deploy.rollout import deploy
        self.t_start = time.time()
        try: self.result = deploy(self.ws, self.ref, ENV, self.strategy, checks=False, who="bench", **self.params)
        except BaseException as e: self.error = e
        self.t_end = time.time()
    def done(self, timeout: float):
        self.join(timeout)
        if self.is_alive(): raise RuntimeError(f"deployment of {self.ref} still running after {timeout:.0f} s")
        if self.error is not None: raise self.error
        return self.result


class Probe(threading.Thread):
    "Polls the gateway's description of the endpoint every 20 ms; the times at which it first showed no candidate after `armed`."
    def __init__(self, url: str, key: str):
        super().__init__(daemon=True)
        self.url, self.key, self.stopped, self.seen = url, key, threading.Event(), []
    def run(self):
        import httpx
        with httpx.Client(timeout=5) as c:
            last = None
            while not self.stopped.is_set():
                try: d = c.get(f"{self.url}/v1/models/{NAME}", headers={"X-API-Key": self.key}).json()
                except Exception: d = None
                state = None if d is None else (d.get("version"), (d.get("candidate") or {}).get("version"))
                if state != last: self.seen.append((time.time(), state)); last = state
                time.sleep(0.02)
    def alone_since(self, primary: int, after: float) -> float | None:
        "The first time after `after` from which the gateway described `primary` with no candidate."
        t = None
        for at, state in list(self.seen):
            if state == (primary, None):
                if t is None: t = at
            else: t = None
        return None if t is None else max(t, after)


def fmt(x, w=8, d=1):
    return f"{'-':>{w}}" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:>{w}.{d}f}"


def row(label: str, f: dict, base: dict | None, out: dict | None = None):
    vs = " ".join(f"v{v}:{n}" if isinstance(v, int) else f"{v}:{n}" for v, n in f["versions"].items())
    ratio = lambda b: f["p99"] / b["p99"] if b and b["p99"] else None
    print(f"  {label:34s} {f['secs']:6.1f} {f['requests']:8d} {f['requests'] / f['secs'] if f['secs'] else 0:7.0f} {f['non2xx']:6d} "
          f"{f['lost']:5d} {f['dropped']:7d} {fmt(f['p50'], 7, 2)} {fmt(f['p99'], 7, 2)} {fmt(ratio(base), 7, 2)}x {fmt(ratio(out), 6, 2)}x {fmt(None if f['wait'] is None else 100 * f['wait'] / f['secs'], 6, 0)}%  {vs}")


HEAD = (f"  {'window':34s} {'secs':>6s} {'requests':>8s} {'req/s':>7s} {'non2xx':>6s} {'lost':>5s} {'dropped':>7s} "
        f"{'p50 ms':>7s} {'p99 ms':>7s} {'p99/base':>8s} {'p99/out':>7s} {'gw wait':>7s}  answered by")


def timeline(load: Load, events: list, cpu: CPU, bin_s: float = 0.5):
    "The run in bins of `bin_s` seconds: requests, p50/p99, the gateway's CPU and run-queue wait, answers by version, events."
    print(f"  timeline, {bin_s:g} s bins: {'t s':>6s} {'requests':>8s} {'p50 ms':>7s} {'p99 ms':>7s} {'gw cpu':>6s} {'gw wait':>7s}"
          f"  answered by / events   (gw cpu, gw wait: the gateway's CPU seconds, and seconds it waited for a CPU, per second)")
    t = load.t_start
    while t < load.t_end:
        f = window(load, t, t + bin_s)
        ev = [name for at, name in events if t <= at < t + bin_s]
        vs = " ".join(f"v{v}:{n}" if isinstance(v, int) else f"{v}:{n}" for v, n in f["versions"].items())
        c, w = cpu.between(t, t + bin_s)
        print(f"  {'':20s} {t - load.t_start:6.1f} {f['requests']:8d} {fmt(f['p50'], 7, 2)} {fmt(f['p99'], 7, 2)} "
              f"{fmt(None if c is None else c / bin_s, 6, 2)} {fmt(None if w is None else w / bin_s, 7, 2)}  {vs}"
              + (f"  <- {', '.join(ev)}" if ev else "") + (f"  dropped {f['dropped']}" if f["dropped"] else ""))
        t += bin_s


def analysis_costs(a: float, b: float) -> str:
    "How long the rollout's own analysis calls took between times a and b (they run in this process, on the same 2 cores)."
    out = []
    for name in ("scrape", "distribution"):
        d = [t1 - t0 for n, t0, t1 in CALLS if n == name and a <= t0 <= b]
        if d: out.append(f"{name} x{len(d)}: median {statistics.median(d) * 1e3:.0f} ms, max {max(d) * 1e3:.0f} ms")
    return "the rollout's analysis calls: " + ("; ".join(out) or "none")


def wrk_errors(load: Load) -> str:
    e = {k: int(load.summary[k]) for k in ("connect", "read", "write", "status", "timeout") if load.summary.get(k)}
    if load.log["unmatched"]: e["answers without a request id the log knows"] = load.log["unmatched"]  # none expected
    return ", ".join(f"{k} {v}" for k, v in e.items()) or "none"


def main():
    global GATEWAY_CPU
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter windows and steps, 2 rollback repeats: about 90 s")
    ap.add_argument("--seconds", type=float, help="baseline and blue-green run length (default 20; quick 12)")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--step_s", type=float, help="seconds per canary step (default 5; quick 2)")
    ap.add_argument("--warm_s", type=float, help="blue-green: seconds blue stays warm after the switch (default 5; quick 2)")
    ap.add_argument("--repeat", type=int, help="rollback repeats (default 3; quick 2)")
    ap.add_argument("--reload_s", type=float, default=2.0, help="the gateway's --reload_s (default 2.0, `mlw serve`'s own default)")
    ap.add_argument("--timeline", action="store_true", help="print the canary run in half-second bins beside its events")
    ap.add_argument("--error_rate", type=float, default=0.6, help="v3's injected error rate in the rollback phase")
    a = ap.parse_args()
    q = a.quick
    secs = a.seconds or (12 if q else 20)
    step_s, warm_s, repeat = a.step_s or (2 if q else 5), a.warm_s or (2 if q else 5), a.repeat or (2 if q else 3)
    if not shutil.which("wrk"): sys.exit("wrk is not installed: sudo apt-get install -y wrk")
    warnings.filterwarnings("ignore")
    cores = sorted(os.sched_getaffinity(0))
    gw_cpu, wrk_cpu = (cores[0], cores[1]) if len(cores) > 1 else (None, None)
    print(f"bench/deploy.py{' --quick' if q else ''}: load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f} on {os.cpu_count()} cores; gateway on core {gw_cpu}, wrk on core {wrk_cpu}, one thread, "
          f"{a.connections} connections")
    t_all = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="mlw-bench-deploy-"))
    server = None
    try:
        w = build(tmp, 800 if q else 1200)
        ws, body, key = w["ws"], w["body"], w["key"]
        print(f"workspace: 3 versions of {NAME} trained and registered, v1 in {ENV} ({time.monotonic() - t_all:.0f} s)")
        port = free_port()
        fault = f"version=3,error_rate={a.error_rate:g}"
        server = Server("gateway", [BIN / "mlw", "serve", "--env", ENV, "--port", port, "--workspace", ws.root, "--reload_s", a.reload_s,
                                    "--fault", fault], tmp / "gateway.log", cpu=gw_cpu)
        url = f"http://127.0.0.1:{port}"
        server.wait_ready(url + ROUTE, body.encode(), {"X-API-Key": key}, timeout=120)
        timed_analysis()
        GATEWAY_CPU = cpu = CPU(server.proc.pid)
        cpu.start()
        print(f"gateway: `mlw serve --env {ENV} --reload_s {a.reload_s:g} --fault {fault}` (one process) at {url}")
        mk = lambda tag, s: Load(url, body, key, tmp, tag, s, a.connections, wrk_cpu)
        mk("warmup", 2).wait()

        # 1. baseline, 2. blue-green: same load, same time
        base_load = mk("baseline", secs).wait()
        base = window(base_load, base_load.t_start + 0.5, base_load.t_end)
        bg_load = mk("bluegreen", secs)
        time.sleep(2)
        bg = Deploying(ws, f"{NAME}/2", "blue_green", warm_s=warm_s, poll_s=0.5, min_requests=5, latency_slack_ms=250)
        bg.start()
        d_bg = bg.done(secs + 120)
        bg_load.wait()
        if d_bg.state != "succeeded": print(f"  NOTE: the blue-green deployment ended {d_bg.state}: {d_bg.reason}")
        spill = bg.t_end > bg_load.t_end
        bg_whole = window(bg_load, bg_load.t_start + 0.5, bg_load.t_end)
        bg_win = window(bg_load, bg.t_start, min(bg.t_end, bg_load.t_end))
        switch_at = ts(d_bg.steps[0]["at"]) if d_bg.steps else None
        print(f"\n1-2. baseline against blue-green v1 -> v2, {secs:g} s of load each (warm_s {warm_s:g}); "
              f"deployment {d_bg.id} {d_bg.state} in {bg.t_end - bg.t_start:.1f} s{' (ran past the load!)' if spill else ''}")
        print(HEAD)
        out = window(bg_load, bg_load.t_start + 0.5, bg.t_start, bg.t_end, bg_load.t_end)  # the same run, no deployment going on
        row("baseline, no switch", base, base)
        row("blue-green run, whole", bg_whole, base, out)
        row("  outside the deployment (out)", out, base, out)
        row("  deploy start -> finished", bg_win, base, out)
        if switch_at:
            row("  deploy start -> green loaded", window(bg_load, bg.t_start, switch_at), base, out)
            row("  green loaded -> finished", window(bg_load, switch_at, min(bg.t_end, bg_load.t_end)), base, out)
        L = bg_load.log
        v2 = L["t0"][L["version"] == 2]
        if v2.size:  # the flip itself: the first request v2 answered, half a second either side
            row("  switch +-0.5 s (first v2 answer)", window(bg_load, v2.min() - 0.5, v2.min() + 0.5), base, out)
        print(f"  wrk socket errors: baseline {wrk_errors(base_load)}; blue-green {wrk_errors(bg_load)}")

        # 3. canary v1 -> v2, step by step
        from mlops_workbench.deploy.rollout import deploy
        d = deploy(ws, f"{NAME}/1", ENV, "direct", checks=False, who="bench")  # v1 back, no load
        if d.state != "succeeded": raise RuntimeError(f"putting v1 back ended {d.state}: {d.reason}")
        steps = (0.05, 0.25, 0.5, 1.0)
        cap = 3 + len(steps) * (step_s + a.reload_s + 3) + 10
        can_load = mk("canary", cap)
        time.sleep(3)
        can = Deploying(ws, f"{NAME}/2", "canary", steps=steps, step_s=step_s, poll_s=0.5, min_requests=5, max_step_s=step_s * 3,
                        latency_slack_ms=250)
        can.start()
        d_can = can.done(cap + 120)
        can_load.stop(2.0)
        print(f"\n3. canary v1 -> v2, steps {' '.join(f'{s:.0%}' for s in steps)}, step_s {step_s:g}: deployment {d_can.id} {d_can.state} "
              f"in {can.t_end - can.t_start:.1f} s{'' if d_can.state == 'succeeded' else ': ' + str(d_can.reason)}")
        print(HEAD)
        out = window(can_load, can_load.t_start + 0.5, can.t_start, can.t_end, can_load.t_end)
        row("canary run, whole", window(can_load, can_load.t_start + 0.5, can_load.t_end), base, out)
        row("  outside the deployment (out)", out, base, out)
        prev = can.t_start
        for s in d_can.steps:
            at = ts(s["at"])
            row(f"  step {s['share']:.0%} (move in + {s['analysis'].get('seconds', 0):.1f} s)", window(can_load, prev, min(at, can_load.t_end)), base, out)
            prev = at
        row("  last step -> finished", window(can_load, prev, min(can.t_end, can_load.t_end)), base, out)
        print(f"  wrk socket errors: {wrk_errors(can_load)}")
        print("  " + analysis_costs(can.t_start, can.t_end))
        if a.timeline:
            events = [(can.t_start, "deploy start"), *((ts(s["at"]), f"step {s['share']:.0%} recorded") for s in d_can.steps),
                      (can.t_end, "finished"),
                      *((t0, f"distribution read {t1 - t0:.2f} s") for name, t0, t1 in CALLS if name == "distribution" and can.t_start <= t0 <= can.t_end)]
            timeline(can_load, events, cpu)

        if not q:  # the same load once more, nothing changing: how far two runs of the baseline differ on this machine now
            again_load = mk("baseline2", secs).wait()
            print(HEAD.replace("window  ", "control "))
            row("baseline again, no switch", window(again_load, again_load.t_start + 0.5, again_load.t_end), base)

        # 4. failed analysis -> full rollback, `repeat` times
        print(f"\n4. canary v2 -> v3 with v3 answering errors at {a.error_rate:.0%} (gateway --fault): failed analysis -> full rollback")
        print(f"  {'#':>2s} {'verdict':>8s} {'v3 first->verdict':>17s} {'->table':>8s} {'->gw v2 alone':>13s} {'->last v3':>9s} "
              f"{'full':>7s}  {'v3 ok':>6s} {'v3 err':>6s} {'err after':>9s}  reason")
        fulls, t_rb = [], time.time()
        probe = Probe(url, key)
        probe.start()
        try:
            for i in range(repeat):
                load = mk(f"rollback{i}", 2 + step_s + 3 * a.reload_s + 20)
                time.sleep(1.5)
                r = Deploying(ws, f"{NAME}/3", "canary", steps=steps, step_s=step_s, poll_s=0.5, min_requests=20, max_step_s=step_s * 3)
                r.start()
                dr = r.done(120)
                time.sleep(a.reload_s + 1.5)  # the gateway follows within reload_s; then wait for stragglers
                load.stop()
                fail = [s for s in dr.steps if not s["analysis"]["passed"]]
                if dr.state != "rolled_back" or not fail:
                    print(f"  {i + 1:2d} the deployment ended {dr.state} ({dr.reason}): no failed analysis to time"); continue
                verdict = ts(fail[-1]["at"])
                table = ts(next(t["at"] for t in dr.transitions if t["state"] == "rolled_back"))
                gw = probe.alone_since(dr.previous_version, verdict)
                L = load.log
                ok = (L["status"] >= 200) & (L["status"] <= 299)
                v3 = L["t1"][((L["version"] == 3) | ~ok) & ~np.isnan(L["t1"])]  # v3's answers, and errors (v3's injected ones)
                last3, first3 = (float(v3.max()), float(v3.min())) if v3.size else (None, None)
                full = max(x for x in (table, gw, last3) if x is not None)
                fulls.append(full - verdict)
                f, after = window(load, r.t_start, load.t_end), window(load, full, load.t_end)
                print(f"  {i + 1:2d} {fmt(verdict - r.t_start, 7, 2)}s {fmt(None if first3 is None else verdict - first3, 16, 3)}s "
                      f"{fmt(table - verdict, 7, 3)}s {fmt(None if gw is None else gw - verdict, 12, 3)}s "
                      f"{fmt(None if last3 is None else last3 - verdict, 8, 3)}s {fmt(full - verdict, 6, 3)}s  {f['versions'].get(3, 0):6d} "
                      f"{f['dropped']:6d} {after['dropped']:9d}  {dr.reason[:80]}")
        finally:
            probe.stopped.set(); probe.join(5)
        print("  " + analysis_costs(t_rb, time.time()))
        if fulls: print(f"  median full rollback {statistics.median(fulls):.3f} s over {len(fulls)} (gateway --reload_s {a.reload_s:g}: "
                        f"it sees a traffic change within that)")
        print("  verdict: seconds from the deployment's start to the failing step's record; 'v3 first->verdict': from v3's first answer "
              "to it;\n  the other times from the verdict. v3 ok/err: v3's 2xx answers and the non-2xx ones (its injected errors: v2 "
              "answers none); 'err after': non-2xx or lost requests sent after the full rollback")
        server.stop()
        bad = [l for l in server.log.read_text(errors="replace").splitlines() if ("ERROR" in l or "Traceback" in l or "WARNING" in l)
               and "FAULT INJECTION" not in l and "injected fault" not in l]
        print(f"\ngateway log: {len(bad)} error/warning line(s) besides the injected fault's" + "".join(f"\n  {l[:200]}" for l in bad[:8]))
    finally:
        if server is not None: server.stop()
        try: w["ws"].close()
        except Exception: pass
        shutil.rmtree(tmp, ignore_errors=True)
    la = os.getloadavg()
    print(f"\nload average after: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; the whole bench took {time.monotonic() - t_all:.0f} s")


if __name__ == "__main__":
    main()
