"""Feature retrieval: our feature store against Feast and a bare polars `join_asof`, side by side in one run.

Run: .venv/bin/python bench/features.py [--quick] [--skip-feast] [--skip-ours] [--skip-online] [--skip-windows] [--repeat 3]
                                        [--repeat-large 3] [--feast-repeat-large 1] [--workdir DIR]

Offline (point-in-time training data), for 100k entity rows against a 1M-row feature view and 1M against 10M
(--quick: 10k against 100k only). Three sides on the same parquet files:

  bare   polars alone: read the view's parquet, sort both frames by time, `join_asof(on=event_timestamp,
         by=customer_id, strategy="backward", tolerance=ttl)`, back to the entity rows' input order (the floor)
  ours   `get_training_data(ws, entity_df, "bench_svc")` on the view built by `build_features` (the Delta build is not timed)
  bare prepared  the same join from ours' starting point: the view read and sorted by time once, before the clock
  Feast  `FeatureStore.get_historical_features(entity_df, features=service).to_df()`, file offline store, in its own venv
         (bench/.feast-venv, created by this script when missing) through bench/_feast_worker.py

`bare` and `ours` run alternately in one process (a subprocess of this script; peak RSS is VmHWM, each process's own:
bench/_memory.py), Feast in another, one after the other. Each side gets one untimed warm-up, then --repeat timed
runs (1M x 10M: --repeat-large, and --feast-repeat-large for Feast, ~45 s a run there); the median is reported, every run shown:
these shared 2-core VMs swing run to run, so read the ratios and the spread, not one absolute figure.

Data: customers = view rows / 10, view rows at random microsecond times over 2025, 5 features (f1, f3 f64; f2 f32;
f4 i64; f5 i32); entity rows (row_id, customer_id, event_timestamp, label) at random times over 2025, 2% of them for
customers the view never saw; TTL 30 days, so about 45% of entity rows have no feature value within the TTL.
Semantics: ours and bare keep every entity row (nulls where no value within the TTL); Feast's file offline store
DROPS entity rows whose customer has rows but none within the TTL (it keeps, with nulls, those of unknown customers).
The check: ours must equal bare on every row, and Feast on every row Feast returns (sorted by row_id, each column
NaN read as null, compared exactly in a dtype holding both sides' values: ns timestamps, Float64 for
Feast's float copies of integer features); Feast's dropped rows must be exactly ours' null rows of known
customers. Any difference exits non-zero.

Windows (the first size only; --skip-windows leaves them out): a second view over the same parquet with five windowed
aggregations (f1 sum 7d, f4 count 30d, f3 mean 7d, f2 max 1d, f1 std 30d) and f1, TTL 30 days, each window ending at the
entity row's own time, (t - w, t]. Two sides, alternating in the same process as bare and ours:

  bare windows   polars alone: the bare as-of join above for which rows have a value within the TTL, plus the
                 windows by brute force: entity rows joined to every view row of their customer (about 10 a customer),
                 filtered to each window, aggregated per entity row
  ours windows   `get_training_data(ws, entity_df, "bench_wsvc")` (the view's offline build, with its per-instant
                 partials, is not timed; its build time is printed)

Feast has no windowed aggregations in its file offline store, so it has no side here. The check: equal on every row
(counts and the max exactly, sums, means and std to 1e-9 relative: the two sum in another order). Online, the
windowed service is also timed on our stores (materialized up to 2026-01-01 and looked up at that time).

Online: `get_online_features` for 1 and 100 entities per call (5,000 and 1,000 calls, the same random customers for
every store, after 20 warm-up calls), p50 and p99 per call, on our SQLite store, our Redis store (a redis-server
started by this script on a free loopback port, no persistence) and Feast's sqlite online store, all materialized from
the small size's view. Every call's answer is compared between ours and Feast (and between our two stores).
"""
import argparse, datetime as dt, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time, warnings
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _memory import HOW, peak_rss  # noqa: E402
FEAST_VENV = HERE / ".feast-venv"
FEAST_PY = FEAST_VENV / "bin" / "python"
WORKER = HERE / "_feast_worker.py"
FEAST_SPEC = "feast==0.67.*"
TTL_DAYS = 30
FEATURES = ["f1", "f2", "f3", "f4", "f5"]
SIZES = [(100_000, 1_000_000), (1_000_000, 10_000_000)]
QUICK = [(10_000, 100_000)]
ONLINE_CALLS = {"1": 5000, "100": 1000}
WINDOWS = [("f1", "sum", "7d"), ("f4", "count", "30d"), ("f3", "mean", "7d"), ("f2", "max", "1d"), ("f1", "std", "30d")]
WINDOW_NAMES = [f"{c}_{f}_{w}" for c, f, w in WINDOWS]
WINDOWS_AT = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)  # online: materialized up to, and looked up at

warnings.filterwarnings("ignore", message="Sortedness of columns cannot be checked")


def mb(b: float) -> str: return f"{b / 2**20:,.0f} MB"
def human(n: int) -> str: return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


# ---------------------------------------------------------------- data
def make_data(n_ent: int, n_view: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    "(entity rows, view rows); both unique on (customer_id, event_timestamp), so no side has ties to break its own way."
    r = np.random.default_rng(seed)
    n_cust = max(n_view // 10, 1)
    start, span = np.datetime64("2025-01-01T00:00:00", "us").astype(np.int64), 365 * 86_400_000_000
    ts = lambda n: pl.Series(start + r.integers(0, span, n)).cast(pl.Datetime("us", "UTC"))
    view = pl.DataFrame({
        "customer_id": r.integers(0, n_cust, n_view), "event_timestamp": ts(n_view),
        "f1": r.standard_normal(n_view), "f2": r.standard_normal(n_view).astype(np.float32),
        "f3": np.round(r.lognormal(3, 1, n_view), 2), "f4": r.integers(0, 1_000_000, n_view),
        "f5": r.integers(0, 100, n_view).astype(np.int32)}).unique(["customer_id", "event_timestamp"], maintain_order=True)
    ent = pl.DataFrame({
        "customer_id": r.integers(0, int(n_cust * 1.02), n_ent), "event_timestamp": ts(n_ent),
        "label": r.integers(0, 2, n_ent).astype(np.int8)}).unique(["customer_id", "event_timestamp"], maintain_order=True)
    return ent.with_row_index("row_id").with_columns(pl.col("row_id").cast(pl.Int64)), view


def build_ours(ws_path: Path, view_path: Path, online: str | None = None, ttl: str | None = f"{TTL_DAYS}d"):
    "Our workspace over the view's parquet: dataset, definitions, the offline build. Returns the open Workspace."
    from mlops_workbench.all import Workspace, write_dataset, Entity, FeatureView, FeatureService, apply, build_features
    ws = Workspace.init(ws_path, backends={"online": online} if online else None)
    write_dataset(ws, "bench_events", pl.scan_parquet(view_path), source={"kind": "bench", "location": "generated"})
    apply(ws, Entity("customer", join_keys=["customer_id"]),
          FeatureView("bench_fv", entity="customer", source="bench_events", timestamp="event_timestamp",
                      features={k: pl.col(k) for k in FEATURES}, ttl=ttl),
          FeatureService("bench_svc", features=["bench_fv"]))
    build_features(ws, "bench_fv")
    return ws


def build_windows(ws, ttl: str | None = f"{TTL_DAYS}d"):
    "The windowed view and its service in workspace `ws` (over the same dataset), built."
    from mlops_workbench.all import FeatureView, FeatureService, Aggregation, apply, build_features
    apply(ws, FeatureView("bench_wfv", entity="customer", source="bench_events", timestamp="event_timestamp", features={"f1": pl.col("f1")},
                          aggregations=[Aggregation(c, f, w) for c, f, w in WINDOWS], ttl=ttl),
          FeatureService("bench_wsvc", features=["bench_wfv"]))
    build_features(ws, "bench_wfv")


def step_prepare(d: Path, n_ent: int, n_view: int, skip_ours: bool, windows: bool) -> dict:
    t = time.perf_counter()
    ent, view = make_data(n_ent, n_view)
    ent.write_parquet(d / "entities.parquet"), view.write_parquet(d / "view.parquet")
    out = dict(entities=ent.height, view=view.height, customers=view["customer_id"].n_unique(), generate_s=time.perf_counter() - t)
    if not skip_ours:
        t = time.perf_counter()
        ws = build_ours(d / "ws", d / "view.parquet")
        out["build_s"] = time.perf_counter() - t
        if windows:
            t = time.perf_counter(); build_windows(ws); out["windows_build_s"] = time.perf_counter() - t
        ws.close()
    return out


# ---------------------------------------------------------------- offline sides
def bare(entities: pl.DataFrame, view_path: Path) -> pl.DataFrame:
    "The floor: what a hand-written polars point-in-time join costs, input order restored."
    view = pl.read_parquet(view_path).sort("event_timestamp")
    return (entities.with_row_index("__i").sort("event_timestamp")
            .join_asof(view, on="event_timestamp", by="customer_id", strategy="backward", tolerance=dt.timedelta(days=TTL_DAYS))
            .sort("__i").drop("__i"))


def bare_prepared(entities: pl.DataFrame, view: pl.DataFrame) -> pl.DataFrame:
    "The bare join from the starting point ours has: the view already read and sorted by time (prepared once, not timed)."
    return (entities.with_row_index("__i").sort("event_timestamp")
            .join_asof(view, on="event_timestamp", by="customer_id", strategy="backward", tolerance=dt.timedelta(days=TTL_DAYS))
            .sort("__i").drop("__i"))


def bare_windows(entities: pl.DataFrame, view_path: Path) -> pl.DataFrame:
    "The windows by brute force: every view row of the entity row's customer, filtered to each window, aggregated per entity row."
    found = bare(entities, view_path).select("row_id", "f1")  # a value within the TTL: else every feature of the view is null
    view = pl.read_parquet(view_path).select("customer_id", pl.col("event_timestamp").alias("__ft"), "f1", "f2", "f3", "f4")
    widest = max(dt.timedelta(days=int(w[:-1])) for _, _, w in WINDOWS)
    pairs = (entities.select("row_id", "customer_id", "event_timestamp").join(view, on="customer_id")
             .filter((pl.col("__ft") <= pl.col("event_timestamp")) & (pl.col("__ft") > pl.col("event_timestamp") - widest)))
    inside = lambda w: pl.col("__ft") > pl.col("event_timestamp") - dt.timedelta(days=int(w[:-1]))
    aggs = pairs.group_by("row_id").agg([getattr(pl.col(c).filter(inside(w)), "len" if f == "count" else f)().alias(f"{c}_{f}_{w}")
                                         for c, f, w in WINDOWS])
    out = entities.join(found, on="row_id", how="left").join(aggs, on="row_id", how="left")
    known = pl.col("f1").is_not_null()
    return out.with_columns([pl.when(known).then(pl.col(n).fill_null(0) if n.split("_")[1] in ("sum", "count") else pl.col(n)).alias(n)
                             for n in WINDOW_NAMES]).sort("row_id")


def step_offline(d: Path, repeat: int, skip_ours: bool, windows: bool) -> dict:
    "bare and ours (and their windowed sides) alternately in this one process: one warm-up each (ours first, for its peak RSS), then `repeat` rounds."
    entities = pl.read_parquet(d / "entities.parquet")
    out = dict(loaded_rss=peak_rss())
    sides = {}
    if not skip_ours:
        from mlops_workbench.all import Workspace, get_training_data
        ws = Workspace.open(d / "ws")
        sides["ours"] = lambda: get_training_data(ws, entities, "bench_svc").data
        if windows: sides["ours windows"] = lambda: get_training_data(ws, entities, "bench_wsvc").data
    sides["bare"] = lambda: bare(entities, d / "view.parquet")
    prepared = pl.read_parquet(d / "view.parquet").sort("event_timestamp")  # ours reads a table built beforehand: so may bare
    sides["bare prepared"] = lambda: bare_prepared(entities, prepared)
    if windows and not skip_ours: sides["bare windows"] = lambda: bare_windows(entities, d / "view.parquet")
    res = {}
    for name, fn in sides.items():
        res[name] = fn()
        out[f"{name}_rss"] = peak_rss()  # the process's peak after this side's warm-up (ours runs first)
    times = {k: [] for k in sides}
    for _ in range(repeat):
        for name, fn in reversed(sides.items()):
            del res[name]
            t = time.perf_counter(); res[name] = fn(); times[name].append(time.perf_counter() - t)
    for name, df in res.items(): df.write_parquet(d / f"{name.replace(' ', '_')}.parquet")
    return dict(out, seconds=times, rows={k: v.height for k, v in res.items()}, peak_rss=peak_rss())


def run_step(*args) -> dict:
    res = subprocess.run([sys.executable, __file__, "--step", *map(str, args)], capture_output=True, text=True)
    if res.returncode: raise SystemExit(f"step {args[0]} failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- Feast
def ensure_feast() -> str:
    "bench/.feast-venv with Feast (the file offline store and sqlite online store need nothing beyond `feast` itself)."
    probe = lambda: subprocess.run([str(FEAST_PY), "-c", "import feast; print(feast.__version__)"], capture_output=True, text=True)
    if FEAST_PY.exists() and (p := probe()).returncode == 0: return p.stdout.strip()
    print(f"creating {FEAST_VENV.relative_to(HERE.parent)} and installing {FEAST_SPEC} (about a minute) ...", flush=True)
    shutil.rmtree(FEAST_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(FEAST_VENV)], check=True)
    pip = [str(FEAST_PY), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if subprocess.run(pip + [FEAST_SPEC]).returncode:
        print(f"  {FEAST_SPEC} did not install; trying the newest feast the registry serves", flush=True)
        subprocess.run(pip + ["feast"], check=True)
    p = probe()
    if p.returncode: raise SystemExit(f"feast does not import in {FEAST_VENV}:\n{p.stderr[-2000:]}")
    return p.stdout.strip()


def feast(mode: str, d: Path, inp: Path, out: Path, *extra, ttl_days: float = TTL_DAYS) -> dict:
    repo = d / f"feast-{mode}"
    shutil.rmtree(repo, ignore_errors=True)
    res = subprocess.run([str(FEAST_PY), str(WORKER), mode, str(repo), str(d / "view.parquet"), str(inp), str(out),
                          "--ttl-days", str(ttl_days), *map(str, extra)], capture_output=True, text=True,
                         env={**os.environ, "FEAST_USAGE": "False", "PYTHONWARNINGS": "ignore"})
    if res.returncode: raise SystemExit(f"Feast worker ({mode}) failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the checks
def _norm(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    "`df`'s `columns` sorted by row_id, NaN read as null (Feast's pandas frames mark missing values with NaN)."
    return df.select([pl.col(k).fill_nan(None) if df.schema[k].is_float() else pl.col(k) for k in columns]).sort("row_id")


def _common(a: pl.Series, b: pl.Series) -> tuple[pl.Series, pl.Series]:
    "Both columns in one dtype that holds each exactly: the finer time unit, Float64 for an int column against a float one."
    ta, tb = a.dtype, b.dtype
    if ta == tb: return a, b
    if isinstance(ta, pl.Datetime) and isinstance(tb, pl.Datetime):
        t = pl.Datetime("ns", "UTC")
        return a.dt.convert_time_zone("UTC").cast(t), b.dt.convert_time_zone("UTC").cast(t)
    if ta.is_numeric() and tb.is_numeric():
        for s in (a, b):  # integers beyond 2**53 have no exact Float64
            if s.dtype.is_integer() and s.len() and (s.abs().max() or 0) >= 2**53: raise SystemExit(f"column {s.name}: integers too large to compare as floats")
        return a.cast(pl.Float64), b.cast(pl.Float64)
    raise SystemExit(f"column {a.name}: cannot compare {ta} with {tb}")


def differences(a: pl.DataFrame, b: pl.DataFrame, what: str) -> list[str]:
    "Column-by-column exact comparison of two frames of the same rows sorted alike (nulls equal nulls)."
    if a.height != b.height: return [f"{what}: {a.height:,} rows against {b.height:,}"]
    out = []
    for k in a.columns:
        x, y = _common(a[k], b[k])
        if n := int((~x.eq_missing(y)).sum()):
            out.append(f"{what}: column {k} ({a.schema[k]} against {b.schema[k]}) differs on {n:,} rows "
                       f"(first row_id {a.filter(~x.eq_missing(y))['row_id'][0]})")
    return out


def check_offline(d: Path, with_ours: bool, feast_out: Path | None) -> dict:
    "Ours against bare on every row; Feast against ours (or bare) on Feast's rows; Feast's drops explained."
    ref_name = "ours" if with_ours else "bare"
    columns = ["row_id", "customer_id", "event_timestamp", "label", *FEATURES]
    ref = _norm(pl.read_parquet(d / f"{ref_name}.parquet"), columns)
    errors, out = [], {}
    if with_ours:
        errors += differences(ref, _norm(pl.read_parquet(d / "bare.parquet"), columns), "ours against bare")
    errors += differences(_norm(pl.read_parquet(d / "bare.parquet"), columns), _norm(pl.read_parquet(d / "bare_prepared.parquet"), columns), "bare against bare prepared")
    out["null_rows"] = int(ref["f1"].is_null().sum())
    if feast_out is not None:
        f = _norm(pl.read_parquet(feast_out), columns)
        known = pl.scan_parquet(d / "view.parquet").select(pl.col("customer_id").unique()).collect()
        dropped = ref.join(f.select("row_id"), on="row_id", how="anti")
        expected = ref.filter(pl.col("f1").is_null()).join(known, on="customer_id", how="semi")
        errors += differences(ref.join(f.select("row_id"), on="row_id", how="semi"), f, f"Feast against {ref_name} on Feast's rows")
        if not dropped["row_id"].equals(expected["row_id"]):
            errors.append(f"Feast dropped {dropped.height:,} rows; {ref_name} has {expected.height:,} rows of known customers without a value in the TTL, "
                          "and the two sets differ")
        out.update(feast_rows=f.height, feast_dropped=dropped.height, feast_nulls_kept=int(f["f1"].is_null().sum()))
    out["errors"] = errors
    return out


def check_windows(d: Path) -> list[str]:
    "Ours against the brute force on every entity row: counts and max exactly, sums, means and std to 1e-9 relative."
    a = pl.read_parquet(d / "ours_windows.parquet").sort("row_id")
    b = pl.read_parquet(d / "bare_windows.parquet").sort("row_id")
    if a.height != b.height or not a["row_id"].equals(b["row_id"]): return [f"windows: {a.height:,} rows against {b.height:,}"]
    out = []
    for n in ["f1", *WINDOW_NAMES]:
        x, y = a[n].cast(pl.Float64), b[n].cast(pl.Float64)
        near = ((x - y).abs() <= 1e-9 * (x.abs() + y.abs()) / 2) if n.split("_")[1:2] in (["sum"], ["mean"], ["std"]) else x == y
        bad = ~(near.fill_null(False) | (x.is_null() & y.is_null()))
        if k := int(bad.sum()):
            r = a.filter(bad)["row_id"][0]
            out.append(f"windows: column {n} differs on {k:,} rows (first row_id {r}: ours {a.filter(pl.col('row_id') == r)[n][0]}, "
                       f"bare {b.filter(pl.col('row_id') == r)[n][0]})")
    return out


# ---------------------------------------------------------------- online
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def start_redis(d: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    (d / "redis").mkdir(exist_ok=True)
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--dir", str(d / "redis")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"): return p, f"redis://127.0.0.1:{port}/0"
        except OSError: time.sleep(.05)
    p.kill(); raise SystemExit("redis-server did not start")


def step_online(d: Path, name: str, online_uri: str, keys_path: Path, windows: bool) -> dict:
    "A workspace whose online store is `online_uri`: build, materialize (timed), then per-call latencies of `get_online_features`."
    from mlops_workbench.all import materialize, get_online_features
    # no TTL on the online side: Feast applies none at read time, ours would (relative to the lookup time, and the data
    # are from 2025); without one both read, decode and return every value
    ws = build_ours(d / f"ws-online-{name}", d / "view.parquet", None if online_uri == "default" else online_uri, ttl=None)
    t = time.perf_counter(); materialize(ws, "bench_fv"); mat = time.perf_counter() - t
    keys = json.loads(keys_path.read_text())
    def latencies(svc, now=None):
        lat, answers = {}, {}
        for n, batches in keys.items():
            rows = [[{"customer_id": k} for k in b] for b in batches]
            for r in rows[:20]: get_online_features(ws, svc, r, now=now).to_dict()
            out, got = [], []
            for r in rows:
                t = time.perf_counter_ns(); ans = get_online_features(ws, svc, r, now=now).to_dict(); out.append((time.perf_counter_ns() - t) / 1e3)
                got.append(ans)  # every call's answer is compared with Feast's, not only the first
            lat[n], answers[n] = out, got
        return lat, answers
    lat, answers = latencies("bench_svc")
    res = dict(materialize_s=mat, latency_us=lat, answers=answers)
    if windows:  # windows end at the lookup time: materialized up to WINDOWS_AT and looked up then, inside the data's reach
        build_windows(ws, ttl=None)
        t = time.perf_counter(); materialize(ws, "bench_wfv", end=WINDOWS_AT); wmat = time.perf_counter() - t
        res["windows"] = dict(materialize_s=wmat, latency_us=latencies("bench_wsvc", WINDOWS_AT)[0])
    ws.close()
    return dict(res, peak_rss=peak_rss())


def pct(xs, q) -> float: return float(np.percentile(np.asarray(xs), q))


def compare_answers(ours: dict, theirs: dict) -> list[str]:
    "Feature values of the same entity rows: Feast's float32 values come back as Python floats of the f32 value, as ours should."
    errs = []
    for k in ["customer_id", *FEATURES]:
        a, b = ours.get(k), theirs.get(k)
        if a is None or b is None: errs.append(f"column {k} missing ({'ours' if a is None else 'Feast'})"); continue
        if [None if x != x else x for x in a] != [None if x != x else x for x in b]:
            i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
            errs.append(f"column {k} differs, first at entity {i}: ours {a[i]!r}, Feast {b[i]!r}")
    return errs


# ---------------------------------------------------------------- the run
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k entity rows against 100k view rows only")
    ap.add_argument("--skip-feast", action="store_true", help="only ours against the bare join_asof")
    ap.add_argument("--skip-ours", action="store_true", help="only Feast against the bare join_asof (before our feature store exists)")
    ap.add_argument("--skip-online", action="store_true")
    ap.add_argument("--skip-windows", action="store_true", help="no windowed-aggregation sides (offline and online)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per side, small sizes (median reported)")
    ap.add_argument("--repeat-large", type=int, default=3, help="timed runs of bare and ours for 1M x 10M")
    ap.add_argument("--feast-repeat-large", type=int, default=1, help="timed runs of Feast for 1M x 10M (~45 s each here)")
    ap.add_argument("--workdir", help="keep the data and results here instead of a temporary folder")
    ap.add_argument("--step"), ap.add_argument("--dir"), ap.add_argument("args", nargs="*")
    a = ap.parse_args()
    if a.step:
        d = Path(a.dir)
        if a.step == "prepare": res = step_prepare(d, int(a.args[0]), int(a.args[1]), a.args[2] == "1", a.args[3] == "1")
        elif a.step == "offline": res = step_offline(d, int(a.args[0]), a.args[1] == "1", a.args[2] == "1")
        else: res = step_online(d, a.args[0], a.args[1], Path(a.args[2]), a.args[3] == "1")
        print(json.dumps(res, default=str)); return

    t_start = time.perf_counter()
    tmp = Path(a.workdir or tempfile.mkdtemp(prefix="mlw-bench-features-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try: run(a, tmp, t_start)
    finally:
        if not a.workdir: shutil.rmtree(tmp, ignore_errors=True)  # whatever happened, nothing is left in /tmp


def run(a, tmp: Path, t_start: float):
    "The whole comparison, its data under `tmp`."
    feast_version = None if a.skip_feast else ensure_feast()
    sizes = QUICK if a.quick else SIZES
    print(f"feature retrieval bench: {os.cpu_count()} CPUs; polars {pl.__version__}; "
          f"{'Feast ' + feast_version + ' (file offline store, sqlite online store; bench/.feast-venv)' if feast_version else 'Feast skipped'}; "
          f"TTL {TTL_DAYS}d; load average {os.getloadavg()[0]:.2f}", flush=True)
    print(f"  {HOW}", flush=True)
    print(f"  one untimed warm-up per side, then the median of the timed runs ({a.repeat} small; {a.repeat_large} for 10M-row views, "
          f"{a.feast_repeat_large} for Feast there); "
          "bare and ours alternate in one process, Feast runs in its own, one after the other", flush=True)
    failed = []
    rows_out = []
    windows_out = None
    for n_ent, n_view in sizes:
        d = tmp / f"{human(n_ent)}x{human(n_view)}"
        d.mkdir(exist_ok=True)
        windows = not a.skip_windows and not a.skip_ours and (n_ent, n_view) == sizes[0]
        prep = run_step("prepare", "--dir", d, n_ent, n_view, int(a.skip_ours), int(windows))
        repeat = a.repeat_large if n_view >= 10_000_000 else a.repeat
        off = run_step("offline", "--dir", d, repeat, int(a.skip_ours), int(windows))
        feast_repeat = a.feast_repeat_large if n_view >= 10_000_000 else a.repeat
        fz = None if a.skip_feast else feast("offline", d, d / "entities.parquet", d / "feast.parquet", "--repeat", feast_repeat)
        chk = check_offline(d, not a.skip_ours, None if fz is None else d / "feast.parquet")
        med = {k: statistics.median(v) for k, v in off["seconds"].items()}
        med["_runs"] = off["seconds"]
        if fz: med["feast"] = statistics.median(fz["seconds"])
        label = f"{human(n_ent)} x {human(n_view)}"
        print(f"\n{label}: {prep['entities']:,} entity rows, {prep['view']:,} view rows, {prep['customers']:,} customers; "
              f"{chk['null_rows']:,} entity rows without a value in the TTL (data {prep['generate_s']:.1f} s"
              + (f", our dataset + offline build {prep['build_s']:.1f} s, not timed)" if "build_s" in prep else ")"), flush=True)
        runs = lambda v: ", ".join(f"{x:.3f}" for x in v)
        print(f"  runs (s): bare {runs(off['seconds']['bare'])}" + (f"; ours {runs(off['seconds']['ours'])}" if "ours" in med else "")
              + (f"; Feast {runs(fz['seconds'])}" if fz else ""))
        print(f"  peak RSS: bare+ours process {mb(off['peak_rss'])} (entity rows loaded {mb(off['loaded_rss'])}"
              + (f"; after ours' first run {mb(off['ours_rss'])}" if "ours_rss" in off else "") + ")"
              + (f"; Feast worker {mb(fz['peak_rss'])} (entity rows loaded {mb(fz['loaded_rss'])})" if fz else ""))
        if fz:
            print(f"  Feast returned {chk['feast_rows']:,} rows: it dropped {chk['feast_dropped']:,} entity rows of known customers with no value "
                  f"in the TTL and kept {chk['feast_nulls_kept']:,} of unknown customers with nulls; compared on Feast's rows, "
                  f"its dropped rows checked to be exactly our null rows of known customers")
        for e in chk["errors"]: print(f"  MISMATCH {e}")
        if chk["errors"]: failed.append(label)
        rows_out.append((label, med, off["rows"], chk))
        if windows:
            werr = check_windows(d)
            for e in werr: print(f"  MISMATCH {e}")
            if werr: failed.append(f"{label} windows")
            windows_out = (label, med, prep.get("windows_build_s"), werr)

    print(f"\noffline, median seconds (aim: ours/bare <= 1.3, Feast/ours >= 5)")
    print(f"  {'entity x view':16s} {'bare s':>8s} {'ours s':>8s} {'Feast s':>8s} {'ours/bare':>10s} {'Feast/ours':>11s} {'rows ours / Feast':>20s}  identical")
    for label, med, rows, chk in rows_out:
        o, b, f = med.get("ours"), med["bare"], med.get("feast")
        n_rows = (f"{rows['ours']:,}" if "ours" in rows else f"{rows['bare']:,} (bare)") + " / " + (f"{chk['feast_rows']:,}" if "feast_rows" in chk else "-")
        print(f"  {label:16s} {b:8.3f} {f'{o:.3f}' if o else '-':>8s} {f'{f:.3f}' if f else '-':>8s} {f'{o / b:.2f}x' if o else '-':>10s} "
              f"{f'{f / o:.1f}x' if f and o else '-':>11s} {n_rows:>20s}  {'no' if chk['errors'] else 'yes'}")
    print("  bare: from the raw parquet, read and sorted every call; ours: from the offline table `build_features` made beforehand.")
    print("  From the same starting point (the view already read and sorted, not timed), bare prepared:")
    for label, med, rows, chk in rows_out:
        if "ours" in med: print(f"  {label:16s} bare prepared {med['bare prepared']:.3f} s; ours/bare prepared {med['ours'] / med['bare prepared']:.2f}x "
                                f"(bare prepared/bare {med['bare prepared'] / med['bare']:.2f}x); equal to bare: {'no' if chk['errors'] else 'yes'}")

    if windows_out:
        label, med, build_s, werr = windows_out
        o, b = med["ours windows"], med["bare windows"]
        print(f"\noffline windows ({', '.join(WINDOW_NAMES)}; each ending at the entity row's time), median seconds; "
              f"our windowed build {build_s:.1f} s, not timed")
        print(f"  {'entity x view':16s} {'bare s':>8s} {'ours s':>8s} {'ours/bare':>10s}  identical")
        print(f"  {label:16s} {b:8.3f} {o:8.3f} {o / b:9.2f}x  {'no' if werr else 'yes'}")
        print(f"  runs (s): bare windows {', '.join(f'{x:.3f}' for x in med['_runs']['bare windows'])}; "
              f"ours windows {', '.join(f'{x:.3f}' for x in med['_runs']['ours windows'])}")

    if not a.skip_online:
        d = tmp / f"{human(sizes[0][0])}x{human(sizes[0][1])}"
        view_ids = pl.scan_parquet(d / "view.parquet").select(pl.col("customer_id").unique().sort()).collect()["customer_id"].to_numpy()
        r = np.random.default_rng(1)
        keys = {n: [r.choice(view_ids, int(n), replace=False).tolist() for _ in range(calls)] for n, calls in ONLINE_CALLS.items()}
        (d / "keys.json").write_text(json.dumps(keys))
        print(f"\nonline get_online_features: {len(view_ids):,} customers materialized from {d.name}'s view; "
              f"{', '.join(f'{c:,} calls of {n}' for n, c in ONLINE_CALLS.items())} entities, 20 warm-up calls each; microseconds per call", flush=True)
        res = {}
        if not a.skip_ours:
            w = int(not a.skip_windows)
            res["ours sqlite"] = run_step("online", "--dir", d, "sqlite", "default", d / "keys.json", w)
            redis, uri = start_redis(tmp)
            try: res["ours redis"] = run_step("online", "--dir", d, "redis", uri, d / "keys.json", w)
            finally: redis.terminate(); redis.wait(10)
            for store in ("sqlite", "redis"):  # the windowed service: rows of their own, no Feast ratio
                if "windows" in res[f"ours {store}"]: res[f"ours {store} +w"] = dict(res[f"ours {store}"]["windows"], peak_rss=res[f"ours {store}"]["peak_rss"])
        if not a.skip_feast:
            res["Feast sqlite"] = feast("online", d, d / "keys.json", d / "feast-online.json", ttl_days=0)
            res["Feast sqlite"]["answers"] = json.loads((d / "feast-online.json").read_text())
        fz = res.get("Feast sqlite")
        print(f"  {'store':14s} {'entities':>8s} {'p50 us':>9s} {'p99 us':>9s} {'Feast p50/ours':>15s} {'Feast p99/ours':>15s}  materialize, peak RSS")
        for name, x in res.items():
            for n in ONLINE_CALLS:
                p50, p99 = pct(x["latency_us"][n], 50), pct(x["latency_us"][n], 99)
                vs = lambda q, v: f"{pct(fz['latency_us'][n], q) / v:14.1f}x" if fz and x is not fz and "answers" in x else f"{'-':>15s}"
                print(f"  {name:14s} {n:>8s} {p50:9.0f} {p99:9.0f} {vs(50, p50)} {vs(99, p99)}  "
                      + (f"{x['materialize_s']:.1f} s, {mb(x['peak_rss'])}" if n == "1" else ""))
        print("  aims: Feast p99 / ours sqlite p99 >= 4x for 1 entity, >= 5x for 100; ours redis p99 < 1000 us for 1 entity"
              + ("; '+w': the windowed service (bench_wsvc, no Feast side), materialized up to and looked up at "
                 f"{WINDOWS_AT:%Y-%m-%d}" if any(k.endswith("+w") for k in res) else ""))
        if fz:
            for name, x in res.items():
                if x is fz or "answers" not in x: continue
                errs = [f"{n} entities, call {i}: {e}" for n in ONLINE_CALLS
                        for i, (mine, theirs) in enumerate(zip(x["answers"][n], fz["answers"][n], strict=True)) for e in compare_answers(mine, theirs)]
                calls = sum(len(x["answers"][n]) for n in ONLINE_CALLS)
                print(f"  {name} answers equal Feast's on every one of the {calls:,} calls: {'yes' if not errs else 'NO'}")
                for e in errs: print(f"  MISMATCH {name}: {e}")
                if errs: failed.append(f"online {name}")

    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; data in {tmp}" + ("" if a.workdir else " (removed)"))
    if failed: raise SystemExit(f"results differ: {', '.join(failed)}")


if __name__ == "__main__":
    main()
