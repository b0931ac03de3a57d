"""Data validation: our one-pass engine against a hand-written polars select (the floor) and pandera, plus a CSV larger than the memory it may use.

Run: .venv/bin/python bench/validate.py [--rows 10_000_000] [--big-rows 50_000_000] [--limit-gb 4] [--repeat 3]

One table of 20 columns, 20 rules (dtype, 4 not-null, 5 ranges, 3 allowed-value sets, a unique key, a regex, a
string length, 2 cross-column expressions, row count, freshness), with ~0.3% defects per rule. Each side runs in
its own subprocess on the same parquet file (written by a subprocess too), loaded into memory before the clock
starts; its peak RSS is VmHWM, its own address space's (bench/_memory.py: ru_maxrss would be the parent's after a
fork); timings are the best of --repeat runs. Failure counts are compared rule by rule: ours against the floor, and
ours against both pandera backends on the 16 schema rules (and why pandera-pd's totals are larger). Sides:

  (a) ours          `validate(df, rules)`: counts, failing examples, null counts, the union of failing rows
  (b) floor         one hand-written polars `select` computing the same 20 failure counts and nothing else
  (c) pandera-pd    pandera on pandas, `schema.validate(pdf, lazy=True)`, failure cases counted per check
  (d) pandera-pl    pandera's polars backend on the 16 schema rules, against (a) on the same 16 rules

Then the larger-than-memory run: a CSV of --big-rows rows (written in chunks), validated and its passed rows
sunk to parquet by a process whose data memory is capped at --limit-gb with `prlimit --data` (RLIMIT_DATA: heap
and anonymous mappings). `prlimit --as` does not fit: polars memory-maps the CSV, and the file's mapping alone
exceeds any address-space cap smaller than the file (the scan fails at once with ENOMEM).
Timings on these shared 2-core VMs swing run to run: compare the ratios, which are measured side by side.
"""
import argparse, datetime as dt, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import HOW, peak_rss  # noqa: E402

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
REGIONS, CHANNELS, TERMS = ["north", "south", "east", "west", "central", "islands"], ["web", "mobile", "branch", "broker"], [12, 24, 36, 48, 60]
CODE = r"[A-Z]{2}\d{4}"


def make_data(n: int, seed: int = 0, start_id: int = 0) -> pl.DataFrame:
    "20 columns; every rule below fails on roughly 0.3% of the rows."
    r = np.random.default_rng(seed)
    bad = lambda p=.003: r.random(n) < p
    ids = np.arange(start_id, start_id + n)
    ids = np.where(bad(.001), np.maximum(ids - 1, 0), ids)  # duplicated keys
    amount = np.round(r.lognormal(9.3, .6, n), 2)
    amount = np.where(bad(), -amount, amount)
    income = np.round(r.lognormal(10.9, .5, n), -2)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    code = np.char.add(np.char.add(letters[r.integers(0, 26, n)], letters[r.integers(0, 26, n)]), r.integers(1000, 9999, n).astype(str))
    code = np.where(bad(), np.char.lower(code), code)
    names = np.array(["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth", ""])
    df = pl.DataFrame({
        "id": ids,
        "customer_id": pl.Series(r.integers(1, n // 3 + 2, n)).scatter(np.flatnonzero(bad()), None),
        "ts": pl.Series(np.datetime64("2025-12-01") + r.integers(0, 30 * 86_400_000_000, n).astype("timedelta64[us]")).dt.replace_time_zone("UTC"),
        "amount": pl.Series(amount).scatter(np.flatnonzero(bad()), None),
        "term": np.where(bad(), 18, np.array(TERMS)[r.integers(0, 5, n)]).astype(np.int32),
        "rate": np.where(bad(), 4.2, np.round(r.uniform(.03, .3, n), 4)),
        "income": np.where(bad(), -1.0, income),
        "age": np.where(bad(), 250, r.integers(18, 90, n)).astype(np.int32),
        "score": np.where(bad(), 999, r.integers(300, 851, n)).astype(np.int32),
        "region": pl.Series(np.where(bad(), "atlantis", np.array(REGIONS)[r.integers(0, 6, n)])).scatter(np.flatnonzero(bad()), None),
        "channel": np.where(bad(), "fax", np.array(CHANNELS)[r.integers(0, 4, n)]),
        "code": code,
        "name": names[np.where(bad(), 6, r.integers(0, 6, n))],
    })
    return df.with_columns(**{f"x{k}": r.standard_normal(n) * (1 + k / 10) for k in range(1, 8)})


def rules(schema_only: bool = False):
    from mlops_workbench.data.rules import AllowedValues, DType, Expression, Freshness, Length, NotNull, Range, Regex, RowCount, RuleSet, Unique
    q, w = dict(policy="quarantine"), dict(policy="warn")
    rs = [DType("amount", "f64", **q), *[NotNull(c, **q) for c in ("customer_id", "amount", "ts", "region")],
          Range("amount", min=0, max=1e6, **q), Range("rate", min=0, max=.5, **q), Range("income", min=0, max=1e7, **q),
          Range("age", min=18, max=120, **q), Range("score", min=300, max=850, **w),
          AllowedValues("term", TERMS, **q), AllowedValues("region", REGIONS, **q), AllowedValues("channel", CHANNELS, **w),
          Unique("id", **q), Regex("code", CODE, **q), Length("name", min=1, max=40, **w)]
    if not schema_only:
        rs += [Expression(name="affordable", sql="amount <= income * 5", **w), Expression(name="x_sum", sql="x1 + x2 < 6", **w),
               RowCount(min=1), Freshness("ts", max_age="30d", **w)]
    return RuleSet("bench", rs, key="id")


def floor(df: pl.DataFrame, engine: str = "auto") -> dict:
    "The same failure counts, hand-written as one select (what the engine must stay close to)."
    c = pl.col
    out = df.lazy().select(
        amount_dtype=pl.lit(0, pl.UInt32),  # the floor knows the dtype statically
        **{f"{k}_not_null": c(k).is_null().sum() for k in ("customer_id", "amount", "ts", "region")},
        amount_range=((c("amount") < 0) | (c("amount") > 1e6)).sum(), rate_range=((c("rate") < 0) | (c("rate") > .5)).sum(),
        income_range=((c("income") < 0) | (c("income") > 1e7)).sum(), age_range=((c("age") < 18) | (c("age") > 120)).sum(),
        score_range=((c("score") < 300) | (c("score") > 850)).sum(),
        term_allowed_values=(~c("term").is_in(TERMS)).sum(), region_allowed_values=(~c("region").is_in(REGIONS)).sum(),
        channel_allowed_values=(~c("channel").is_in(CHANNELS)).sum(),
        id_unique=c("id").is_duplicated().sum(),
        code_regex=(~c("code").str.contains(f"^(?:{CODE})$")).sum(),
        name_length=((c("name").str.len_chars() < 1) | (c("name").str.len_chars() > 40)).sum(),
        affordable=(~(c("amount") <= c("income") * 5)).sum(), x_sum=(~(c("x1") + c("x2") < 6)).sum(),
        row_count=pl.len(), ts_freshness=c("ts").max()).collect(engine=engine)
    return {k: v for k, v in out.row(0, named=True).items() if k not in ("row_count", "ts_freshness")}


def pandera_pandas_schema():
    import pandera.pandas as pa
    C = pa.Check
    col = lambda dtype, *checks, nullable=True, unique=False: pa.Column(dtype, list(checks), nullable=nullable, unique=unique)
    return pa.DataFrameSchema({
        "id": col("int64", unique=True), "customer_id": col("float64", nullable=False), "ts": col("datetime64[us, UTC]", nullable=False),
        "amount": col("float64", C.in_range(0, 1e6), nullable=False), "term": col("int32", C.isin(TERMS)),
        "rate": col("float64", C.in_range(0, .5)), "income": col("float64", C.in_range(0, 1e7)), "age": col("int32", C.in_range(18, 120)),
        "score": col("int32", C.in_range(300, 850)), "region": col(object, C.isin(REGIONS), nullable=False),
        "channel": col(object, C.isin(CHANNELS)), "code": col(object, C.str_matches(f"^(?:{CODE})$")),
        "name": col(object, C.str_length(1, 40))},
        checks=[C(lambda d: d["amount"].isna() | d["income"].isna() | (d["amount"] <= d["income"] * 5), name="affordable"),
                C(lambda d: d["x1"] + d["x2"] < 6, name="x_sum"), C(lambda d: len(d) >= 1, name="row_count"),
                C(lambda d: d["ts"].max() >= NOW - dt.timedelta(days=30), name="freshness")])


def pandera_polars_schema():
    import pandera.polars as pa
    C = pa.Check
    col = lambda dtype, *checks, nullable=True, unique=False: pa.Column(dtype, list(checks), nullable=nullable, unique=unique)
    return pa.DataFrameSchema({
        "id": col(pl.Int64, unique=True), "customer_id": col(pl.Int64, nullable=False), "ts": col(pl.Datetime("us", "UTC"), nullable=False),
        "amount": col(pl.Float64, C.in_range(0, 1e6), nullable=False), "term": col(pl.Int32, C.isin(TERMS)),
        "rate": col(pl.Float64, C.in_range(0, .5)), "income": col(pl.Float64, C.in_range(0, 1e7)), "age": col(pl.Int32, C.in_range(18, 120)),
        "score": col(pl.Int32, C.in_range(300, 850)), "region": col(pl.String, C.isin(REGIONS), nullable=False),
        "channel": col(pl.String, C.isin(CHANNELS)), "code": col(pl.String, C.str_matches(f"^(?:{CODE})$")),
        "name": col(pl.String, C.str_length(1, 40))})


def to_pandas(df: pl.DataFrame):
    "pandas from numpy column by column (no pyarrow here): object strings, NaN for missing numbers, what most users hold."
    import pandas as pd
    out = {}
    for k, s in df.to_dict().items():
        if s.dtype == pl.Datetime: out[k] = pd.to_datetime(s.dt.replace_time_zone(None).to_numpy()).tz_localize("UTC")
        elif s.dtype.is_integer() and s.null_count(): out[k] = s.cast(pl.Float64).to_numpy()
        else: out[k] = s.to_numpy()
    return pd.DataFrame(out)


def count_pandera(err) -> dict:
    fc = err.failure_cases
    return {f"{c}:{k}": int(n) for (c, k), n in fc.groupby(["column", "check"], dropna=False).size().items()}


def runner(name: str, data: str):
    "(frame loader, run, counts) of one side: '-scan' sides only open a parquet scan."
    base = name.removesuffix("-scan")
    if name == "pandera-pd":
        import pandas as pd
        load = lambda: pd.read_pickle(Path(data).with_suffix(".pkl"))
    else:
        load = (lambda: pl.scan_parquet(data)) if name.endswith("-scan") else (lambda: pl.read_parquet(data))
    if base in ("ours", "ours16"):
        from mlops_workbench.data.validate import validate
        rs = rules(schema_only=base == "ours16")
        return load, lambda df: validate(df, rs, now=NOW), lambda rep: {r.name: r.failed for r in rep.results if r.kind not in ("row_count", "freshness")}
    if base.startswith("floor"):  # 'floor-in-memory', 'floor-streaming' or 'floor-streaming-scan'
        return load, lambda df: floor(df, base.split("-", 1)[1]), lambda x: x
    import pandera.errors
    schema = pandera_pandas_schema() if base == "pandera-pd" else pandera_polars_schema()
    def run(df):  # pandera-pl on a LazyFrame checks data only at PANDERA_VALIDATION_DEPTH=SCHEMA_AND_DATA (set by the parent)
        try: schema.validate(df, lazy=True); return None
        except pandera.errors.SchemaErrors as e: return e
    if base == "pandera-pd": return load, run, lambda e: count_pandera(e) if e is not None else {}
    return load, run, lambda e: {f"{a}:{b}": n for (a, b, n) in e.failure_cases.group_by("column", "check").len().iter_rows()} if e is not None else {}


def side(name: str, data: str, repeat: int) -> dict:
    "Run one side alone in this process (its peak RSS is its own): load, time, measure."
    load, run, counts = runner(name, data)
    df = load()
    loaded = peak_rss()
    best, out = None, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = run(df)
        best = min(best or 1e9, time.perf_counter() - t)
    return dict(side=name, data=data, rows=pl.scan_parquet(data).select(pl.len()).collect().item(), seconds=best,
                peak_rss=peak_rss(), loaded_rss=loaded, counts=counts(out))


def paired(names: list[str], data: str, repeat: int) -> dict:
    "Best time of each side over `repeat` rounds that alternate the sides in one process: ratios fair under a shared VM's load."
    sides = {n: runner(n, data) for n in names}
    frames = {n: load() for n, (load, _, _) in sides.items()}
    best = {n: 1e9 for n in names}
    for _ in range(repeat):
        for n, (_, run, _) in sides.items():
            t = time.perf_counter(); run(frames[n]); best[n] = min(best[n], time.perf_counter() - t)
    return best


BIG_CHILD = """
import json, sys, time, polars as pl
sys.path[:0] = [sys.argv[4], sys.argv[5]]
from validate_bench_rules import rules, NOW
from _memory import peak_rss
from mlops_workbench.data.validate import validate
src, out, unique = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
rs = rules()
if not unique:
    from mlops_workbench.data.rules import RuleSet
    rs = RuleSet(rs.name, [r for r in rs.rules if r.kind != "unique"], key=rs.key)
t = time.perf_counter()
rep = validate(pl.scan_csv(src, schema_overrides={"ts": pl.Datetime("us", "UTC"), "term": pl.Int32, "age": pl.Int32, "score": pl.Int32}), rs, now=NOW)
t1 = time.perf_counter()
rep.passed.sink_parquet(out)
t2 = time.perf_counter()
print(json.dumps(dict(rows=rep.rows, rules=len(rs), quarantined=rep.rows_quarantined, validate_s=t1 - t, sink_s=t2 - t1,
                      peak_rss=peak_rss())))
"""


def big_run(tmp: Path, rows: int, limit_gb: float, unique: bool) -> dict:
    csv = tmp / "big.csv"
    if not csv.exists():
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--side", "make-csv", "--data", str(csv), "--big-rows", str(rows)], check=True)
        print(f"   wrote {csv.stat().st_size / 1e9:.1f} GB CSV of {rows:,} rows in {time.perf_counter() - t:.0f} s", flush=True)
    shutil.copy(__file__, tmp / "validate_bench_rules.py")
    cmd = ["prlimit", f"--data={int(limit_gb * 2**30)}", sys.executable, "-c", BIG_CHILD, str(csv), str(tmp / "passed.parquet"), str(int(unique)), str(tmp), str(Path(__file__).resolve().parent)]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode: return dict(error=(res.stderr.strip().splitlines() or ["killed"])[-1][:300], seconds=time.perf_counter() - t)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["csv_bytes"], out["passed_rows"] = csv.stat().st_size, pl.scan_parquet(tmp / "passed.parquet").select(pl.len()).collect().item()
    return out


def run_side(name, data, repeat, names=()) -> dict:
    env = {**os.environ, "PANDERA_VALIDATION_DEPTH": "SCHEMA_AND_DATA"}
    res = subprocess.run([sys.executable, __file__, "--side", name, "--data", str(data), "--repeat", str(repeat), "--names", ",".join(names)],
                         capture_output=True, text=True, env=env)
    if res.returncode: raise SystemExit(f"side {name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def mb(b: float) -> str: return f"{b / 2**20:,.0f} MB"


PANDERA_CHECK = {"not_null": "not_nullable", "range": "in_range(", "allowed_values": "isin(", "unique": "field_uniqueness",
                 "regex": "str_matches(", "length": "str_length(", "dtype": "dtype("}  # our rule kind -> how pandera names its check


def pandera_count(counts: dict, column: str, kind: str) -> int:
    "Failure cases pandera reported for `column`'s check of our rule kind `kind` (0 when it reported none)."
    return sum(n for k, n in counts.items() if k.startswith(f"{column}:{PANDERA_CHECK[kind]}"))


def pandera_agreement(r: dict) -> list[str]:
    "Our per-rule failure counts beside both pandera backends' (what is compared is said, and every difference named)."
    rs = {x.name: x for x in rules().rules}
    ours = r["ours"]["counts"]
    rows, differ = [], []
    for name, n in r["ours16"]["counts"].items():
        rule = rs[name]
        column = rule.column if hasattr(rule, "column") else rule.columns[0]  # a unique rule names its key columns (one here)
        theirs = {b: pandera_count(r[b]["counts"], column, rule.kind) for b in ("pandera-pd", "pandera-pl", "pandera-pl-scan")}
        if any(v != n for v in theirs.values()): differ.append(f"{name}: ours {n:,}, " + ", ".join(f"{b} {v:,}" for b, v in theirs.items()))
        rows.append(name)
    out = [f"per rule, ours against pandera (pandas, polars in memory, polars scan) on the 16 schema rules: "
           f"{len(rows) - len(differ)} of {len(rows)} failure counts equal on all three" + ("" if not differ else "; differ: " + "; ".join(differ))]
    pd_counts, n_cols = r["pandera-pd"]["counts"], len(pl.scan_parquet(r["ours"]["data"]).collect_schema())
    frame = {c: {k.split(":", 1)[0] for k in pd_counts if k.endswith(f":{c}")} for c in ("affordable", "x_sum")}
    per_row = {c: max((n for k, n in pd_counts.items() if k.endswith(f":{c}")), default=0) for c in frame}
    out.append("pandera-pd's totals are larger because it lists a frame-wide check's failing rows once per column of the frame: "
               + ", ".join(f"{c} {per_row[c]:,} rows x {len(frame[c])} of {n_cols} columns (ours: {ours[c]:,} rows)" for c in frame)
               + f" = {sum(n for k, n in pd_counts.items() if k.rsplit(':', 1)[1] in frame):,} of its cases; pandera-pl runs the 16 schema rules only")
    return out


def compare(tmp: Path, a):
    "Each side alone (rows/s, peak RSS), then the ratios from one process alternating the sides."
    data = tmp / f"data_{a.rows}.parquet"
    if not data.exists():  # in a process of its own: the parent never holds the rows, so no child can inherit their memory
        subprocess.run([sys.executable, __file__, "--side", "make-data", "--data", str(data), "--rows", str(a.rows)], check=True)
    print(f"validation bench: {a.rows:,} rows x 20 columns, 20 rules; {os.cpu_count()} CPUs; polars {pl.__version__}; best of {a.repeat}", flush=True)
    sides = ["ours", "floor-in-memory", "floor-streaming", "ours-scan", "floor-streaming-scan"]
    sides += [] if a.skip_pandera else ["pandera-pd", "ours16", "pandera-pl", "ours16-scan", "pandera-pl-scan"]
    if not a.skip_pandera and not data.with_suffix(".pkl").exists():
        subprocess.run([sys.executable, __file__, "--side", "pickle", "--data", str(data)], check=True)
    print(f"  each side alone, in its own process; {HOW}:")
    r = {}
    for s in sides:
        r[s] = x = run_side(s, data, a.repeat if s != "pandera-pd" else 1)
        print(f"  {s:20s} {x['seconds']:8.2f} s  {x['rows'] / x['seconds'] / 1e6:7.2f} M rows/s  peak RSS {mb(x['peak_rss']):>9s} "
              f"(data loaded: {mb(x['loaded_rss'])})", flush=True)
    t = run_side("paired", data, a.repeat, sides)
    print(f"  ratios of the best times in one process alternating the sides, {a.repeat} rounds:", flush=True)
    floor_side = min(("floor-in-memory", "floor-streaming"), key=t.get)  # the floor is the faster of its two engines
    agree = lambda o, f: all(r[o]["counts"][k] == v for k, v in r[f]["counts"].items())
    print(f"  (a)/(b) ours against the floor ({floor_side}): {t['ours'] / t[floor_side]:.2f}x the time (target <= 1.5x): "
          f"{t['ours']:.2f} s against {t[floor_side]:.2f} s; the 20 failure counts agree: {agree('ours', floor_side)}")
    print(f"  (a)/(b) on a parquet scan (key pass first, examples from early-stopping scans): {t['ours-scan'] / t['floor-streaming-scan']:.2f}x "
          f"the time, peak RSS {mb(r['ours-scan']['peak_rss'])} against {mb(r['floor-streaming-scan']['peak_rss'])}; "
          f"counts agree: {agree('ours-scan', 'floor-streaming-scan')}")
    if "pandera-pd" in r:
        print(f"  (c)/(a) pandera on pandas against ours: {t['pandera-pd'] / t['ours']:.1f}x slower (target >= 10x); "
              f"peak RSS {r['pandera-pd']['peak_rss'] / r['ours']['peak_rss']:.1f}x ({mb(r['pandera-pd']['peak_rss'])})")
        print(f"   failure cases: pandera-pd {sum(r['pandera-pd']['counts'].values()):,} in {len(r['pandera-pd']['counts'])} (column, check) pairs; "
              f"pandera-pl {sum(r['pandera-pl']['counts'].values()):,} in memory, {sum(r['pandera-pl-scan']['counts'].values()):,} on the scan")
        for line in pandera_agreement(r): print("   " + line)
        print(f"  (d)/(a16) pandera's polars backend against ours on the 16 schema rules: {t['pandera-pl'] / t['ours16']:.2f}x the time "
              f"on a DataFrame, {t['pandera-pl-scan'] / t['ours16-scan']:.2f}x on a parquet scan (peak RSS {mb(r['pandera-pl-scan']['peak_rss'])} "
              f"against {mb(r['ours16-scan']['peak_rss'])})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows of the in-memory comparison")
    ap.add_argument("--big-rows", type=int, default=50_000_000, help="rows of the larger-than-memory CSV (0 skips it)")
    ap.add_argument("--limit-gb", type=float, default=4.0, help="data-memory cap (RLIMIT_DATA) of the larger-than-memory run")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per side (best is reported)")
    ap.add_argument("--skip-pandera", action="store_true")
    ap.add_argument("--workdir", help="keep data here (reused between runs) instead of a temporary folder")
    ap.add_argument("--side"), ap.add_argument("--data"), ap.add_argument("--names")
    a = ap.parse_args()
    if a.side == "pickle":  # the pandas copy, converted once in its own process so no side's peak includes the conversion
        to_pandas(pl.read_parquet(a.data)).to_pickle(Path(a.data).with_suffix(".pkl")); return
    if a.side == "make-data": make_data(a.rows).write_parquet(a.data); return
    if a.side == "make-csv":  # in chunks, so even this process never holds the whole table
        with open(a.data, "wb") as f:
            for k, start in enumerate(range(0, a.big_rows, 5_000_000)):
                make_data(min(5_000_000, a.big_rows - start), seed=100 + k, start_id=start).write_csv(f, include_header=k == 0)
        return
    if a.side == "paired": print(json.dumps(paired(a.names.split(","), a.data, a.repeat))); return
    if a.side: print(json.dumps(side(a.side, a.data, a.repeat), default=str)); return
    tmp = Path(a.workdir or tempfile.mkdtemp(prefix="mlw-bench-validate-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try: run_all(tmp, a)
    finally:
        if not a.workdir: shutil.rmtree(tmp, ignore_errors=True)  # whatever happened, nothing is left in /tmp


def run_all(tmp: Path, a):
    if a.rows: compare(tmp, a)
    if a.big_rows:
        print(f"larger than memory: {a.big_rows:,}-row CSV, data memory capped at {a.limit_gb:g} GB (prlimit --data)", flush=True)
        for unique in (True, False):
            b = big_run(tmp, a.big_rows, a.limit_gb, unique)
            label = "20 rules" if unique else "19 rules (no unique key)"
            if "error" in b: print(f"  {label}: FAILED after {b['seconds']:.0f} s: {b['error']}"); continue
            print(f"  {label}: CSV {b['csv_bytes'] / 1e9:.1f} GB; validate {b['validate_s']:.0f} s ({b['rows'] / b['validate_s'] / 1e6:.2f} M rows/s), "
                  f"sink passed {b['sink_s']:.0f} s ({b['passed_rows']:,} rows); peak RSS {mb(b['peak_rss'])}", flush=True)


if __name__ == "__main__":
    main()
