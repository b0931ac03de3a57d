"""Point-in-time correctness as a property: our as-of join against a brute-force reference, on random event
histories with equal timestamps, TTL edges, entities without features, and key-hash buckets."""
import datetime as dt

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mlops_workbench.core.workspace import Workspace
from mlops_workbench.features.definitions import Entity, FeatureView, apply
from mlops_workbench.features.offline import ROW, build_features, get_training_data, pit_join
from mlops_workbench.core.storage import write_dataset

T0 = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
MIN = dt.timedelta(minutes=1)

events_st = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 20)), max_size=40)  # (customer, minute)
entities_st = st.lists(st.tuples(st.integers(0, 3), st.integers(-2, 25)), min_size=1, max_size=30)
ttl_st = st.one_of(st.none(), st.integers(0, 10))


def reference(events, entities, ttl):
    """For each entity row: the value of the latest event of its key at or before its time (ties: the last in
    source order), or None when there is none or it is more than `ttl` minutes old. Plain loops, no joins."""
    out = []
    for key, t in entities:
        best = None
        for i, (k, te) in enumerate(events):
            if k == key and te <= t and (best is None or te >= events[best][1]):
                best = i
        if best is not None and ttl is not None and t - events[best][1] > ttl:
            best = None
        out.append(best)
    return out


def frames(events, entities):
    ev = pl.DataFrame({"customer_id": [k for k, _ in events], "event_timestamp": [T0 + m * MIN for _, m in events],
                       "value": list(range(len(events)))}, schema={"customer_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC"), "value": pl.Int64})
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
