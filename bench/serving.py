"""Serving: MLflow's scoring server, a bare Starlette app and our gateway side by side under wrk, on one model and one row.

Run: .venv/bin/python bench/serving.py [--quick] [--seconds 5] [--repeat 3] [--warmup 3] [--connections 16] [--trees 200]

One binary LightGBM model (the demo's credit_default experiment, --trees trees of 31 leaves, 11 inputs, 2 of them text)
trained and registered in a temporary workspace, and one holdout row of it, sent as a 1-row JSON POST to each server.
Each server is a subprocess on 127.0.0.1 pinned to core 0 (`taskset -c 0`), all started at once; wrk (Debian package
`wrk`) runs pinned to core 1 with one thread and --connections keep-alive connections: --warmup seconds per server
first (discarded), then --repeat rounds in which each server in turn gets --seconds (interleaved, so a busy spell on a
shared machine hits every server alike; the table shows medians and the range of requests/s). wrk's Lua `done` hook
reports requests/s and latency percentiles exactly. The servers, one process each:

  mlflow      `mlflow models serve -m models:/credit_default/1 --env-manager local -w 1`: MLflow's pyfunc scoring
              server (FastAPI on uvicorn, access log on, as shipped), body {"dataframe_split": ...} of the encoded row
  bare        a Starlette app written below: parses {"rows": [{...}]} (the gateway's body: text values by name),
              encodes the text by the run's levels, `Booster.predict` on the row; nothing else. Three times, on the
              servers the gateway could run on: uvicorn on asyncio + h11 (plain `pip install uvicorn`), uvicorn on
              uvloop + httptools (`uvicorn[standard]`), granian (ASGI, Rust HTTP)
  gateway     `mlw serve credit_default@candidate` with an API key (`mlw keys create bench --role predictor`):
              auth, validation, online features and the inference log on; a row of features, then a row of entity
              keys (its customer's features from the online store) to the same process. Skipped, with a note, until
              `mlw serve` exists.

Every server's answer is checked against the booster's own prediction before it is loaded. Ratios: throughput against
MLflow's and against the fastest bare app. Also the in-process single-row predict: `Booster.predict` on a prepared
row, and `FastPredictor.predict_row` (mlops_workbench.serving.fast) when it exists. Shared 2-core VMs swing run to
run: compare the figures within one run (the load average is printed before and after). Everything is removed and every
server stopped whatever happens (try/finally); the whole run takes about 2 minutes, --quick about 35 s.
"""
import argparse, importlib.util, json, math, os, re, shutil, subprocess, sys, tempfile, time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wrk import Server, cpus, free_port, lua_script, wrk  # noqa: E402  bench/_wrk.py

BIN = Path(sys.executable).parent
NAME = "credit_default"
ISSUE = {"mlflow": (126, 400), "bare": (8580, 6.4)}  # issue 12's figures: req/s, p99 ms
AIM = "aim: gateway >= 20x MLflow's req/s, within 2x of the bare app, p99 < 10 ms; in-process predict <= 10 us"

BARE_APP = '''"""bench/serving.py's bare app: Starlette, the JSON parsed, the row's text encoded, Booster.predict; nothing else."""
import json, os
import lightgbm as lgb
import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

_cfg = json.loads(open(os.environ["MLW_BENCH_MODEL"]).read())
booster = lgb.Booster(model_file=_cfg["model_file"])
features = _cfg["features"]
codes = {f: {v: float(i) for i, v in enumerate(levels)} for f, levels in _cfg["categorical"].items()}
NAN = float("nan")

def value(f, v):
    if v is None: return NAN
    return codes[f].get(v, NAN) if f in codes else float(v)

async def predict(request):
    rows = (await request.json())["rows"]
    X = np.array([[value(f, r.get(f)) for f in features] for r in rows], dtype=np.float64)
    return JSONResponse({"predictions": booster.predict(X, num_threads=1).tolist()})

async def ping(request): return PlainTextResponse("ok")

app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/ping", ping)])
'''


def pkg(p: str) -> str:
    try: return version(p)
    except PackageNotFoundError: return "-"


def build_model(root: Path, trees: int) -> dict:
    "Train, validate and register the demo model in a fresh workspace under `root`; what the servers need."
    import polars as pl
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.experiments.definition import demo_experiment
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import validate_model
    from mlops_workbench.registry.versions import get_model, register_model
    from mlops_workbench.training.fit import booster_file, load_booster, load_holdout, model_info, model_inputs
    ws = Workspace.init(root / "ws")
    run_id = train_run(ws, demo_experiment(ws, n_applications=1500), trees)
    mv = register_model(ws, run_id, NAME, validate_model(ws, run_id, default_gates("binary")), who="bench")
    aliases = get_model(ws, NAME).aliases
    if "candidate" not in aliases:
        raise RuntimeError(f"{NAME} v{mv.version} failed its validation gates ({mv.tags.get('mlw.validation_summary')}), so it has no "
                           "candidate alias to serve; try more --trees")
    info, holdout = model_info(ws, run_id), load_holdout(ws, run_id)
    full = holdout.filter(pl.all_horizontal([pl.col(f).is_not_null() for f in info["features"]]))  # JSON has no NaN
    row = full.slice(0, 1)
    X = model_inputs(row, info)
    booster = load_booster(ws, run_id)
    return {"ws": ws, "run_id": run_id, "version": int(mv.version), "info": info, "booster": booster, "X": X,
            "expected": float(booster.predict(X, num_threads=1)[0]), "row": row.to_dicts()[0],
            "model_file": str(booster_file(ws, run_id))}


def train_run(ws, exp, trees: int) -> str:
    from mlops_workbench.training.fit import train
    return train(ws, exp, {"num_leaves": 31, "n_estimators": trees}, run_name="bench-serving").run_id


def timed_us(fn, x, calls: int) -> np.ndarray:
    for _ in range(50): fn(x)  # warm up
    out = np.empty(calls)
    for i in range(calls):
        t = time.perf_counter_ns(); fn(x); out[i] = (time.perf_counter_ns() - t) / 1e3
    return out


def fast_predictor(m: dict):
    "FastPredictor(booster).predict_row on the prepared row (1-d), or None with the reason."
    try: from mlops_workbench.serving.fast import FastPredictor
    except ImportError as e: return None, f"not available ({e})"
    try:
        fn = FastPredictor(m["booster"]).predict_row
        got = float(np.ravel(fn(m["X"][0]))[0])
    except Exception as e: return None, f"present, but bench/serving.py could not call it ({type(e).__name__}: {e}); update fast_predictor()"
    if not math.isclose(got, m["expected"], rel_tol=1e-9, abs_tol=1e-12):
        return None, f"gives {got!r} on the row where Booster.predict gives {m['expected']!r}; not timed"
    return fn, ""


def in_process(m: dict, calls: int):
    b = m["booster"]
    rows = [("Booster.predict, prepared row (num_threads=1)", timed_us(lambda x: b.predict(x, num_threads=1), m["X"], calls))]
    fn, why = fast_predictor(m)
    if fn is not None: rows.append(("FastPredictor.predict_row, same row", timed_us(fn, m["X"][0], calls)))
    print(f"in-process single-row predict, {b.num_trees()} trees, {calls:,} calls; microseconds per call")
    for name, t in rows:
        print(f"  {name:48s} p50 {np.percentile(t, 50):7.1f}  p99 {np.percentile(t, 99):7.1f}  "
              f"{np.percentile(rows[0][1], 50) / np.percentile(t, 50):5.1f}x Booster.predict")
    if fn is None: print(f"  FastPredictor: {why}")
    print("  issue 12: Booster.predict ~19 us; aim: FastPredictor <= 10 us")


def prediction_of(body: bytes):
    "The first number of a server's answer (predictions[0], outputs..., or the first float anywhere)."
    def first(o):
        if isinstance(o, bool): return None
        if isinstance(o, (int, float)): return float(o)
        if isinstance(o, dict):
            for k in ("predictions", "prediction", "outputs", "probability", "score"):
                if k in o and (v := first(o[k])) is not None: return v
            o = list(o.values())
        if isinstance(o, list):
            for v in o:
                if (got := first(v)) is not None: return got
        return None
    try: return first(json.loads(body))
    except ValueError: return None


class Target:
    "One body sent to one server: its readiness check and its wrk runs."
    def __init__(self, name: str, kind: str, server: Server, url: str, body: dict, headers: dict | None = None,
                 expected: float | None = None, ready_s: float = 60, required: bool = True, note: str = ""):
        self.name, self.kind, self.server, self.url, self.headers = name, kind, server, url, headers
        self.body = json.dumps(body, separators=(",", ":"))
        self.expected, self.ready_s, self.required, self.note = expected, ready_s, required, note
        self.runs, self.error, self.ready, self.script = [], None, None, None


class Bench:
    "The servers of one run: all started on core 0, each checked, then loaded by wrk on core 1 in interleaved rounds."
    def __init__(self, a, tmp: Path, cpu_server, cpu_client):
        self.a, self.tmp, self.cs, self.cc = a, tmp, cpu_server, cpu_client
        self.servers, self.targets, self.skipped = [], [], []

    def start(self, name: str, cmd: list, **kw) -> Server:
        s = Server(name, cmd, self.tmp / f"server-{len(self.servers)}.log", cpu=self.cs, **kw)
        self.servers.append(s)
        return s

    def add(self, *args, **kw): self.targets.append(Target(*args, **kw))

    def skip(self, name: str, kind: str, why: str):
        print(f"  {name}: skipped: {why}", flush=True)
        self.skipped.append((name, kind, why))

    def _fail(self, t: Target, e: Exception):
        t.error = str(e)
        print(f"  {t.name}: FAILED: {e}", flush=True)

    def check(self):
        "Each target answers its body with the booster's prediction (its server started meanwhile), then a warm-up."
        for t in self.targets:
            if t.error: continue
            try:
                t0 = time.monotonic()
                out = t.server.wait_ready(t.url, t.body.encode(), t.headers, timeout=t.ready_s)
                got = prediction_of(out)
                if t.expected is not None and (got is None or not math.isclose(got, t.expected, rel_tol=1e-6, abs_tol=1e-9)):
                    raise RuntimeError(f"it answered {out[:200]!r}; the booster gives {t.expected!r} for this row")
                t.ready = time.monotonic() - t0
                t.script = lua_script(self.tmp / f"wrk-{len(self.targets)}-{id(t)}.lua", t.body, t.headers)
                wrk(t.url, t.script, self.a.warmup, self.a.connections, cpu=self.cc)
                print(f"  {t.name}: answers correctly, warmed up", flush=True)
            except Exception as e: self._fail(t, e)

    def load(self):
        "--repeat rounds; in each, every target in turn for --seconds (interleaved, so a busy spell hits all alike)."
        for i in range(self.a.repeat):
            for t in self.targets:
                if t.error: continue
                try:
                    r = wrk(t.url, t.script, self.a.seconds, self.a.connections, cpu=self.cc)
                    if r["requests"] == 0 or r["errors"].get("status"):
                        raise RuntimeError(f"{r['requests']} requests, {r['errors'].get('status', 0)} answered non-2xx under load")
                    t.runs.append(r)
                    print(f"  round {i + 1}: {t.name}: {r['rps']:,.0f} req/s, p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms", flush=True)
                except Exception as e: self._fail(t, e)

    @property
    def failed(self) -> list: return [t for t in self.targets if t.error and t.required]

    def stop_all(self):
        for s in self.servers:
            try: s.stop()
            except Exception as e: print(f"could not stop {s.name} (pid {s.proc.pid}): {e}", file=sys.stderr)


def run_mlflow(b: Bench, m: dict):
    uri = m["ws"].uri("tracking")
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    s = b.start("mlflow", [BIN / "mlflow", "models", "serve", "-m", f"models:/{NAME}/{m['version']}", "-h", "127.0.0.1", "-p", port,
                           "--env-manager", "local", "-w", "1"], env=env)
    body = {"dataframe_split": {"columns": m["info"]["features"], "data": m["X"].tolist()}}
    fast = all(importlib.util.find_spec(x) for x in ("uvloop", "httptools"))  # uvicorn's default picks them when installed
    b.add("mlflow models serve", "mlflow", s, f"http://127.0.0.1:{port}/invocations", body, expected=m["expected"], ready_s=120,
          note=f"uvicorn on {'uvloop + httptools' if fast else 'asyncio + h11'}")


def run_bare(b: Bench, m: dict, row: dict):
    cfg = b.tmp / "bare_model.json"
    cfg.write_text(json.dumps({"model_file": m["model_file"], "features": m["info"]["features"], "categorical": m["info"]["categorical"]}))
    (b.tmp / "bench_bare_app.py").write_text(BARE_APP)
    env = {**os.environ, "MLW_BENCH_MODEL": str(cfg), "PYTHONPATH": str(b.tmp)}
    body = {"rows": [row]}
    have = lambda *mods: all(importlib.util.find_spec(x) for x in mods)
    uvicorn = [sys.executable, "-m", "uvicorn", "bench_bare_app:app", "--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"]
    for label, extra, mods in [("asyncio + h11", ["--loop", "asyncio", "--http", "h11"], ()),
                               ("uvloop + httptools", ["--loop", "uvloop", "--http", "httptools"], ("uvloop", "httptools"))]:
        name = f"bare Starlette, uvicorn ({label})"
        if not have(*mods): b.skip(name, "bare", f"{' and '.join(mods)} not installed (pip install {' '.join(mods)})"); continue
        port = free_port()
        s = b.start(name, [*uvicorn, "--port", port, *extra], env=env, cwd=b.tmp)
        b.add(name, "bare", s, f"http://127.0.0.1:{port}/predict", body, expected=m["expected"], ready_s=30)
    name = "bare Starlette, granian (ASGI)"
    if not (BIN / "granian").exists(): return b.skip(name, "bare", "granian not installed (pip install granian)")
    port = free_port()
    loop = "uvloop" if have("uvloop") else "asyncio"
    s = b.start(name, [BIN / "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", port, "--workers", "1", "--http", "1",
                       "--no-ws", "--loop", loop, "--log-level", "warning", "bench_bare_app:app"], env=env, cwd=b.tmp)
    b.add(name, "bare", s, f"http://127.0.0.1:{port}/predict", body, expected=m["expected"], ready_s=30, note=f"loop {loop}")


def _mlw(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mlw"), *map(str, args)], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _key(out: str) -> str | None:
    "The API key `mlw keys create` printed: the whole output if one token, else its longest key-like token."
    toks = out.split()
    if len(toks) == 1: return toks[0]
    keys = [t for t in toks if len(t) >= 20 and re.fullmatch(r"[A-Za-z0-9_\-.~+/=]+", t)]
    return max(keys, key=len) if keys else None


def _served(m: dict):
    from mlops_workbench.serving.model import load_served_model
    return load_served_model(m["ws"], f"{NAME}@candidate")


def gateway_row(m: dict, row: dict) -> dict:
    "The features row as the gateway's schema takes it (booleans as true/false: the training frame holds them as numbers)."
    sm = _served(m)
    return {f: bool(v) if sm.types.get(f) == "boolean" else v for f, v in row.items()}


def entity_row(m: dict, row: dict) -> dict:
    "The row as a caller holding only entity keys sends it: join keys, request data and the inputs the store does not hold."
    sm = _served(m)
    fields = dict.fromkeys(sm.entity_keys + list(sm.service.request) + sm.request_features)
    return gateway_row(m, {f: row[f] for f in fields})


def run_gateway(b: Bench, m: dict, row: dict):
    "Our gateway with auth on: a row of features, and a row of entity keys. Skipped with a note until `mlw serve` exists."
    name = "gateway (mlw serve)"
    if not (BIN / "mlw").exists(): return b.skip(name, "gateway", f"{BIN / 'mlw'} not found (pip install -e . in the venv)")
    help_ = _mlw("serve", "--help")
    if help_.returncode != 0:
        return b.skip(name, "gateway", f"`mlw serve` not available yet ({(help_.stderr or help_.stdout).strip().splitlines()[-1].split(';')[0][:100]})")
    ws_root = str(m["ws"].root)
    made = _mlw("keys", "create", "bench", "--role", "predictor", "--workspace", ws_root)
    key = _key(made.stdout) if made.returncode == 0 else None
    if key is None:
        why = (made.stderr or made.stdout).strip()[-300:] or "no key in its output"
        raise RuntimeError(f"`mlw keys create bench --role predictor` gave no key: {why}")
    from mlops_workbench.features.online import materialize
    for view in _served(m).service.views: materialize(m["ws"], view)  # what entity-key requests read
    h = help_.stdout + help_.stderr
    extra = (["--host", "127.0.0.1"] if "--host" in h else []) + (["--workers", "1"] if "--workers" in h else [])
    port = free_port()
    s = b.start(name, [BIN / "mlw", "serve", f"{NAME}@candidate", "--port", port, "--workspace", ws_root, *extra])
    url, headers = f"http://127.0.0.1:{port}/v1/models/{NAME}/predict", {"Authorization": f"Bearer {key}"}
    b.add(f"{name}, features in the request", "gateway", s, url, {"rows": [gateway_row(m, row)]}, headers, expected=m["expected"], ready_s=90)
    b.add(f"{name}, entity keys (online features)", "gateway", s, url, {"rows": [entity_row(m, m["row"])]}, headers, ready_s=30,
          required=False, note="features from the online store; prediction not compared")


def summary(t: Target) -> dict:
    "Medians over the rounds; the spread of requests/s."
    rps = [r["rps"] for r in t.runs]
    errs = {}
    for r in t.runs:
        for k, v in r["errors"].items(): errs[k] = errs.get(k, 0) + v
    return {"rps": float(np.median(rps)), "lo": min(rps), "hi": max(rps), "p50": float(np.median([r["p50"] for r in t.runs])),
            "p99": float(np.median([r["p99"] for r in t.runs])), "errors": errs}


def report(b: Bench, a):
    done = {t.name: summary(t) for t in b.targets if t.runs and not t.error}
    kinds = {t.name: t.kind for t in b.targets}
    ml = next((s for n, s in done.items() if kinds[n] == "mlflow"), None)
    bare_name = max((n for n in done if kinds[n] == "bare"), key=lambda n: done[n]["rps"], default=None)
    bare = done.get(bare_name)
    rounds = f"medians of {a.repeat} interleaved rounds" if a.repeat > 1 else "one round"
    print(f"\nserving one row: {a.seconds:g} s per server per round ({rounds}) after {a.warmup:g} s of warm-up, wrk -t1 -c{a.connections}; "
          f"servers on core {b.cs}, wrk on core {b.cc}")
    print(f"  {'server':48s} {'req/s':>8s} {'(range)':>15s} {'p50 ms':>7s} {'p99 ms':>7s} {'x MLflow':>9s} {'x bare':>7s}")
    for t in b.targets:
        if t.name not in done:
            print(f"  {t.name:48s} {'FAILED' if t.required else 'not measured'}: {(t.error or 'no runs').splitlines()[0][:160]}"); continue
        s = done[t.name]
        xm = f"{s['rps'] / ml['rps']:8.1f}x" if ml else f"{'-':>9s}"
        xb = f"{s['rps'] / bare['rps']:6.2f}x" if bare else f"{'-':>7s}"
        errs = ", ".join(f"{k} {v}" for k, v in s["errors"].items())
        spread = f"{s['lo']:,.0f}-{s['hi']:,.0f}" if len(t.runs) > 1 else ""
        print(f"  {t.name:48s} {s['rps']:8,.0f} {spread:>15s} {s['p50']:7.2f} {s['p99']:7.2f} {xm} {xb}"
              + (f"  ({errs} errors)" if errs else "") + (f"  [{t.note}]" if t.note else ""))
    for name, kind, why in b.skipped: print(f"  {name:48s} skipped: {why}")
    if bare: print(f"  x bare: against the fastest bare app, {bare_name}")
    print(f"  issue 12 (its machine): MLflow {ISSUE['mlflow'][0]} req/s, p99 {ISSUE['mlflow'][1]}+ ms; "
          f"bare Starlette {ISSUE['bare'][0]:,} req/s, p99 {ISSUE['bare'][1]} ms")
    print(f"  {AIM}")
    pick = lambda key: next((done[n] for n in done if key in n), None)
    uv, gr, h11 = pick("uvloop + httptools"), pick("granian"), pick("asyncio + h11")
    if uv and gr:
        (fn, f), (sn, sl) = sorted([("granian", gr), ("uvicorn (uvloop + httptools)", uv)], key=lambda p: -p[1]["rps"])
        print(f"\nframework: the bare app on {fn} serves {f['rps'] / sl['rps']:.2f}x the requests/s of {sn} "
              f"({f['rps']:,.0f} vs {sl['rps']:,.0f}); p50 {f['p50']:.2f} vs {sl['p50']:.2f} ms, p99 {f['p99']:.2f} vs {sl['p99']:.2f} ms")
    if uv and h11: print(f"  under uvicorn, uvloop + httptools against asyncio + h11: {uv['rps'] / h11['rps']:.2f}x the requests/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5, help="measured seconds per server per round")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; every server is measured once per round, in turn")
    ap.add_argument("--warmup", type=float, default=3, help="warm-up seconds per server (discarded)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--calls", type=int, default=20000, help="in-process predict calls")
    ap.add_argument("--quick", action="store_true", help="a smoke run: one round of 2 s per server after 1 s of warm-up, fewer calls")
    a = ap.parse_args()
    if a.quick: a.seconds, a.warmup, a.repeat, a.calls = 2, 1, 1, 2000
    if not shutil.which("wrk"): sys.exit("wrk not found: install the Debian package wrk (apt-get install -y wrk)")
    cores = cpus()
    cs, cc = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    if cs is None: print("only one core: server and wrk unpinned, sharing it", file=sys.stderr)
    else: os.sched_setaffinity(0, {cc})  # this process (training, in-process timing) off the servers' core; idle under load
    print(f"mlflow {pkg('mlflow')}, lightgbm {pkg('lightgbm')}, starlette {pkg('starlette')}, uvicorn {pkg('uvicorn')}, "
          f"uvloop {pkg('uvloop')}, httptools {pkg('httptools')}, granian {pkg('granian')}, "
          f"{subprocess.run(['wrk', '-v'], capture_output=True, text=True).stdout.split(' [')[0].strip()}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="mlw-bench-serving-"))
    b, m = Bench(a, tmp, cs, cc), None
    try:
        m = build_model(tmp, a.trees)
        print(f"model: {NAME} v{m['version']} ({m['booster'].num_trees()} trees, {len(m['info']['features'])} inputs) "
              f"built in {time.monotonic() - t0:.0f} s; one row -> {m['expected']:.6f}\n")
        row = {f: m["row"][f] for f in m["info"]["features"]}  # named values, text as text: the gateway's body
        print("servers:", flush=True)
        run_mlflow(b, m)  # each starts its server(s) now; they load their models side by side
        run_bare(b, m, row)
        try: run_gateway(b, m, row)
        except Exception as e:
            print(f"  gateway (mlw serve): FAILED: {e}", flush=True)
            b.targets.append(Target("gateway (mlw serve)", "gateway", None, "", {}, expected=None)); b.targets[-1].error = str(e)
        in_process(m, a.calls)  # while the servers start (they are on core 0; this process is not pinned)
        print("\nchecking each server's answer, warming up:", flush=True)
        b.check()
        print(f"\nloading ({a.repeat} round{'s' * (a.repeat > 1)}):", flush=True)
        b.load()
        report(b, a)
    finally:
        b.stop_all()
        if m is not None: m["ws"].close()
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"\n{time.monotonic() - t0:.0f} s in all; load average now {load:.1f} on {os.cpu_count()} cores"
          + (": other work shared the machine, compare within this run only" if load > os.cpu_count() else ""))
    if b.failed: sys.exit(f"{len(b.failed)} server(s) failed: {', '.join(t.name for t in b.failed)}")


if __name__ == "__main__":
    main()
