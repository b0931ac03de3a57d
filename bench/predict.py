"""One-row prediction as a caller of a registered model pays it: a row of named values through `RunModel.matrix`, then
the native booster, beside the booster alone on a prepared row (the floor) and the whole-column polars encoding that
`matrix` used for every frame before small frames were encoded value by value.

Run: .venv/bin/python bench/predict.py [--trees 200] [--calls 2000]
A binary LightGBM model on a table of 6 numeric and 3 text columns (one with nulls and unseen levels), all in this one
process, medians and 99th percentiles of single calls in microseconds; compare the ratios (shared VMs swing).
"""
import argparse, time

import numpy as np
import polars as pl


def timed(fn, rows, calls: int) -> np.ndarray:
    for r in rows[:20]: fn(r)  # warm up
    out = np.empty(calls)
    for i in range(calls):
        r = rows[i % len(rows)]
        t = time.perf_counter_ns(); fn(r); out[i] = (time.perf_counter_ns() - t) / 1e3
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--calls", type=int, default=2000)
    a = ap.parse_args()
    import lightgbm as lgb
    from mlops_workbench.registry import validation
    from mlops_workbench.registry.validation import RunModel
    r, n = np.random.default_rng(0), 5000
    text = {"channel": ["web", "branch", "broker"], "purpose": ["car", "home", "other", "education"], "region": ["n", "s", "e", "w"]}
    df = pl.DataFrame({**{f"x{i}": r.normal(size=n) for i in range(6)}, **{c: r.choice(v, n) for c, v in text.items()}})
    df = df.with_columns(pl.when(pl.int_range(n) % 17 == 0).then(None).otherwise("region").alias("region"))
    features = list(df.columns)
    m = RunModel("bench", None, "binary", "y", features, text, None, 0)
    X = m.matrix(df)
    y = (X[:, 0] + (X[:, 6] == 1) + 0.5 * r.normal(size=n) > 0.5).astype(int)
    m.booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1}, lgb.Dataset(X, y, categorical_feature=[6, 7, 8]), a.trees)
    rows = [df.slice(i, 1).with_columns(pl.lit("unseen").alias("purpose")) if i % 50 == 0 else df.slice(i, 1) for i in range(500)]
    prepared = [X[i:i + 1] for i in range(500)]
    small = timed(lambda row: m.predict(m.matrix(row)), rows, a.calls)
    floor = timed(lambda x: m.predict(x), prepared, a.calls)
    keep, validation.SMALL_FRAME = validation.SMALL_FRAME, 0  # every frame through polars, as before
    try:
        columns = timed(lambda row: m.predict(m.matrix(row)), rows, a.calls)
        by_columns = [m.matrix(row) for row in rows]
    finally: validation.SMALL_FRAME = keep
    agree = all(np.array_equal(m.matrix(row), x, equal_nan=True) for row, x in zip(rows, by_columns))
    print(f"one-row predict, {a.trees} trees, {len(features)} inputs ({len(text)} text), {a.calls:,} calls; microseconds per call")
    for name, t in [("booster alone, prepared row (floor)", floor), ("row -> matrix -> booster (value by value)", small),
                    ("row -> matrix -> booster (whole columns, polars)", columns)]:
        print(f"  {name:48s} p50 {np.percentile(t, 50):8.0f}  p99 {np.percentile(t, 99):8.0f}  {np.percentile(t, 50) / np.percentile(floor, 50):6.1f}x the floor")
    print(f"  value by value against whole columns: {np.percentile(columns, 50) / np.percentile(small, 50):.1f}x faster at p50; "
          f"the two encodings agree on every row: {agree}")


if __name__ == "__main__":
    main()
