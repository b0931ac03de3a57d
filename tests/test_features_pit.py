"""Point-in-time correctness as a property: our as-of join against a brute-force reference, on random event
histories with equal timestamps, TTL edges, entities without features, and key-hash buckets; and windowed
aggregations finished at arbitrary lookup times (the window (t - w, t], not the one ending at the latest event)
against plain loops, through `window_join` and through the whole `get_training_data` path."""
import datetime as dt
import math
import statistics

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mlops_workbench.core.workspace import Workspace
from mlops_workbench.features.definitions import AGG_FUNCTIONS, Aggregation, Entity, FeatureView, apply
from mlops_workbench.features.offline import ROW, build_features, compute_view, get_training_data, pit_join, window_join
from mlops_workbench.core.storage import write_dataset

T0 = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
MIN = dt.timedelta(minutes=1)

events_st = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 20)), max_size=40)  # (customer, minute)
entities_st = st.lists(st.tuples(st.integers(0, 3), st.integers(-2, 25)), min_size=1, max_size=30)
ttl_st = st.one_of(st.none(), st.integers(0, 10))
# (customer, minute, value): several events at one instant, null values, lookups long after the last event
valued_st = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40), st.one_of(st.none(), st.integers(-50, 50))), max_size=40)
lookups_st = st.lists(st.tuples(st.integers(0, 3), st.integers(-5, 120)), min_size=1, max_size=30)
windows_st = st.lists(st.integers(1, 45), min_size=1, max_size=3, unique=True)  # minutes


def reference(events, entities, ttl):
    """For each entity row: the value of the latest event of its key at or before its time (ties: the last in
    source order), or None when there is none or it is more than `ttl` minutes old. Plain loops, no joins."""
    out = []
    for key, t in entities:
        best = None
        for i, (k, te, *_) in enumerate(events):
            if k == key and te <= t and (best is None or te >= events[best][1]):
                best = i
        if best is not None and ttl is not None and t - events[best][1] > ttl:
            best = None
        out.append(best)
    return out


def window_reference(events, key, t, w, fn):
    "`fn` of the non-null values of `key`'s events in (t - w, t] minutes, by plain loops."
    vals = [v for k, te, v in events if k == key and t - w < te <= t and v is not None]
    if fn == "count": return len(vals)
    if fn == "sum": return sum(vals)
    if not vals or (fn == "std" and len(vals) < 2): return None
    return {"mean": statistics.fmean, "min": min, "max": max, "std": statistics.stdev}[fn](vals)


def same(got, expect):
    "Exact for counts, sums, extremes of integers; to 1e-9 for means and standard deviations."
    if got is None or expect is None: return got is None and expect is None
    return math.isclose(got, expect, rel_tol=1e-9, abs_tol=1e-9)


def frames(events, entities):
    ev = pl.DataFrame({"customer_id": [k for k, *_ in events], "event_timestamp": [T0 + e[1] * MIN for e in events],
                       "value": [e[2] for e in events] if events and len(events[0]) > 2 else list(range(len(events)))},
                      schema={"customer_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "value": pl.Int64})
    ent = pl.DataFrame({"customer_id": [k for k, _ in entities], "event_timestamp": [T0 + m * MIN for _, m in entities]},
                       schema={"customer_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")})
    return ev, ent


@settings(max_examples=300, deadline=None)
@given(events_st, entities_st, ttl_st, st.sampled_from([1, 3]))
def test_pit_join_matches_reference(events, entities, ttl, buckets):
    ev, ent = frames(events, entities)
    # pit_join reads computed view rows: one per entity and instant (compute_view keeps the last in source order)
    rows = ev.unique(["customer_id", "event_timestamp"], keep="last", maintain_order=True).rename({"event_timestamp": "ft"})
    got = pit_join(ent.with_row_index(ROW), rows.lazy(), ["customer_id"], "event_timestamp", "ft",
                   None if ttl is None else ttl * MIN, buckets=buckets)
    assert got[ROW].to_list() == list(range(len(entities)))
    assert got["value"].to_list() == reference(events, entities, ttl)


def windowed(windows, ttl=None):
    return FeatureView("value_windows", entity="customer", source="valued", features={"value": pl.col("value")},
                       aggregations=[Aggregation("value", f, f"{w}m") for w in windows for f in AGG_FUNCTIONS],
                       ttl=None if ttl is None else f"{ttl}m" if ttl else "1s")


@settings(max_examples=200, deadline=None)
@given(valued_st, lookups_st, windows_st, st.sampled_from([1, 3]))
def test_window_join_matches_reference(events, lookups, windows, buckets):
    "Every function over every window, ending at each lookup's own time, from compute_view's per-instant partials."
    ev, ent = frames(events, lookups)
    view = windowed(windows)
    rows = compute_view(view, ev.lazy(), ["customer_id"])
    got = window_join(ent.with_row_index(ROW), rows, ["customer_id"], "event_timestamp", "event_timestamp", view.aggregations, buckets=buckets)
    assert got[ROW].to_list() == list(range(len(lookups)))
    for a in view.aggregations:
        w = int(a.window[:-1])
        for (key, t), g in zip(lookups, got[a.output_name].to_list()):
            assert same(g, window_reference(events, key, t, w, a.function)), (a.output_name, key, t, g)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    w = Workspace.init(tmp_path_factory.mktemp("pit") / "ws")
    apply(w, Entity("customer", ["customer_id"]))
    yield w
    w.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events_st.filter(bool), entities_st, ttl_st)
def test_training_data_matches_reference(ws, events, entities, ttl):
    """The whole path: a versioned dataset, a view with a TTL, a build into the offline table, get_training_data."""
    ev, ent = frames(events, entities)
    write_dataset(ws, "events", ev, source={"kind": "test", "location": "hypothesis"}, mode="overwrite")
    apply(ws, FeatureView("value_view", entity="customer", source="events", features={"value": pl.col("value")},
                          ttl=None if ttl is None else f"{ttl}m" if ttl else "1s"))
    build_features(ws, "value_view")
    got = get_training_data(ws, ent.with_columns(pl.int_range(pl.len()).alias("label")), "value_view")
    expect = reference(events, entities, None if ttl is None else ttl if ttl else 1 / 60)
    assert got.data["label"].to_list() == list(range(len(entities)))  # every row, input order, carried columns
    assert got.data["value"].to_list() == expect


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valued_st.filter(bool), lookups_st, windows_st, ttl_st)
def test_training_windows_match_reference(ws, events, lookups, windows, ttl):
    """Windows through the whole path, with a TTL: each ends at its row's time; where the view has no value within
    the TTL at that time (or none yet), every feature of the view is null, windows included."""
    ev, ent = frames(events, lookups)
    write_dataset(ws, "valued", ev, source={"kind": "test", "location": "hypothesis"}, mode="overwrite")
    view = windowed(windows, ttl)
    apply(ws, view)
    build_features(ws, view.name)
    got = get_training_data(ws, ent, view.name).data
    found = reference(events, lookups, None if ttl is None else ttl if ttl else 1 / 60)
    for a in view.aggregations:
        w = int(a.window[:-1])
        for (key, t), f, g in zip(lookups, found, got[a.output_name].to_list()):
            expect = None if f is None else window_reference(events, key, t, w, a.function)
            assert same(g, expect), (a.output_name, key, t, g, expect)


@pytest.mark.parametrize("buckets", [1, 4])
def test_window_join_at_scale_matches_a_brute_force_join(buckets):
    """Thousands of entities, so polars works in parallel (its `unique` and joins then reorder rows): every window
    of every lookup equals the join-filter-aggregate over all the entity's events, as `bench/features.py` checks."""
    import numpy as np
    r = np.random.default_rng(5)
    n, m, customers, span = 60_000, 20_000, 3_000, 30 * 86_400_000_000
    at = lambda k: pl.Series(T0.timestamp() * 1e6 + r.integers(0, span, k)).cast(pl.Int64).cast(pl.Datetime("us", "UTC"))
    ev = pl.DataFrame({"customer_id": r.integers(0, customers, n), "event_timestamp": at(n),
                       "value": pl.Series(r.integers(-1000, 1000, n)).scatter(r.integers(0, n, n // 20), None)})
    ent = pl.DataFrame({"customer_id": r.integers(0, customers + 100, m), "event_timestamp": at(m)}).with_row_index(ROW)
    view = FeatureView("v", entity="customer", source="s", aggregations=[Aggregation("value", f, w) for w in ("1h", "1d", "7d") for f in AGG_FUNCTIONS])
    got = window_join(ent, compute_view(view, ev.lazy(), ["customer_id"]), ["customer_id"], "event_timestamp", "event_timestamp",
                      view.aggregations, buckets=buckets)
    pairs = ent.join(ev.rename({"event_timestamp": "__ft"}), on="customer_id").filter(pl.col("__ft") <= pl.col("event_timestamp"))
    inside = lambda a: pl.col("value").filter(pl.col("__ft") > pl.col("event_timestamp") - a.window_delta)
    fns = {"count": lambda c: c.count(), "sum": lambda c: c.sum(), "mean": lambda c: c.mean(), "min": lambda c: c.min(),
           "max": lambda c: c.max(), "std": lambda c: c.std()}
    brute = ent.select(ROW).join(pairs.group_by(ROW).agg([fns[a.function](inside(a)).alias(a.output_name) for a in view.aggregations]),
                                 on=ROW, how="left").sort(ROW)
    for a in view.aggregations:
        b = brute[a.output_name]
        if a.function in ("count", "sum"): b = b.fill_null(0)
        x, y = got[a.output_name].cast(pl.Float64), b.cast(pl.Float64)
        ok = (x - y).abs() <= 1e-9 * (x.abs() + y.abs() + 1)
        assert bool((ok.fill_null(False) | (x.is_null() & y.is_null())).all()), a.output_name
