"""The online path against the offline path on real stores (SQLite, and a real redis-server): the same values for
the same entities and time; windows finished at the lookup time against a brute-force reference; readers never
see a torn row while another process materializes; an unreachable Redis fails the materialization loudly and never
records it complete."""
import datetime as dt
import multiprocessing as mp
import time

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from polars.testing import assert_frame_equal

from mlops_workbench.core.errors import MLWError
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.data.synthetic import generate_lending
from mlops_workbench.features.definitions import Aggregation, Entity, FeatureService, FeatureView, OnDemandFeatureView, apply
from mlops_workbench.features.offline import build_features, get_training_data
from mlops_workbench.features.online import get_online_features, list_materializations, materialize
from mlops_workbench.core.storage import write_dataset
from test_features_pit import MIN, T0, frames, reference, same, valued_st, window_reference, windows_st, ttl_st, windowed

UTC = dt.timezone.utc


@pytest.fixture(params=["sqlite", "redis"])
def online_ws(request, tmp_path):
    "A workspace whose online store is the embedded SQLite file, or a real Redis server on loopback."
    backends = {"online": request.getfixturevalue("redis_uri")} if request.param == "redis" else None
    w = Workspace.init(tmp_path / "ws", backends=backends)
    yield w
    w.close()


def _lending_features(ws):
    world = generate_lending(2000, seed=11)
    write_dataset(ws, "transactions", world.transactions, source={"kind": "demo", "location": "generate_lending"})
    apply(ws, Entity("customer", ["customer_id"]),
          FeatureView("spend", entity="customer", source="transactions", ttl="30d",
                      features={"last_amount": pl.col("amount"), "last_category": pl.col("merchant_category"),
                                "last_at": pl.col("event_timestamp")},
                      aggregations=[Aggregation("amount", "sum", "7d"), Aggregation("amount", "count", "30d"),
                                    Aggregation("amount", "std", "30d"), Aggregation("is_online", "mean", "1d")]),
          OnDemandFeatureView("ratio", sources=["spend"], request={"amount": "float"},
                              features={"amount_to_week": pl.col("amount") / (pl.col("amount_sum_7d") + 1)}),
          FeatureService("svc", ["spend", "ratio"]))
    build_features(ws, "spend")
    return world


def test_online_equals_offline_at_the_same_time(online_ws):
    ws = online_ws
    world = _lending_features(ws)
    customers = world.customers["customer_id"].head(150).to_list() + [-5]  # one unknown entity
    for t in [dt.datetime(2025, 3, 1, tzinfo=UTC), dt.datetime(2025, 7, 15, 12, tzinfo=UTC), dt.datetime(2026, 1, 2, tzinfo=UTC)]:
        assert materialize(ws, "spend", end=t).status == "complete"
        entity_df = pl.DataFrame({"customer_id": customers, "event_timestamp": [t] * len(customers), "amount": [1000.0] * len(customers)})
        offline = get_training_data(ws, entity_df, "svc", event_times=True).data
        online = get_online_features(ws, "svc", entity_df.drop("event_timestamp").to_dicts(), now=t).to_polars()
        cols = [c for c in offline.columns if c != "event_timestamp"]
        # windows are summed in another order online (Python over the instants, polars' rolling sums offline): a std may
        # differ in its last digits, everything else is equal
        assert_frame_equal(online.select(cols), offline.select(cols), check_dtypes=False, check_exact=False, rel_tol=1e-12, abs_tol=0)
        status = online["spend__status"].to_list()
        assert status[-1] == "missing" and {"present", "expired"} & set(status[:-1])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valued_st.filter(bool), windows_st, ttl_st, st.integers(0, 45), st.integers(0, 90))
def test_online_windows_end_at_now(online_ws, events, windows, ttl, end, after):
    """Materialize up to minute `end`, look every customer up at `now` = end + `after` minutes: each window is
    (now - w, now] over the materialized events, exactly the brute-force answer, and equal to the offline path's
    whenever nothing happened after `end`."""
    ws = online_ws
    test_online_windows_end_at_now.n = n = getattr(test_online_windows_end_at_now, "n", 0) + 1
    name = f"windows{n}"  # a fresh view (and online rows) per example
    ev, _ = frames(events, [(0, 0)])
    write_dataset(ws, name, ev, source={"kind": "test", "location": "hypothesis"}, mode="overwrite")
    view = windowed(windows, ttl)
    view.name, view.source = name, name
    apply(ws, Entity("customer", ["customer_id"]), view)
    build_features(ws, name)
    materialize(ws, name, end=T0 + end * MIN)
    now, keys = end + after, [0, 1, 2, 3]
    got = get_online_features(ws, name, [{"customer_id": k} for k in keys], now=T0 + now * MIN).to_dict()
    known = [e for e in events if e[1] <= end]
    found = reference(known, [(k, now) for k in keys], None if ttl is None else ttl if ttl else 1 / 60)
    assert [s == "present" for s in got[f"{name}__status"]] == [f is not None for f in found]
    for a in view.aggregations:
        w = int(a.window[:-1])
        for k, f, g in zip(keys, found, got[a.output_name]):
            expect = None if f is None else window_reference(known, k, now, w, a.function)
            assert same(g, expect), (a.output_name, k, now, g, expect)
    if len(known) == len(events):
        offline = get_training_data(ws, pl.DataFrame({"customer_id": keys, "event_timestamp": [T0 + now * MIN] * 4}), name).data
        for a in view.aggregations: assert all(same(x, y) for x, y in zip(got[a.output_name], offline[a.output_name].to_list()))


def test_std_of_close_values_far_from_the_first_one(online_ws):
    """The case where one-pass sums cancel (values 1e-5 apart, far from the entity's first value): offline recomputes
    the window two-pass, online always does, and both give the std of the raw values to the last digits."""
    import statistics
    ws, t = online_ws, [T0 + m * MIN for m in (0, 50, 55, 58)]
    df = pl.DataFrame({"sensor": ["c", "c", "c", "c"], "at": t, "temp": [5.0, 1.00001, 1.00002, 1.000035]})
    write_dataset(ws, "close", df, source={"kind": "test", "location": "inline"})
    apply(ws, Entity("sensor", ["sensor"]), FeatureView("close_view", entity="sensor", source="close", timestamp="at",
                                                        aggregations=[Aggregation("temp", "std", "30m")]))
    build_features(ws, "close_view")
    materialize(ws, "close_view", end=t[-1])
    expect = statistics.stdev([1.00001, 1.00002, 1.000035])
    online = get_online_features(ws, "close_view", [{"sensor": "c"}], now=t[-1])["temp_std_30m"][0]
    offline = get_training_data(ws, pl.DataFrame({"sensor": ["c"], "event_timestamp": [t[-1]]}), "close_view").data["temp_std_30m"][0]
    assert abs(online - expect) <= 1e-12 * expect and abs(offline - expect) <= 1e-12 * expect, (online, offline, expect)


def test_two_text_keys_with_nulls_materialize_and_look_up(online_ws):
    """A table keyed by two text columns, some null: the build leaves those rows out (counted), materialize completes,
    and a lookup with either key null is 'missing' with the key named, the others answered in place."""
    ws = online_ws
    t = [T0 + m * MIN for m in range(6)]
    df = pl.DataFrame({"depot": ["north", "north", None, "south", "south", "north"], "route": ["r1", "r2", "r1", None, "r9", "r1"],
                       "at": t, "parcels": [1, 2, 3, 4, 5, 6]})
    write_dataset(ws, "loads", df, source={"kind": "test", "location": "inline"})
    apply(ws, Entity("depot_route", ["depot", "route"]),
          FeatureView("loads_view", entity="depot_route", source="loads", timestamp="at", features={"last": pl.col("parcels")},
                      aggregations=[Aggregation("parcels", "sum", "3m")]))
    with pytest.warns(UserWarning, match="2 of 6 rows of dataset 'loads' v0 have a null join key"):
        assert build_features(ws, "loads_view").dropped == {"null join key depot, route": 2}
    assert materialize(ws, "loads_view", end=t[-1]).rows == 3
    rows = [{"depot": "north", "route": "r1"}, {"depot": None, "route": "r1"}, {"depot": "south", "route": "r9"},
            {"depot": "north", "route": None}, {"depot": "north", "route": "r2"}]
    got = get_online_features(ws, "loads_view", rows, now=t[-1]).to_dict()
    assert got["last"] == [6, None, 5, None, 2]
    assert got["parcels_sum_3m"] == [6, None, 5, None, 0]  # north/r2's only load, 4 minutes before now, is out of its 3 minutes
    assert got["loads_view__status"] == ["present", "missing", "present", "missing", "present"]
    assert got["loads_view__reason"][1] == "join key depot is null" and got["loads_view__reason"][3] == "join key route is null"


def _writer(root, generations):
    "Rewrite every customer's features with generation g (all values g, event time base + g s) and materialize."
    ws = Workspace.open(root)
    base = dt.datetime(2025, 1, 1, tzinfo=UTC)
    for g in range(1, generations + 1):
        df = pl.DataFrame({"customer_id": list(range(300)), "event_timestamp": [base + dt.timedelta(seconds=g)] * 300}).with_columns(
            [pl.lit(float(g)).alias(f"f{i}") for i in range(6)])
        write_dataset(ws, "gen", df, source={"kind": "test", "location": f"generation {g}"}, mode="overwrite")
        build_features(ws, "gen_view")
        materialize(ws, "gen_view")


def test_readers_never_see_a_torn_row(online_ws):
    ws = online_ws
    base = dt.datetime(2025, 1, 1, tzinfo=UTC)
    df0 = pl.DataFrame({"customer_id": list(range(300)), "event_timestamp": [base] * 300}).with_columns([pl.lit(0.0).alias(f"f{i}") for i in range(6)])
    write_dataset(ws, "gen", df0, source={"kind": "test", "location": "generation 0"}, mode="overwrite")
    apply(ws, Entity("customer", ["customer_id"]), FeatureView("gen_view", entity="customer", source="gen", features={f"f{i}": pl.col(f"f{i}") for i in range(6)}))
    build_features(ws, "gen_view")
    materialize(ws, "gen_view")
    writer = mp.get_context("spawn").Process(target=_writer, args=(str(ws.root), 8))
    writer.start()
    reads, seen, last = 0, set(), {}
    rows = [{"customer_id": i} for i in range(300)]
    while writer.is_alive() or reads < 5:
        got = get_online_features(ws, "gen_view", rows).to_dict()
        for i in range(300):
            vals = {got[f"f{j}"][i] for j in range(6)}
            assert len(vals) == 1, f"torn row for customer {i}: {vals}"
            g = vals.pop()
            assert got["gen_view__event_time"][i] == base + dt.timedelta(seconds=g)
            assert g >= last.get(i, 0), "a value went back in time"
            last[i] = g
            seen.add(g)
        reads += 1
    writer.join(60)
    assert writer.exitcode == 0
    assert max(seen) == 8.0 and len(seen) > 1  # the readers saw the writer progress, whole rows only
    assert all(m.status == "complete" for m in list_materializations(ws, "gen_view"))


def test_unreachable_redis_fails_and_is_not_recorded_complete(tmp_path):
    uri = "redis://127.0.0.1:1/0"
    ws = Workspace.init(tmp_path / "ws", backends={"online": uri})
    _lending_features(ws)
    with pytest.raises(MLWError, match="redis://127.0.0.1:1/0"):
        materialize(ws, "spend")
    runs = list_materializations(ws, "spend")
    assert [m.status for m in runs] == ["failed"] and "127.0.0.1:1" in runs[0].error
