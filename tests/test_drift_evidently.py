"""The drift engine against its oracle: Evidently 0.7's DataDriftPreset, run through its Report API on the same frames.

Every statistic must agree to 1e-9 (`math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-9)`: relative for
distances and large p-values, absolute for p-values near 0), and every per-column verdict, method and the dataset
verdict must be identical. Shapes: numeric only, categorical only (text levels, new levels in current), and mixed
with nulls (few-valued ints, floats with nulls, booleans, text with nulls, a regression target, dates as strings,
no id column); each with a small (<= 1000 rows: tests) and a large (> 1000 rows: distances) reference, with and
without injected drift; and every method pinned per column on a large frame.
"""
import math, warnings

import numpy as np
import polars as pl
import pytest

from mlops_workbench.core.errors import InvalidInput
from mlops_workbench.monitoring.drift import DRIFT_METHODS, DriftReport, data_drift, evidently_report_html

LABELS = {m.label: k for k, m in DRIFT_METHODS.items()}


def evidently(reference: pl.DataFrame, current: pl.DataFrame, **preset) -> dict:
    "Evidently's verdicts: {'columns': {name: (method, statistic, drifted)}, 'share', 'drifted'}."
    from evidently import Report
    from evidently.presets import DataDriftPreset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snap = Report([DataDriftPreset(**preset)], include_tests=True).run(current.to_pandas(), reference.to_pandas())
    d = snap.dict()
    stats, share = {}, None
    for m in d["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith("ValueDrift"): stats[cfg["column"]] = (LABELS.get(cfg["method"], cfg["method"]), m["value"])
        if cfg["type"].endswith("DriftedColumnsCount"): share = m["value"]["share"]
    verdicts, dataset = {}, None
    for t in d["tests"]:
        if t["name"].startswith("Value Drift for column "): verdicts[t["name"][len("Value Drift for column "):]] = t["status"] == "FAIL"
        elif t["metric_config"]["params"]["type"].endswith("DriftedColumnsCount"): dataset = t["status"] == "FAIL"
    return {"columns": {c: (m, s, verdicts[c]) for c, (m, s) in stats.items()}, "share": share, "drifted": dataset}


def check(reference, current, methods=None, drift_share=0.5, expect_methods=None, dataset=True) -> DriftReport:
    "Ours against Evidently on the same frames; returns our report. `dataset=False`: compare the columns only."
    ours = data_drift(reference, current, methods=methods, drift_share=drift_share)
    theirs = evidently(reference, current, per_column_method=methods, drift_share=drift_share)
    checked = {c.column: c for c in ours.columns if c.checked}
    assert set(checked) == set(theirs["columns"]), (set(checked), set(theirs["columns"]))
    for name, (method, stat, drifted) in theirs["columns"].items():
        c = checked[name]
        assert c.method == method, (name, c.method, method)
        assert math.isclose(c.statistic, stat, rel_tol=1e-9, abs_tol=1e-9), (name, method, c.statistic, stat)
        assert c.drifted == drifted, (name, method, c.statistic, stat, c.drifted, drifted)
    if dataset: assert ours.drifted == theirs["drifted"] and math.isclose(ours.share, theirs["share"])
    if expect_methods: assert {c: checked[c].method for c in expect_methods} == expect_methods
    return ours


def numeric(n, seed, drift=False):
    g = np.random.default_rng(seed)
    s = .6 if drift else 0.
    return pl.DataFrame({
        "income": g.lognormal(10 + s * .3, .5, n),
        "score": g.normal(600 + 30 * s, 50, n).round(0),
        "ratio": g.beta(2, 5 + 3 * s, n),
        "visits": g.poisson(3 + s, n).astype(np.float64),
        "level": g.choice([0.5, 1.5, 2.5, 3.5], n, p=[.4, .3, .2, .1] if not drift else [.25, .25, .25, .25]),
        "binary_f": (g.random(n) < .3 + .1 * s).astype(np.float64),
        "age": g.integers(18, 90, n),                        # int with many values: numeric
        "uniform": g.uniform(0, 1, n),
    })


def categorical(n, seed, drift=False):
    g = np.random.default_rng(seed)
    plans = ["basic", "plus", "pro", "team"] + (["enterprise"] if drift else [])
    p = [.5, .3, .15, .05] + ([] if not drift else [])
    if drift: p = [.35, .3, .15, .1, .1]
    return pl.DataFrame({
        "plan": g.choice(plans, n, p=p),
        "country": g.choice(["fr", "de", "es", "it", "pt", "nl", "be"], n),
        "channel": g.choice(["web", "app"], n, p=[.7, .3] if not drift else [.55, .45]),
        "tier": g.integers(1, 6, n),                          # int with <= 10 values: categorical
        "member": g.random(n) < (.4 if not drift else .5),
        "segment": pl.Series(g.choice(["a", "b", "c"], n)).cast(pl.Categorical),
    })


def mixed(n, seed, drift=False):
    g = np.random.default_rng(seed)
    s = .5 if drift else 0.
    nulls = lambda x, p: pl.Series(x).scatter(np.flatnonzero(g.random(n) < p), None)
    days = [f"2026-03-{d:02d}" for d in range(1, 15)]
    return pl.DataFrame({
        "children": g.integers(0, 4, n),                                       # few-valued int
        "rooms": g.integers(1, 9, n) + (g.random(n) < s * .4).astype(int),     # 8-9 values: categorical
        "balance": nulls(g.normal(1000 * (1 + s), 300, n), .1),                 # float with nulls
        "rate": nulls(np.round(g.uniform(.01, .2 + .1 * s, n), 3), .05),
        "smoker": g.random(n) < .2 + .2 * s,                                   # bool
        "city": nulls(g.choice(["paris", "lyon", "nice", "lille"], n, p=[.4, .3, .2, .1] if not drift else [.2, .3, .3, .2]), .08),
        "signup_day": g.choice(days, n),                                       # dates as strings: categories
        "price": g.lognormal(12 + .2 * s, .3, n),                              # the regression target
    })


SHAPES = {"numeric": numeric, "categorical": categorical, "mixed": mixed}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rows", [(600, 700), (3000, 2500)], ids=["small", "large"])
@pytest.mark.parametrize("drift", [False, True], ids=["same", "drifted"])
def test_matches_evidently(shape, rows, drift):
    make = SHAPES[shape]
    ours = check(make(rows[0], 1), make(rows[1], 2, drift))
    methods = {c.method for c in ours.columns}
    assert methods <= ({"ks", "chisquare", "z"} if rows[0] <= 1000 else {"wasserstein", "jensenshannon"})
    if drift: assert ours.drifted_columns
    if shape == "categorical" and drift: assert "new levels in current: enterprise" in ours.columns[0].note


def test_verdict_flips_with_drift():
    "The dataset verdict on the same frames at two drift shares, as Evidently decides it (share >= drift_share)."
    ref, cur = numeric(3000, 1), numeric(2500, 2, True)
    r = check(ref, cur, drift_share=.5)
    share = r.share
    assert check(ref, cur, drift_share=share).drifted is True     # equality drifts
    assert check(ref, cur, drift_share=min(1, share + .01)).drifted is False


def test_pinned_methods_large():
    ref, cur = mixed(4000, 3).drop("signup_day"), mixed(3500, 4, True).drop("signup_day")
    methods = {"children": "psi", "rooms": "kl_div", "balance": "wasserstein", "rate": "jensenshannon",
               "price": "ks", "city": "chisquare", "smoker": "z"}
    check(ref, cur, methods=methods, expect_methods=methods)
    more = {"balance": "psi", "rate": "kl_div", "price": "hellinger", "city": "hellinger", "children": "jensenshannon",
            "rooms": "chisquare"}
    check(ref, cur, methods=more, expect_methods=more)
    cats = {"segment": "z", "plan": "z", "country": "psi", "tier": "kl_div", "member": "jensenshannon"}  # z on > 2 levels: the smallest against the rest
    check(categorical(3000, 5), categorical(2000, 6, True), methods=cats, expect_methods=cats)


def test_pinned_ks_asymptotic():
    "K-S above 10,000 rows a side switches to scipy's asymptotic distribution, as ks_2samp does."
    g = np.random.default_rng(5)
    ref = pl.DataFrame({"x": g.normal(size=12000), "y": g.normal(size=12000)})
    cur = pl.DataFrame({"x": g.normal(.03, 1, size=11000), "y": g.normal(size=11000)})
    check(ref, cur, methods={"x": "ks", "y": "ks"})


def test_edge_columns_match():
    "A constant reference, a column Evidently sees as numeric with <= 5 values on a large reference (Jensen-Shannon by value), ints at the 20-value binning edge."
    g = np.random.default_rng(6)
    n = 2500
    ref = pl.DataFrame({"const": np.full(n, 3.0), "few": g.choice([1., 2., 3.], n), "ints21": g.integers(0, 25, n), "x": g.normal(size=n)})
    cur = pl.DataFrame({"const": g.choice([3.0, 4.0], n), "few": g.choice([1., 2., 3., 4.], n), "ints21": g.integers(0, 30, n), "x": g.normal(size=n)})
    ours = check(ref, cur)
    assert ours.columns[0].note == "constant in reference"
    small = check(ref.head(400), cur.head(300))
    assert small.columns[0].method == "z"


def test_infinities_dropped():
    """+-inf is dropped like a null, as Evidently's ValueDrift does. Evidently's dataset count (DriftedColumnsCount, its legacy
    DatasetDriftMetric) only cleans columns that contain a NaN, so there a column with inf but no NaN gets a NaN distance and
    never drifts; our dataset verdict counts the per-column verdicts, so we compare the columns only."""
    g = np.random.default_rng(6)
    n = 2500
    ref = pl.DataFrame({"inf": np.where(g.random(n) < .01, np.inf, g.normal(size=n)), "x": g.normal(size=n)})
    cur = pl.DataFrame({"inf": np.where(g.random(n) < .01, -np.inf, g.normal(.2, 1, n)), "x": g.normal(size=n)})
    ours = check(ref, cur, dataset=False)
    assert ours.columns[0].reference_nulls > 0 and ours.columns[0].drifted
    check(ref.head(500), cur.head(500), dataset=False)


def test_all_null_column_is_reported_not_crashed():
    "Evidently raises 'An empty column ... was provided' on an all-null column; we leave it out with a note."
    ref, cur = numeric(800, 1).with_columns(empty=pl.lit(None, pl.Float64)), numeric(800, 2).with_columns(empty=pl.lit(None, pl.Float64))
    with pytest.raises(ValueError, match="An empty column 'empty'"):
        evidently(ref, cur)
    ours = data_drift(ref, cur)
    empty = ours.columns[-1]
    assert (empty.checked, empty.drifted, empty.reference_nulls) == (False, False, 1.0)
    assert empty.note == "all values missing in the reference window: not checked"
    theirs = check(ref.drop("empty"), cur.drop("empty"))
    assert (ours.share, ours.drifted) == (theirs.share, theirs.drifted)


def test_differences_from_evidently_are_deliberate():
    "Two places we differ, both documented: text columns and booleans with nulls."
    g = np.random.default_rng(8)
    n = 600
    ref = pl.DataFrame({"comment": [f"note {i}" for i in range(n)], "flag": pl.Series(g.random(n) < .5).scatter([1, 5], None)})
    cur = pl.DataFrame({"comment": [f"note {i}" for i in range(n, 2 * n)], "flag": pl.Series(g.random(n) < .5)})
    r = data_drift(ref, cur)
    assert (r.columns[0].kind, r.columns[0].checked) == ("text", False)
    assert (r.columns[1].kind, r.columns[1].method) == ("cat", "z")    # pandas makes it object: Evidently skips it
    assert data_drift(ref, cur, kinds={"comment": "cat"}).columns[0].method == "chisquare"


def test_errors():
    ref, cur = mixed(200, 1), mixed(200, 2)
    with pytest.raises(InvalidInput, match="the current window is empty"): data_drift(ref, cur.head(0))
    with pytest.raises(InvalidInput, match="column\\(s\\) 'price' missing from the current window"): data_drift(ref, cur.drop("price"))
    with pytest.raises(InvalidInput, match="'city' is String in the reference window but Float64"):
        data_drift(ref, cur.with_columns(city=pl.lit(1.5)))
    with pytest.raises(InvalidInput, match="unknown drift method 'energy'"): data_drift(ref, cur, methods={"price": "energy"})
    with pytest.raises(InvalidInput, match="method 'ks' does not apply to a cat column"): data_drift(ref, cur, methods={"city": "ks"})
    with pytest.raises(InvalidInput, match="method 'wasserstein' does not apply to a cat column"):
        data_drift(ref, cur, methods={"children": "wasserstein"})
    with pytest.raises(InvalidInput, match="pass a polars DataFrame"): data_drift(ref.to_pandas(), cur)
    with pytest.raises(InvalidInput, match="names column\\(s\\) 'nope'"): data_drift(ref, cur, methods={"nope": "ks"})
    ok = data_drift(ref, cur.with_columns(pl.col("children").cast(pl.Float64)))   # int against float: fine
    assert ok.columns[0].checked


def test_report_round_trips_and_renders():
    import json
    r = data_drift(mixed(3000, 1).with_columns(empty=pl.lit(None, pl.Float64)), mixed(3000, 2, True).with_columns(empty=pl.lit(None, pl.Float64)))
    back = DriftReport.from_dict(json.loads(json.dumps(r.to_dict(), allow_nan=False)))
    assert back.frame().equals(r.frame()) and back.drifted == r.drifted and back.drifted_columns == r.drifted_columns
    html = r._repr_html_()
    assert html.index(r.drifted_columns[0]) < html.index(">empty<") and "skipped" in html


def test_evidently_report_html():
    html = evidently_report_html(mixed(3000, 1), mixed(3000, 2, True), columns=["balance", "city"], sample=500)
    assert "<html" in html.lower() and "balance" in html
