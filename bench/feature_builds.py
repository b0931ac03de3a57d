"""Feature builds in key buckets: the view in one piece against key buckets in this process and on a Dask cluster.

Run: .venv/bin/python bench/feature_builds.py [--applications 40_000] [--buckets 4] [--workers 2] [--repeat 2]

The lending demo's view `customer_transactions` (3 row features, 9 windowed aggregations including a std), built
from the transactions of `generate_lending(--applications)` into the offline store, three ways on the same
workspace (a folder here; the team profile's bucket works the same way):

  one      `build_features(ws, view, compute="local://")`: the rows collected in this process and written in time
           order (the default when the view fits the memory budget)
  buckets  the same with a memory budget of 1/--buckets of what the source needs: --buckets key buckets computed one
           after another in this process, each writing its rows as the table's files, then one Delta commit of them
  dask     `compute="dask-local://?n_workers=--workers"`: one bucket per worker thread, each a task on a worker
           process that reads the source and writes its files itself; this process only commits them. The
           cluster's start is timed apart.

Each side runs in its own child process (one untimed warm-up build, then --repeat timed ones; the median is shown) so
that its peak memory is its own: the figure is the peak RSS above the RSS after the imports (bench/_memory.py's
VmHWM). For `dask` it is this process's peak only, not the workers'. Every build's rows are compared with the one
piece's (sorted by key and time): any difference exits non-zero. These shared 2-core VMs swing run to run: read
the ratios measured side by side.
"""
import argparse, json, math, os, shutil, statistics, subprocess, sys, tempfile, time, warnings
from pathlib import Path

VIEW = "customer_transactions"
DEFS = Path(__file__).resolve().parents[1] / "mlops_workbench/pipelines/definitions/lending_features.yaml"


def child(a):
    "One side's builds, in this process; prints a JSON line: wall times, peak memory above the imports, rows, and their hash."
    import polars as pl
    from _memory import peak_rss
    from mlops_workbench.core.compute import compute_backend
    from mlops_workbench.core.storage import dataset_version, read_dataset
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.features.offline import PARTITION, SOURCE_EXPANSION, build_features
    warnings.simplefilter("ignore")
    ws = Workspace.open(a.ws, env={})
    kw, start = {"compute": "local://"}, 0.0
    if a.child == "buckets": kw["memory_budget"] = math.ceil(dataset_version(ws, "transactions").bytes * SOURCE_EXPANSION / a.buckets)
    if a.child == "dask":
        t0 = time.perf_counter()
        kw["compute"], _ = compute_backend(ws, f"dask-local://?n_workers={a.workers}&threads_per_worker=1")
        kw["compute"].slots(); start = time.perf_counter() - t0
    base, times = peak_rss(), []
    for i in range(a.repeat + 1):
        t0 = time.perf_counter()
        b = build_features(ws, VIEW, **kw)
        if i: times.append(time.perf_counter() - t0)
    peak = peak_rss() - base
    rows = read_dataset(ws, b.table, b.table_version).drop(PARTITION).collect().sort("customer_id", "event_timestamp")
    buckets = dataset_version(ws, b.table, b.table_version).lineage["steps"][0]["buckets"]
    if a.child == "dask": kw["compute"].close()
    print(json.dumps({"times": times, "peak": peak, "start": start, "rows": rows.height, "buckets": buckets,
                      "hash": str(rows.hash_rows(seed=0).sum())}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--applications", type=int, default=40_000)
    ap.add_argument("--buckets", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", choices=["one", "buckets", "dask"])
    ap.add_argument("--ws")
    a = ap.parse_args()
    if a.child: return child(a)
    from mlops_workbench.core.storage import dataset_version, write_dataset
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.data.synthetic import generate_lending
    from mlops_workbench.features.definitions import apply, load_definitions
    tmp = Path(tempfile.mkdtemp(prefix="mlw-builds-"))
    try:
        ws = Workspace.init(tmp / "ws", env={})
        world = generate_lending(a.applications, seed=0)
        src = write_dataset(ws, "transactions", world.transactions, source={"kind": "bench", "location": "generate_lending"})
        apply(ws, *load_definitions(DEFS))
        ws.close()
        print(f"feature builds: view {VIEW!r} from {src.row_count:,} transactions ({src.bytes / 2**20:.1f} MiB of Parquet) of "
              f"{a.applications:,} applications; {a.repeat} timed builds a side; this machine has {os.cpu_count()} cores", flush=True)
        res = {}
        for side in ("one", "buckets", "dask"):
            out = subprocess.run([sys.executable, __file__, "--child", side, "--ws", str(tmp / "ws"), "--buckets", str(a.buckets),
                                  "--workers", str(a.workers), "--repeat", str(a.repeat)], capture_output=True, text=True,
                                 cwd=Path(__file__).parent)
            if out.returncode: sys.exit(f"side {side} failed:\n{out.stderr[-3000:]}")
            res[side] = json.loads(out.stdout.strip().splitlines()[-1])
        one = res["one"]
        print(f"\n  side     buckets | build (median)   x one | peak RSS above imports   x one | rows       | same rows | runs")
        for side, r in res.items():
            t, same = statistics.median(r["times"]), r["hash"] == one["hash"] and r["rows"] == one["rows"]
            print(f"  {side:8} {r['buckets']:7} | {t:12.2f} s {t / statistics.median(one['times']):7.2f} | {r['peak'] / 2**20:16.0f} MiB "
                  f"{r['peak'] / max(one['peak'], 1):7.2f} | {r['rows']:10,} | {'yes' if same else 'NO':9} | "
                  f"{', '.join(f'{x:.2f}' for x in r['times'])}" + (f" (cluster start {r['start']:.1f} s)" if r["start"] else ""), flush=True)
        if any(r["hash"] != one["hash"] or r["rows"] != one["rows"] for r in res.values()): sys.exit("the builds' rows differ")
        print("\n  x one: against the one-piece build; peak RSS: this process only (the dask side's workers hold its buckets).")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
