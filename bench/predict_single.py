"""In-process single-row prediction: `FastPredictor.predict_row` (LightGBM's single-row fast C API, serving.fast) against
`Booster.predict` and, when it can be installed, lleaves (compiled trees) on the same booster and rows; then what a
gateway pays per request in `ServedModel.predict` (serving.model) for one row by features, and by entity key through
the SQLite online store, beside the online read alone.

Run: .venv/bin/python bench/predict_single.py [--trees 200] [--calls 3000] [--lleaves-python PATH]
lleaves needs llvmlite<0.45 (RECIPES.md), which this project does not install: give --lleaves-python a separate venv's
python with `pip install lleaves "llvmlite<0.45" lightgbm numpy`, and the same model and rows are timed there.
Medians and 99th percentiles of single calls in microseconds, all in this process unless said; shared VMs swing run to
run: compare the ratios. Figures only, nothing asserted.
"""
import argparse, datetime as dt, json, shutil, subprocess, sys, tempfile, time, warnings
from pathlib import Path

import numpy as np

LLEAVES = r'''
import json, sys, time, numpy as np, lleaves
model, rows, want, calls = sys.argv[1], np.load(sys.argv[2]), np.load(sys.argv[3]), int(sys.argv[4])
m = lleaves.Model(model_file=model); m.compile()
got = np.array([m.predict(r[None], n_jobs=1)[0] for r in rows])
out = np.empty(calls)
for i in range(calls):
    r = rows[i % len(rows)][None]
    t = time.perf_counter_ns(); m.predict(r, n_jobs=1); out[i] = (time.perf_counter_ns() - t) / 1e3
print(json.dumps({"p50": float(np.percentile(out, 50)), "p99": float(np.percentile(out, 99)), "diff": float(np.abs(got - want).max())}))
'''


def timed(fn, rows, calls: int) -> np.ndarray:
    for r in rows[:50]: fn(r)  # warm up
    out = np.empty(calls)
    for i in range(calls):
        r = rows[i % len(rows)]
        t = time.perf_counter_ns(); fn(r); out[i] = (time.perf_counter_ns() - t) / 1e3
    return out


def line(name: str, t: np.ndarray, base: float | None = None, note: str = ""):
    p50 = np.percentile(t, 50)
    ratio = f"  {base / p50:5.1f}x Booster.predict" if base else ""
    print(f"  {name:58s} p50 {p50:8.1f}  p99 {np.percentile(t, 99):8.1f}{ratio}{note}")


def fast_path(trees: int, calls: int, lleaves_python: str | None):
    import lightgbm as lgb
    from mlops_workbench.serving.fast import FastPredictor
    r, n = np.random.default_rng(0), 5000
    X = np.c_[r.normal(size=(n, 6)), r.integers(0, 3, n), r.integers(0, 4, n), r.integers(0, 4, n)].astype(float)
    X[r.random(n) < 0.05, 8] = np.nan
    y = (X[:, 0] + (X[:, 6] == 1) + 0.5 * r.normal(size=n) > 0.5).astype(int)
    b = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1}, lgb.Dataset(X, y, categorical_feature=[6, 7, 8]), trees)
    rows, fp = [np.ascontiguousarray(X[i]) for i in range(500)], FastPredictor(b)
    want = b.predict(np.array(rows))
    agree = float(np.abs(np.array([fp.predict_row(x)[0] for x in rows]) - want).max())
    booster = timed(lambda x: b.predict(x[None], num_threads=1), rows, calls)
    fast = timed(fp.predict_row, rows, calls)
    base = np.percentile(booster, 50)
    print(f"one-row predict, binary model, {b.num_trees()} trees, 9 inputs (3 categorical), {calls:,} calls; microseconds per call")
    line("Booster.predict (num_threads=1)", booster)
    line("FastPredictor.predict_row (C API, one FastConfig/thread)", fast, base, f"  (largest difference {agree:.1e})")
    try:
        import lleaves
        m = lleaves.Model(model_str=b.model_to_string()); m.compile()
        line("lleaves (compiled), in process", timed(lambda x: m.predict(x[None], n_jobs=1), rows, calls), base)
    except ImportError:
        if not lleaves_python: print("  lleaves: not installed here (needs llvmlite<0.45); pass --lleaves-python to time it in another venv")
        else:
            d = Path(tempfile.mkdtemp(prefix="mlw-bench-lleaves-"))
            try:
                b.save_model(str(d / "model.txt")); np.save(d / "rows.npy", np.array(rows)); np.save(d / "want.npy", want)
                p = subprocess.run([lleaves_python, "-c", LLEAVES, str(d / "model.txt"), str(d / "rows.npy"), str(d / "want.npy"), str(calls)],
                                   capture_output=True, text=True, timeout=600)
                if p.returncode: print(f"  lleaves: failed in {lleaves_python}: {p.stderr.strip().splitlines()[-1:]}")
                else:
                    got = json.loads(p.stdout.strip().splitlines()[-1])
                    print(f"  {'lleaves (compiled), in ' + Path(lleaves_python).parent.parent.name + ' venv':58s} p50 {got['p50']:8.1f}  "
                          f"p99 {got['p99']:8.1f}  {base / got['p50']:5.1f}x Booster.predict  (largest difference {got['diff']:.1e})")
            finally: shutil.rmtree(d, ignore_errors=True)
    return b


def served(trees: int, calls: int):
    import polars as pl
    from mlops_workbench.core.storage import read_dataset
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.experiments.definition import demo_experiment
    from mlops_workbench.features.online import get_online_features, materialize
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import validate_model
    from mlops_workbench.registry.versions import register_model
    from mlops_workbench.serving.model import load_served_model
    from mlops_workbench.training.fit import train
    warnings.filterwarnings("ignore")
    root = Path(tempfile.mkdtemp(prefix="mlw-bench-served-"))
    try:
        ws = Workspace.init(root / "ws")
        run_id = train(ws, demo_experiment(ws, n_applications=3000), {"num_leaves": 15, "n_estimators": trees}, run_name="bench").run_id
        register_model(ws, run_id, "credit_default", validate_model(ws, run_id, default_gates("binary")), who="bench")
        sm = load_served_model(ws, "credit_default/1")
        t = dt.datetime(2025, 9, 1, tzinfo=dt.timezone.utc)
        materialize(ws, "customer_spend", end=t)
        key_rows = read_dataset(ws, "applications").collect().drop("defaulted", "application_id", "event_timestamp").head(200).to_dicts()
        feature_rows = [sm.predict({"rows": [r]}, now=t).features_used[0] for r in key_rows]
        bodies, keyed = [{"rows": [r]} for r in feature_rows], [{"rows": [r]} for r in key_rows]
        online_args = [[{"customer_id": r["customer_id"], "amount": r["amount"]}] for r in key_rows]
        few = max(200, calls // 10)
        print(f"\nServedModel.predict, demo credit model ({sm.booster.num_trees()} trees, {len(sm.features)} inputs), one row per call; microseconds")
        line("validate only (row by features)", timed(sm.validate, bodies, calls))
        line("predict, row by features", timed(sm.predict, bodies, calls))
        line("predict + to_dict, row by features", timed(lambda b: sm.predict(b).to_dict(), bodies, calls))
        line("predict, row by entity key (SQLite online store)", timed(lambda b: sm.predict(b, now=t), keyed, few))
        line("  of which get_online_features, service with on-demand", timed(lambda a: get_online_features(ws, sm.service.refs, a, now=t), online_args, few))
        line("  get_online_features, batch view only (no on-demand)", timed(lambda a: get_online_features(ws, ["customer_spend"], [{"customer_id": a[0]["customer_id"]}], now=t), online_args, few))
        ws.close()
    finally: shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--lleaves-python", default=None, help="a python with lleaves and llvmlite<0.45 installed")
    a = ap.parse_args()
    fast_path(a.trees, a.calls, a.lleaves_python)
    served(a.trees, a.calls)


if __name__ == "__main__":
    main()
