"""Feast's side of bench/features.py. Runs inside bench/.feast-venv (Feast and its pandas/dask/pyarrow stack), never in the project venv.

  python _feast_worker.py offline REPO VIEW.parquet ENTITIES.parquet OUT.parquet --ttl-days 30 --repeat 3
      `get_historical_features(...).to_df()` with the file offline store: one untimed warm-up, then --repeat timed runs;
      writes the last result to OUT.parquet and prints one JSON line (seconds of each run, rows, peak RSS).
  python _feast_worker.py online REPO VIEW.parquet KEYS.json OUT.json --ttl-days 0
      `materialize` into the sqlite online store, then `get_online_features(...).to_dict()` once per call for each batch
      of entity ids in KEYS.json ({"1": [[id], ...], "100": [[id, ...], ...]}); writes the answer of each batch's first call
      to OUT.json and prints one JSON line (per-call latencies in microseconds, materialize seconds, peak RSS).

The feature view: entity `customer` (join key customer_id, INT64), features f1 f3 (Float64), f2 (Float32), f4 (Int64),
f5 (Int32), timestamp `event_timestamp`, the given TTL (0: none); a feature service `bench_svc` over it. REPO is a fresh folder for the
registry (file, cached forever) and the sqlite online store.
"""
import argparse, json, os, sys, time, warnings
from datetime import timedelta
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("FEAST_USAGE", "False")

import pandas as pd
import pyarrow.parquet as pq
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.types import Float32, Float64, Int32, Int64
from _memory import peak_rss  # bench/_memory.py: this process's own peak (VmHWM), not its parent's

FEATURES = {"f1": Float64, "f2": Float32, "f3": Float64, "f4": Int64, "f5": Int32}




def store(repo: Path, view: str, ttl_days: float) -> tuple[FeatureStore, FeatureService]:
    repo.mkdir(parents=True, exist_ok=True)
    cfg = RepoConfig(project="bench", provider="local", repo_path=repo, entity_key_serialization_version=3,
                     registry={"registry_type": "file", "path": str(repo / "registry.db"), "cache_ttl_seconds": 0},
                     offline_store={"type": "file"}, online_store={"type": "sqlite", "path": str(repo / "online.db")})
    fs = FeatureStore(config=cfg)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    fv = FeatureView(name="bench_fv", entities=[customer], ttl=timedelta(days=ttl_days), online=True,
                     schema=[Field(name=k, dtype=t) for k, t in FEATURES.items()],
                     source=FileSource(name="bench_events", path=str(Path(view).resolve()), timestamp_field="event_timestamp"))
    svc = FeatureService(name="bench_svc", features=[fv])
    fs.apply([customer, fv, svc])
    return fs, svc


def offline(a):
    fs, svc = store(Path(a.repo), a.view, a.ttl_days)
    # the entity frame is loaded before the clock, as for the other sides; pd.to_datetime(utc=True) gives the
    # pytz-UTC dtype that keeps Feast on its vectorised path (any other tz object makes it convert row by row)
    entities = pq.read_table(a.entities).to_pandas()
    entities["event_timestamp"] = pd.to_datetime(entities["event_timestamp"], utc=True)
    loaded = peak_rss()
    times, df = [], None
    for i in range(a.repeat + 1):  # run 0 is the untimed warm-up (registry load, dask start-up, file cache)
        del df
        t = time.perf_counter()
        df = fs.get_historical_features(entity_df=entities, features=svc).to_df()
        if i: times.append(time.perf_counter() - t)
    df.to_parquet(a.out, index=False)
    return dict(seconds=times, rows=len(df), columns=list(df.columns), peak_rss=peak_rss(), loaded_rss=loaded)


def online(a):
    fs, svc = store(Path(a.repo), a.view, a.ttl_days)
    ts = pq.read_table(a.view, columns=["event_timestamp"]).column(0).to_pandas()
    t = time.perf_counter()
    # every row of the view: [min, max + 1 s); Feast keeps the latest row per entity
    fs.materialize(start_date=ts.min().to_pydatetime(), end_date=(ts.max() + pd.Timedelta(seconds=1)).to_pydatetime())
    mat = time.perf_counter() - t
    keys = json.loads(Path(a.keys).read_text())
    lat, answers = {}, {}
    for n, batches in keys.items():
        rows = [[{"customer_id": int(k)} for k in b] for b in batches]
        for r in rows[:20]: fs.get_online_features(features=svc, entity_rows=r).to_dict()  # warm-up
        out, got = [], []
        for r in rows:
            t = time.perf_counter_ns()
            d = fs.get_online_features(features=svc, entity_rows=r).to_dict()
            out.append((time.perf_counter_ns() - t) / 1e3)
            got.append(d)  # every answer is compared with ours
        lat[n], answers[n] = out, got
    Path(a.out).write_text(json.dumps(answers))
    return dict(materialize_s=mat, latency_us=lat, peak_rss=peak_rss())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["offline", "online"])
    ap.add_argument("repo"), ap.add_argument("view"), ap.add_argument("input"), ap.add_argument("out")
    ap.add_argument("--ttl-days", type=float, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    a.entities = a.keys = a.input
    # Feast prints progress (materialize log, tqdm) on stdout: keep stdout for the one JSON line
    real, sys.stdout = sys.stdout, sys.stderr
    try: res = offline(a) if a.mode == "offline" else online(a)
    finally: sys.stdout = real
    print(json.dumps(res, default=str))


if __name__ == "__main__":
    main()
