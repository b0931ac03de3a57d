"""On-demand features by row programs (features.expressions) against polars, the reference: random expressions over
random typed columns (nulls, zeros, signed zeros, negatives, nan of both signs, infinities, integer extremes) give
the same values, dtypes and Python types, floats to the bit; and whole online lookups on a workspace of another shape
(text keys, a null key, an unknown site, request data of every type, wrong types) answer, or fail, exactly as the
polars frame does."""
import datetime as dt
import math
import warnings

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import mlops_workbench.features.online as online
from mlops_workbench.core.storage import write_dataset
from mlops_workbench.features.definitions import Entity, FeatureService, FeatureView, OnDemandFeatureView, apply
from mlops_workbench.features.expressions import (BOOL, F64, I64, NULL, STR, Fallback, Untranslatable, like_polars, row_program,
                                                  same_values)
from mlops_workbench.features.offline import DroppedRows, build_features
from mlops_workbench.features.online import get_online_features, materialize

UTC = dt.timezone.utc
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)

FLOATS = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 0.1, math.nan, -math.nan, math.inf, -math.inf, 1e308, -1e-310,
                                    5e-324, 2.0**53, 2.0**63, -2.0**63, 7.0, -7.0]), st.floats(allow_nan=True, allow_infinity=True))
INTS = st.one_of(st.sampled_from([0, 1, -1, 2, -2, 3, 7, -7, 2**53 + 1, 2**62, -2**63, 2**63 - 1, 2**31, -2**31 - 1]),
                 st.integers(-2**63, 2**63 - 1), st.integers(-100, 100))
VALUES = {F64: FLOATS, I64: INTS, BOOL: st.booleans(), NULL: st.none(), STR: st.sampled_from(["", "a", "b", "ab", "é", "web"])}
COLS = ["a", "b", "c"]
LITS = [0, 1, -1, 2, 3, 10, 2**40, -7, 0.0, -0.0, 0.5, 1.5, -2.25, 1e300, math.inf, math.nan, -math.nan, True, False, None, "web",
        ("i64", 3), ("f64", 2.5)]
BIN = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b, lambda a, b: a // b, lambda a, b: a % b,
       lambda a, b: a == b, lambda a, b: a != b, lambda a, b: a < b, lambda a, b: a <= b, lambda a, b: a > b, lambda a, b: a >= b,
       lambda a, b: a & b, lambda a, b: a | b, lambda a, b: a ^ b, lambda a, b: a.eq_missing(b), lambda a, b: a.ne_missing(b),
       lambda a, b: a.fill_null(b), lambda a, b: pl.coalesce(a, b), lambda a, b: pl.when(a > b).then(a).otherwise(b),
       lambda a, b: pl.when(a.is_null()).then(b).otherwise(a), lambda a, b: pl.when(a == b).then(a), lambda a, b: pl.when(a).then(b).otherwise(a)]
UN = [abs, lambda a: -a, lambda a: a.is_null(), lambda a: a.is_not_null(), lambda a: a.is_nan(), lambda a: a.is_not_nan(),
      lambda a: a.is_finite(), lambda a: a.is_infinite(), lambda a: a.sqrt(), lambda a: a.log(), lambda a: a.log(10), lambda a: a.log(2),
      lambda a: a.log(0.5), lambda a: a.log1p(), lambda a: a.floor(), lambda a: a.ceil(), lambda a: a.cast(pl.Float64),
      lambda a: a.cast(pl.Int64), lambda a: a.cast(pl.Boolean), lambda a: a.cast(pl.Int64, strict=False), lambda a: a.cast(pl.Int32),
      lambda a: a.not_(), lambda a: a.alias("zz"), lambda a: a.fill_nan(0.0), lambda a: a.exp(), lambda a: a ** 2, lambda a: a.round(1),
      lambda a: a.sum(), lambda a: a.shift(1)]
SQL = ["a / b", "a * 2", "a / (b + 1)", "CASE WHEN a > b THEN a ELSE b END", "coalesce(a, 0)", "abs(a) + sqrt(b)", "ln(a)",
       "cast(a as double) / 3", "a % b", "a // b"]

LEAF = st.one_of(st.tuples(st.just("col"), st.sampled_from(COLS)), st.tuples(st.just("lit"), st.sampled_from(range(len(LITS)))))
TREE = st.recursive(LEAF, lambda ch: st.one_of(st.tuples(st.just("bin"), st.sampled_from(range(len(BIN))), ch, ch),
                                               st.tuples(st.just("un"), st.sampled_from(range(len(UN))), ch)), max_leaves=6)


def build(t):
    "A polars expression from its hypothesis-drawn tree (plain tuples: hypothesis cannot print expressions)."
    if t[0] == "col": return pl.col(t[1])
    if t[0] == "lit":
        v = LITS[t[1]]
        return pl.lit(v[1], dtype=pl.Int64 if v[0] == "i64" else pl.Float64) if isinstance(v, tuple) else pl.lit(v)
    if t[0] == "bin": return BIN[t[1]](build(t[2]), build(t[3]))
    return UN[t[1]](build(t[2]))


@st.composite
def typed_columns(draw):
    types = {c: draw(st.sampled_from([F64, I64, BOOL, NULL, STR])) for c in COLS}
    n = draw(st.integers(1, 6))
    return types, {c: draw(st.lists(st.one_of(st.none(), VALUES[t]), min_size=n, max_size=n)) for c, t in types.items()}, n


def check_against_polars(e, types, cols, n, seen):
    try: want = pl.DataFrame(cols, schema=types).with_columns(e.alias("__out"))
    except (Exception, pl.exceptions.PanicException): want = None
    try: f, t = row_program(e, types)
    except Untranslatable: seen["untranslatable"] += 1; return
    try: got = f(cols, n)
    except Fallback: seen["fallback"] += 1; return  # the caller recomputes with polars: nothing to compare
    assert want is not None, f"polars fails on {e} over {cols} ({types}), the row program gave {got}"
    assert t == want.schema["__out"], f"{e}: dtype {t}, polars {want.schema['__out']}"
    w = want["__out"].to_list()
    assert same_values(got, w), f"{e} over {cols} ({types}): row program {got}, polars {w}"
    seen["same"] += 1


def test_expressions_match_polars_to_the_bit():
    seen = {"same": 0, "untranslatable": 0, "fallback": 0}

    @settings(max_examples=1500, **SETTINGS)
    @given(typed_columns(), TREE)
    def check(tc, tree):
        types, cols, n = tc
        check_against_polars(build(tree), types, cols, n, seen)
    check()
    assert seen["same"] > 500, seen  # most draws are translated and compared, not skipped


@settings(max_examples=300, **SETTINGS)
@given(typed_columns(), st.sampled_from(SQL))
def test_sql_text_matches_polars(tc, sql):
    types, cols, n = tc
    check_against_polars(pl.sql_expr(sql), types, cols, n, {"same": 0, "untranslatable": 0, "fallback": 0})


def test_the_credit_feature_is_translated_for_every_input_type():
    "The demo's feature runs as a row program whether the customer's sum is known (f64, i64) or all null."
    e = pl.col("amount") / (pl.col("amount_sum_7d") + 1)
    for t in (F64, I64, NULL):
        f, dtype = row_program(e, {"amount": F64, "amount_sum_7d": t})
        assert dtype == F64


ANY = st.one_of(st.none(), st.booleans(), INTS, st.integers(2**63, 2**64), FLOATS, st.sampled_from(["x", "", "é"]),
                st.sampled_from([dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2025, 1, 1), dt.date(2025, 1, 1),
                                 dt.datetime(2025, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))]))


@settings(max_examples=400, **SETTINGS)
@given(st.integers(1, 4).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.lists(ANY, min_size=n, max_size=n), min_size=1, max_size=3))))
def test_like_polars_is_the_frame_round_trip(drawn):
    "Where like_polars answers, its values and dtypes are those of pl.DataFrame(strict=False) read back."
    n, lists = drawn
    cols = {f"c{i}": v for i, v in enumerate(lists)}
    got = like_polars(cols, n)
    if got is None: return
    ref = pl.DataFrame(cols, strict=False)
    assert got[1] == dict(ref.schema)
    back = ref.to_dict(as_series=False)
    for c in cols:
        assert same_values(got[0][c], back[c]), (c, got[0][c], back[c])
        assert [getattr(x, "tzinfo", None) for x in got[0][c]] == [getattr(x, "tzinfo", None) for x in back[c]]


# ------------------------------------------------------------------ whole lookups, on a table of another shape
@pytest.fixture(scope="module")
def site_ws(tmp_path_factory):
    "Meter readings keyed by a site's name (text; no numeric id), int, float and bool features, on-demand views of every request type."
    from mlops_workbench.core.workspace import Workspace
    w = Workspace.init(tmp_path_factory.mktemp("od") / "ws")
    t0 = dt.datetime(2025, 3, 1, tzinfo=UTC)
    readings = pl.DataFrame({
        "site": ["dock a", "dock a", "yard 7", "yard 7", "pier", None, "zero"],
        "read_at": [t0 + dt.timedelta(hours=h) for h in (0, 5, 1, 9, 3, 4, 2)],
        "kwh": [1.5, -2.0, 10.0, math.inf, 0.0, 4.0, 0.0], "meters": [3, 4, 0, -2, 7, 1, 0], "ok": [True, False, True, None, True, True, False]})
    write_dataset(w, "readings", readings, source={"kind": "test", "location": "inline"})
    apply(w, Entity("site", ["site"]),
          FeatureView("meter", entity="site", source="readings", timestamp="read_at",
                      features={"last_kwh": pl.col("kwh"), "last_meters": pl.col("meters"), "last_ok": pl.col("ok")}),
          OnDemandFeatureView("ratios", sources=["meter"], request={"load": "float", "units": "int"},
                              features={"per_meter": pl.col("load") / pl.col("last_meters"), "kwh_per_unit": pl.col("last_kwh") // pl.col("units"),
                                        "left": pl.col("units") % pl.col("last_meters"), "units_f": pl.col("units").cast(pl.Float64) + 0.5,
                                        "big": pl.when(pl.col("load") > pl.col("last_kwh")).then(pl.col("load")).otherwise(pl.col("last_kwh").fill_null(-1)),
                                        "grow": pl.col("units") * pl.col("last_meters") + 1}),
          OnDemandFeatureView("flags", sources=["meter"], request={"channel": "str", "urgent": "bool"},
                              features={"web": pl.col("channel") == "web", "alert": pl.col("urgent") & (pl.col("last_kwh") > 1),
                                        "either": pl.col("urgent") | ~pl.col("last_kwh").is_finite(), "missing": pl.col("last_ok").is_null(),
                                        "sq": "sqrt(abs(last_kwh)) + ln(last_meters)"}),
          OnDemandFeatureView("shaped", sources=["meter"], request={"load": "float"},
                              features={"e": pl.col("load").exp(), "r": pl.col("last_kwh").round(1)}),  # outside the subset: polars'
          FeatureService("site_all", ["meter", "ratios", "flags", "shaped"]),
          FeatureService("site_fast", ["meter", "ratios", "flags"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedRows)  # the reading without a site: counted in the build
        build_features(w, "meter")
    materialize(w, "meter", end=t0 + dt.timedelta(days=1))
    yield w
    w.close()


AT = dt.datetime(2025, 3, 1, 12, tzinfo=UTC)
REQUEST = {"site": st.sampled_from(["dock a", "yard 7", "pier", "zero", "nowhere", None]),
           "load": st.one_of(st.none(), FLOATS, INTS), "units": st.one_of(st.none(), INTS),
           "channel": st.one_of(st.none(), st.sampled_from(["web", "app", ""])), "urgent": st.one_of(st.none(), st.booleans())}
SPOIL = st.sampled_from([None] * 15 + [("load", "12"), ("units", 2.5), ("channel", 3), ("urgent", 1), ("load", True)])  # wrong types


OUTCOMES = {"answer": 0, "error": 0}


def lookup(ws, service, rows, small):
    "The answer (or the error's type and message) with row programs up to `small` rows: 0 is the polars frame."
    was, online.SMALL_LOOKUP = online.SMALL_LOOKUP, small
    try: return get_online_features(ws, service, rows, now=AT).to_dict()
    except (Exception, pl.exceptions.PanicException) as e: return (type(e).__name__, str(e))
    finally: online.SMALL_LOOKUP = was


@settings(max_examples=250, **SETTINGS)
@given(st.sampled_from(["site_all", "site_fast"]), st.lists(st.fixed_dictionaries(REQUEST), min_size=1, max_size=6),
       st.sampled_from([()] * 10 + [("units",), ("channel", "urgent")]), SPOIL)
def test_lookups_answer_as_the_polars_frame(site_ws, service, rows, drop, spoil):
    rows = [{k: v for k, v in r.items() if k not in drop} for r in rows]  # some lookups lack request data: the same error
    if spoil and spoil[0] in rows[-1]: rows[-1][spoil[0]] = spoil[1]
    fast, ref = lookup(site_ws, service, rows, 64), lookup(site_ws, service, rows, 0)
    if isinstance(ref, tuple) or isinstance(fast, tuple):
        assert fast == ref
        OUTCOMES["error"] += 1
        return
    OUTCOMES["answer"] += 1
    assert list(fast) == list(ref)
    for c in ref: assert same_values(fast[c], ref[c]), (c, fast[c], ref[c])


def test_most_lookups_answer():
    "The comparison above mostly compares answers, not errors (wrong request types and missing request data do fail)."
    assert OUTCOMES["answer"] > OUTCOMES["error"] > 0, OUTCOMES


def test_the_fast_service_runs_row_programs(site_ws):
    "Nothing of site_fast's views is left to polars for plain requests, so the comparison above compares row programs."
    rows = [{"site": "dock a", "load": 3.0, "units": 2, "channel": "web", "urgent": True}, {"site": None, "load": None, "units": 0, "channel": None, "urgent": None}]
    reader = online.OnlineReader(site_ws, "site_fast")
    assert reader.get(rows, now=AT)["per_meter"] == [0.75, None]
    assert [len(rf.programs) for rf in reader.row_features] == [1, 1]
    assert all(p is not None for rf in reader.row_features for p in rf.programs.values()), [rf.why for rf in reader.row_features]
