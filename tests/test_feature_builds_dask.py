"""Feature views computed in key buckets on a real Dask cluster (a `dask scheduler` and two worker processes, tests/dask_cluster.py)
that read the source and write their parts on object storage (moto's S3 server), never the client's folder.

Each view is built twice: in one piece in this process (`compute="local://"`), then by the workspace's compute, the cluster.
The two builds hold the same rows, and training data joined from either has the same fingerprint: on the lending demo's view
(windows including std) and on a second table of another shape (two text keys with nulls, dates that arrive as strings, a
regression target). The tasks ran on both workers and wrote the table's files into the bucket themselves; the bucket then
holds exactly the files the versions name. A view that fails inside the workers is refused naming the view, the dataset
and the reason; the table keeps its last version, and no file a bucket wrote is left behind.
"""
import datetime as dt
import warnings

import polars as pl
import pytest

from mlops_workbench.core.errors import InvalidInput
from mlops_workbench.core.storage import dataset_version, latest_version, read_dataset, write_dataset
from mlops_workbench.data.synthetic import generate_lending
from mlops_workbench.features.definitions import Aggregation, Entity, FeatureView, apply, load_definitions
from mlops_workbench.features.offline import (PARTITION, DroppedRows, _fingerprint, build_features, get_training_data, list_builds,
                                              offline_table)
from conftest import edit_settings
from dask_cluster import dask_cluster  # noqa: F401
from s3_server import bucket_keys
from test_storage_s3 import PREFIX, s3_workspace

LENDING = "mlops_workbench/pipelines/definitions/lending_features.yaml"


@pytest.fixture
def team(tmp_path, s3_endpoint, s3_bucket, dask_cluster):
    "A workspace whose tables are in the bucket and whose compute is the cluster; yields (ws, endpoint, bucket, cluster)."
    s3_workspace(tmp_path / "ws", s3_endpoint, s3_bucket).close()
    edit_settings(tmp_path / "ws", {"compute": dask_cluster.address})
    from mlops_workbench.core.workspace import Workspace
    ws = Workspace.open(tmp_path / "ws", env={})
    yield ws, s3_endpoint, s3_bucket, dask_cluster
    ws.close()


def deliveries(n: int = 3000) -> pl.DataFrame:
    "The second shape: no id, two text keys (some null), times and due dates as ISO strings, a parcel count."
    depots, routes = ["north", "south", "east depot", None], ["r1", "r2", "ring road", None, "r9"]
    return pl.DataFrame({"depot": [depots[i % 4] if i % 13 else None for i in range(n)], "route": [routes[(i * 7) % 5] for i in range(n)],
                         "at": [(dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=37 * i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(n)],
                         "due": [f"2026-03-{1 + i % 28:02d}" for i in range(n)], "parcels": [(i * 11) % 40 for i in range(n)],
                         "note": [str(i % 9) for i in range(n)]})


def both_builds(ws, view: str, entity_rows: pl.DataFrame, timestamp: str, cluster) -> tuple:
    "Build `view` in one process, then on the cluster (recording which workers ran its tasks); the two builds and their training sets."
    from distributed import Client, get_task_stream
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedRows)
        whole = build_features(ws, view, compute="local://")
        a = get_training_data(ws, entity_rows, view, timestamp=timestamp)
        with Client(cluster.address, set_as_default=False) as c, get_task_stream(client=c) as stream:
            parts = build_features(ws, view)
        b = get_training_data(ws, entity_rows, view, timestamp=timestamp)
    workers = {t["worker"] for t in stream.data if str(t["key"]).startswith("build_bucket")}
    return whole, parts, a, b, workers


def check_same(ws, view, whole, parts, a, b, workers, order, cluster, endpoint, bucket):
    steps = lambda x: dataset_version(ws, x.table, x.table_version).lineage["steps"][0]
    assert steps(whole)["buckets"] == 1 and steps(parts)["buckets"] == 2  # one per worker thread
    assert workers == set(cluster.names()), f"the bucket tasks ran on {workers}, not on both workers {set(cluster.names())}"
    assert (parts.rows, parts.dropped, parts.source_version) == (whole.rows, whole.dropped, whole.source_version)
    rows = lambda x: read_dataset(ws, x.table, x.table_version).collect().sort(order)
    assert rows(parts).equals(rows(whole).select(rows(parts).columns))
    assert rows(parts)[PARTITION].n_unique() > 1  # partitioned as the one-process build is
    assert a.data.height == b.data.height and _fingerprint(b.data) == _fingerprint(a.data)
    assert a.views[view]["build_id"] != b.views[view]["build_id"]
    assert stray_files(ws, view, endpoint, bucket) == set()


def stray_files(ws, view: str, endpoint: str, bucket: str) -> set:
    "Parquet files in the view's table folder in the bucket that no version of the table names."
    from deltalake import DeltaTable
    store, table = ws.backend("storage"), offline_table(view)
    named = set()
    for v in range(DeltaTable(store.table_uri(table), storage_options=store.storage_options).version() + 1):
        named |= {store.relative(table, u) for u in DeltaTable(store.table_uri(table), version=v, storage_options=store.storage_options).file_uris()}
    files = {k.removeprefix(f"{PREFIX}/{table}/") for k in bucket_keys(endpoint, bucket, f"{PREFIX}/{table}/") if k.endswith(".parquet")}
    return files - named


def test_lending_view_on_the_cluster(team):
    ws, endpoint, bucket, cluster = team
    world = generate_lending(1500, seed=5)
    write_dataset(ws, "transactions", world.transactions, source={"kind": "demo", "location": "generate_lending"})
    apply(ws, *load_definitions(LENDING))
    apps = world.applications.select("customer_id", "event_timestamp")
    got = both_builds(ws, "customer_transactions", apps, "event_timestamp", cluster)
    check_same(ws, "customer_transactions", *got, ["customer_id", "event_timestamp"], cluster, endpoint, bucket)
    assert got[2].data["amount_std_30d"].drop_nulls().len() > 0  # the windows were computed, not only carried


def test_second_shape_on_the_cluster_and_a_failing_view(team):
    ws, endpoint, bucket, cluster = team
    raw = deliveries()
    write_dataset(ws, "deliveries", raw.with_columns(pl.col("at").str.to_datetime(time_zone="UTC")), source={"kind": "test", "location": "inline"})
    route = lambda **features: FeatureView("route_load", entity="depot_route", source="deliveries", timestamp="at", ttl="3d",
                                           features={"last_parcels": pl.col("parcels"), "due_day": pl.col("due").str.to_date().dt.day(), **features},
                                           aggregations=[Aggregation("parcels", "sum", "24h"), Aggregation("parcels", "std", "3d")])
    apply(ws, Entity("depot_route", ["depot", "route"]), route())
    asks = pl.DataFrame({"depot": ["north", "south", None, "east depot"] * 50, "route": ["r1", "ring road", "r2", "r9"] * 50,
                         "at": [f"2026-03-{2 + i % 20:02d}T{i % 24:02d}:30:00Z" for i in range(200)],
                         "minutes_late": [0.25 * i for i in range(200)]}).with_columns(pl.col("at").str.to_datetime(time_zone="UTC"))
    got = both_builds(ws, "route_load", asks, "at", cluster)
    check_same(ws, "route_load", *got, ["depot", "route", "at"], cluster, endpoint, bucket)
    assert got[1].dropped and sum(got[1].dropped.values()) == raw.filter(pl.col("depot").is_null() | pl.col("route").is_null()).height
    assert got[3].data["minutes_late"].to_list() == asks["minutes_late"].to_list()  # the regression target, carried

    # a new version of the view that cannot be computed for one entity ("x" is no integer): that bucket fails on its worker while
    # the other writes its files; the build is refused and removes them
    spoilt = (pl.col("depot") == "north") & (pl.col("route") == "r1") & (pl.col("parcels") == 20)
    write_dataset(ws, "deliveries", raw.with_columns(pl.col("at").str.to_datetime(time_zone="UTC"), note=pl.when(spoilt).then(pl.lit("x")).otherwise(pl.col("note"))),
                  source={"kind": "test", "location": "inline"}, mode="overwrite")
    apply(ws, route(note_number="CAST(note AS INTEGER)"))
    before, builds = latest_version(ws, offline_table("route_load")), len(list_builds(ws, "route_load"))
    from distributed import Client, get_task_stream
    with Client(cluster.address, set_as_default=False) as c, get_task_stream(client=c) as stream:
        with pytest.raises(InvalidInput, match=r"feature view 'route_load' could not be computed from dataset 'deliveries' v1 \(InvalidOperationError: "
                                               r"conversion from `str` to `i32` failed.*nothing was written"):
            build_features(ws, "route_load")
    assert sorted(t["status"] for t in stream.data if str(t["key"]).startswith("build_bucket")) == ["OK", "error"]  # one bucket wrote its files
    assert latest_version(ws, offline_table("route_load")).version == before.version
    assert len(list_builds(ws, "route_load")) == builds
    assert stray_files(ws, "route_load", endpoint, bucket) == set()
    assert not [p for p in ws.root.rglob("*.parquet")], "table files in the workspace folder: the storage is the bucket"
