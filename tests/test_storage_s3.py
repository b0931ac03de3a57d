"""Datasets on S3-compatible object storage: the `s3://` storage backend against a real server (moto's, in its own
process), with its keys read from the workspace's secrets store, metadata on SQLite or a real PostgreSQL.

The same writes on `file://` and `s3://` give the same rows, versions and fingerprints. A failed write leaves the bucket
as it was; a writer killed between its Delta commit and its record is reconciled by the next one; two processes
appending at once both land. A server that ignores conditional writes is refused by name, and bad options are refused
before anything is written. Each of it on the lending demo's shape and on a second table of another shape.
"""
import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from mlops_workbench.core.errors import InvalidInput, MLWError, NotFound, NotSupported
from mlops_workbench.core.storage import (commit_tag, dataset_versions_of, read_dataset, reconcile_dataset, scan_partitions,
                                          write_dataset, S3Storage)
from mlops_workbench.core.workspace import Workspace
from conftest import edit_settings
from pg import pg_new_database, pg_server  # noqa: F401
from s3_server import KEY_ID, SECRET, bucket_keys, strip_conditions_proxy

PREFIX = "team/data"


def s3_workspace(root: Path, endpoint: str, bucket: str, metadata: str | None = None, options: dict | None = None) -> Workspace:
    """A workspace whose storage is `s3://bucket/team/data`: made on the embedded defaults, its keys stored as secrets, then
    its `mlw.toml` pointed at the bucket, as a user edits it (`mlw.toml` names the secrets; it never holds them)."""
    from mlops_workbench.security.secrets import put_secret
    ws = Workspace.init(root, backends={"metadata": metadata} if metadata else None, env={})
    put_secret(ws, "storage.access_key_id", KEY_ID, who="ops")
    put_secret(ws, "storage.secret_access_key", SECRET, who="ops")
    ws.close()
    edit_settings(root, {"storage": f"s3://{bucket}/{PREFIX}"},
                  {"storage": {"endpoint": endpoint, "region": "us-east-1", "allow_http": True, "access_key_id": "secret:storage.access_key_id",
                               "secret_access_key": "secret:storage.secret_access_key", **(options or {})}})
    return Workspace.open(root, env={})


def loans(n: int = 40) -> pl.DataFrame:
    "The demo's shape: an id, a binary target, numeric features, a timestamp."
    return pl.DataFrame({"application_id": [f"a{i:04d}" for i in range(n)], "income": [1000.0 + 37 * i for i in range(n)],
                         "defaulted": [i % 3 == 0 for i in range(n)],
                         "event_timestamp": [dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=i) for i in range(n)]})


def readings(n: int = 30) -> pl.DataFrame:
    "A second shape: a regression target, no id column, text categoricals, nulls in the key, dates as strings."
    return pl.DataFrame({"site": [None if i % 7 == 0 else ["dock a", "yard 7", "pier"][i % 3] for i in range(n)],
                         "day": [f"2026-02-{1 + i % 5:02d}" for i in range(n)], "kwh": [0.5 * i - 3 for i in range(n)],
                         "grade": [["low", "mid", "high"][i % 3] for i in range(n)]})


@pytest.fixture
def s3_ws(tmp_path, s3_endpoint, s3_bucket):
    ws = s3_workspace(tmp_path / "ws", s3_endpoint, s3_bucket)
    yield ws
    ws.close()


def same_rows(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    "The same rows in any order (a table's files are read in no set order)."
    return a.sort(a.columns, nulls_last=True).equals(b.sort(b.columns, nulls_last=True))


def table_keys(endpoint, bucket, name):
    return bucket_keys(endpoint, bucket, f"{PREFIX}/{name}/")


@pytest.mark.parametrize("make", [loans, readings], ids=["loans", "readings"])
def test_the_same_writes_give_the_same_versions_on_file_and_s3(tmp_path, s3_ws, s3_endpoint, s3_bucket, make):
    local = Workspace.init(tmp_path / "local", env={})
    data = make()
    try:
        for ws in (local, s3_ws):
            write_dataset(ws, "t", data.head(10), source={"kind": "inline"})
            write_dataset(ws, "t", data.slice(10, 10), source={"kind": "inline"})
            write_dataset(ws, "t", data.slice(20), source={"kind": "inline"}, mode="overwrite")
        on_file, on_s3 = dataset_versions_of(local, "t"), dataset_versions_of(s3_ws, "t")
        assert [(v.version, v.operation, v.row_count, v.schema) for v in on_s3] == [(v.version, v.operation, v.row_count, v.schema) for v in on_file]
        assert [v.fingerprint for v in on_s3] == [v.fingerprint for v in on_file]  # the same bytes, hashed through the object store
        for version in (0, 1, 2):
            assert same_rows(read_dataset(s3_ws, "t", version).collect(), read_dataset(local, "t", version).collect())
        assert same_rows(read_dataset(s3_ws, "t").collect(), data.slice(20))
        assert any(k.startswith(f"{PREFIX}/t/_delta_log/") for k in table_keys(s3_endpoint, s3_bucket, "t"))
        assert s3_ws.backend("storage").files("t") == {k.removeprefix(f"{PREFIX}/t/") for k in table_keys(s3_endpoint, s3_bucket, "t")}
    finally:
        local.close()


def test_merge_and_partition_ranges_on_s3(s3_ws, tmp_path):
    from mlops_workbench.data.ingest import ingest
    from mlops_workbench.data.sources import ParquetSource
    data = readings(60).with_columns(pl.col("site").fill_null("unknown")).unique(["site", "day"], keep="first", maintain_order=True)
    assert data.height == 20
    data.head(12).write_parquet(tmp_path / "first.parquet")
    data.slice(8).with_columns(pl.col("kwh") + 100).write_parquet(tmp_path / "changed.parquet")
    first = ingest(s3_ws, "sites", ParquetSource(str(tmp_path / "first.parquet")), mode="merge", keys=["site", "day"]).version
    merged = ingest(s3_ws, "sites", ParquetSource(str(tmp_path / "changed.parquet")), mode="merge", keys=["site", "day"]).version
    assert (first.version, merged.version, merged.operation) == (0, 1, "merge")
    assert merged.row_count == data.height
    assert read_dataset(s3_ws, "sites").collect().sort("site", "day")["kwh"].to_list() == \
        data.with_columns(pl.when(pl.int_range(pl.len()) >= 8).then(pl.col("kwh") + 100).otherwise(pl.col("kwh"))).sort("site", "day")["kwh"].to_list()
    days = pl.DataFrame({"day": [dt.date(2026, 3, d) for d in (3, 1, 2, 2)], "n": [3, 1, 2, 22]})
    v = write_dataset(s3_ws, "days", days, source={}, partition_by=["day"])
    assert scan_partitions(s3_ws, "days", v.version, "day", "2026-03-02", "2026-03-03").collect()["n"].sort().to_list() == [2, 3, 22]


def _die_after_commit(ws, name, df):
    "What a writer killed between its Delta commit and its record leaves on the bucket: the commit, tagged, and no record."
    store = ws.backend("storage")
    df.lazy().sink_delta(store.table_uri(name), mode="append", storage_options=store.storage_options,
                         delta_write_options={"commit_properties": commit_tag(name)})


@pytest.mark.parametrize("make", [loans, readings], ids=["loans", "readings"])
def test_a_dead_writers_commit_is_removed_by_the_next_writer(s3_ws, s3_endpoint, s3_bucket, make):
    data = make()
    write_dataset(s3_ws, "t", data.head(10), source={})
    kept = table_keys(s3_endpoint, s3_bucket, "t")
    _die_after_commit(s3_ws, "t", data.slice(10, 5))
    assert len(table_keys(s3_endpoint, s3_bucket, "t")) > len(kept)
    with s3_ws.metadata.lock("dataset:t"):
        assert reconcile_dataset(s3_ws, "t") == [1]
    assert table_keys(s3_endpoint, s3_bucket, "t") == kept  # its data file and its commit are gone
    v = write_dataset(s3_ws, "t", data.slice(20, 3), source={})
    assert (v.version, v.row_count) == (1, 13)
    assert same_rows(read_dataset(s3_ws, "t").collect(), pl.concat([data.head(10), data.slice(20, 3)]))
    _die_after_commit(s3_ws, "orphan", data.head(3))  # a brand-new dataset whose only commit is stray: all of it goes
    with s3_ws.metadata.lock("dataset:orphan"):
        assert reconcile_dataset(s3_ws, "orphan") == [0]
    assert table_keys(s3_endpoint, s3_bucket, "orphan") == set()


def test_a_record_the_database_refuses_leaves_the_bucket_as_it_was(tmp_path, s3_endpoint, s3_bucket, pg_new_database):
    import sqlalchemy as sa
    ws = s3_workspace(tmp_path / "ws", s3_endpoint, s3_bucket, metadata=pg_new_database())
    try:
        write_dataset(ws, "t", readings().head(10), source={})
        before = table_keys(s3_endpoint, s3_bucket, "t")
        with ws.metadata.begin() as c:
            # a rule of the database's own that the next records break (NOT VALID: the existing v0 is not checked)
            c.execute(sa.text("ALTER TABLE dataset_versions ADD CONSTRAINT no_new_versions_today CHECK (version < 1 AND dataset <> 'fresh') NOT VALID"))
        for mode in ("append", "overwrite"):
            with pytest.raises(MLWError, match="no_new_versions_today.*its Delta commit was removed, nothing was written"):
                write_dataset(ws, "t", readings().slice(10), source={}, mode=mode)
            assert table_keys(s3_endpoint, s3_bucket, "t") == before, mode
        with pytest.raises(MLWError, match="no_new_versions_today"):
            write_dataset(ws, "fresh", loans(5), source={})
        assert table_keys(s3_endpoint, s3_bucket, "fresh") == set()  # a table the failed write made is gone entirely
        assert [v.version for v in dataset_versions_of(ws, "t")] == [0]
        assert same_rows(read_dataset(ws, "t").collect(), readings().head(10))
    finally:
        ws.close()


WRITER = textwrap.dedent('''
    import sys, polars as pl
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.core.storage import write_dataset
    ws = Workspace.open(sys.argv[1], env={})
    who = sys.argv[2]
    for i in range(int(sys.argv[3])):
        write_dataset(ws, "shared", pl.DataFrame({"who": [who] * 3, "i": [i] * 3, "site": [None, "dock a", "pier"]}), source={"kind": who})
    ws.close()
''')


def test_two_processes_appending_to_one_dataset_both_land(tmp_path, s3_endpoint, s3_bucket, pg_new_database):
    "Two users on the team profile (PostgreSQL metadata: its advisory lock holds across machines) append to one dataset at once."
    ws = s3_workspace(tmp_path / "ws", s3_endpoint, s3_bucket, metadata=pg_new_database())
    try:
        n = 4
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(ws.root), who, str(n)], stderr=subprocess.PIPE, text=True) for who in ("ann", "bob")]
        for w in writers:
            _, err = w.communicate(timeout=600)
            assert w.returncode == 0, err[-3000:]
        versions = dataset_versions_of(ws, "shared")
        assert [v.version for v in versions] == list(range(2 * n))  # contiguous: every write recorded, none lost
        assert sorted(v.source["kind"] for v in versions) == ["ann"] * n + ["bob"] * n
        rows = read_dataset(ws, "shared").collect()
        assert rows.height == versions[-1].row_count == 2 * n * 3
        assert rows.group_by("who").len().sort("who").rows() == [("ann", 3 * n), ("bob", 3 * n)]
    finally:
        ws.close()


def test_a_server_that_ignores_conditional_writes_is_refused(tmp_path, s3_endpoint, s3_bucket):
    with strip_conditions_proxy(s3_endpoint) as proxy:
        ws = s3_workspace(tmp_path / "ws", proxy, s3_bucket)
        try:
            with pytest.raises(NotSupported, match=r"does not honour conditional writes \(If-None-Match\).*lose rows silently"):
                write_dataset(ws, "t", loans(5), source={})
        finally:
            ws.close()
    assert bucket_keys(s3_endpoint, s3_bucket) == set()  # nothing written, the probe's object removed


def test_bad_storage_settings_are_refused_by_name_before_anything_is_written(tmp_path, s3_endpoint, s3_bucket):
    cases = [({"secret_access_key": SECRET}, InvalidInput, r"secret_access_key is written in clear; store it with `mlw secrets set storage.secret_access_key`"),
             ({"secret_access_key": "secret:storage.nope"}, NotFound, r"refers to secret 'storage.nope', which is not set; set it with `mlw secrets set storage.nope`"),
             ({"endpont": s3_endpoint}, InvalidInput, r"\['endpont'\] are not options of s3:// storage"),
             ({"endpoint": "http://127.0.0.1:9"}, MLWError, r"cannot write to the bucket .*check \[backend_options.storage\]")]
    for i, (options, error, message) in enumerate(cases):
        ws = s3_workspace(tmp_path / f"ws{i}", s3_endpoint, s3_bucket, options=options)
        try:
            with pytest.raises(error, match=message) as raised:
                write_dataset(ws, "t", readings(5), source={})
            assert SECRET not in str(raised.value)
            assert dataset_versions_of(ws, "t") == []
        finally:
            ws.close()
    assert bucket_keys(s3_endpoint, s3_bucket) == set()
    with pytest.raises(InvalidInput, match="name a bucket"):
        from mlops_workbench.core.storage import s3_storage
        s3_storage("s3://", None)


def test_the_keys_never_show(s3_ws):
    store = s3_ws.backend("storage")
    assert isinstance(store, S3Storage)
    assert SECRET not in repr(store) and KEY_ID not in repr(store)
    assert SECRET not in (s3_ws.root / "mlw.toml").read_text()
    from mlops_workbench.security.secrets import redact
    assert SECRET not in redact(str(store.storage_options))
