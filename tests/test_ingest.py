"""Ingestion against real sources: files of every kind, SQLite and a real PostgreSQL, a loopback HTTP server;
incremental reads; the append, overwrite and merge modes; every bad input with its message; a failed ingestion leaves
the dataset's folder byte for byte as it was; a larger-than-memory input streams."""
import functools, hashlib, http.server, json, os, shutil, sqlite3, subprocess, sys, threading
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
import yaml

from conftest import free_port
from pg import pg_server, pg_new_database  # noqa: F401 (fixtures)
from mlops_workbench.core.errors import *
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.core.metadata import datasets
from mlops_workbench.core.storage import read_dataset, dataset_version, dataset_versions_of
from mlops_workbench.data.sources import *
from mlops_workbench.data.ingest import *
from mlops_workbench.data.sources import _reading


def delta_log(ws, name) -> list[str]:
    "The commit files of dataset `name`'s Delta table."
    return sorted(p.name for p in (Path(ws.backend("storage").table_uri(name)) / "_delta_log").glob("*.json"))


def rows(ws, name, version=None) -> pl.DataFrame:
    return read_dataset(ws, name, version).collect()


# ---------------------------------------------------------------- configs

def test_source_configs_round_trip_through_yaml(tmp_path):
    configs = [CsvSource("a.csv", delimiter=";", encoding="latin-1", null_values=["NA"]), ParquetSource("a.parquet"),
               JsonSource("a.json"), NdjsonSource("a.ndjson", infer_schema_length=None), DeltaSource("t", version=3, watermark_column="ts"),
               SqlSource("sqlite:///x.db", table="t", watermark_column="id", dtypes={"x": "String"}),
               HttpSource("https://example.org/a.csv", options={"delimiter": ";"}, headers_env={"Authorization": "TOKEN"}),
               FolderSource("landing/*.csv", format="csv", options={"has_header": False, "columns": ["a", "b"]})]
    assert sorted(c.kind for c in configs) == sorted(SOURCES)
    for c in configs:
        assert Source.from_dict(yaml.safe_load(yaml.safe_dump(c.to_dict()))) == c


def test_source_config_errors():
    with pytest.raises(InvalidInput, match=r"source kind 'excel' is unknown; kinds: csv, parquet, .*folder"):
        Source.from_dict({"kind": "excel", "path": "a.xlsx"})
    with pytest.raises(InvalidInput, match=r"csv source: option\(s\) \['sep'\] are unknown; options: path, delimiter"):
        Source.from_dict({"kind": "csv", "path": "a.csv", "sep": ";"})
    with pytest.raises(InvalidInput, match=r"option\(s\) \['path'\] are required"):
        Source.from_dict({"kind": "parquet"})
    with pytest.raises(InvalidInput, match="exactly one of table= or query="):
        SqlSource("sqlite:///x.db")
    with pytest.raises(InvalidInput, match="encoding 'klingon' is unknown"):
        CsvSource("a.csv", encoding="klingon")
    with pytest.raises(InvalidInput, match="format 'xlsx' is unknown"):
        FolderSource("landing", format="xlsx")


def test_records_hold_no_secrets():
    s = SqlSource("postgresql://ann:hunter2@db.example:5432/shop", table="orders")
    assert "hunter2" not in json.dumps(s.record()) and s.record()["uri"] == "postgresql://ann:***@db.example:5432/shop"
    h = HttpSource("https://ann:hunter2@example.org/x.csv?day=3&sig=abcdef")
    assert h.record()["url"] == "https://example.org/x.csv?day=3&sig=***"
    assert "hunter2" not in json.dumps(h.record()) and "abcdef" not in json.dumps(h.record())


# ---------------------------------------------------------------- file kinds

def test_csv_options(ws, tmp_path):
    (tmp_path / "semi.csv").write_bytes("id;name;score\n1;Zoë;NA\n2;Åsa;3.5\n".encode("latin-1"))
    res = ingest(ws, "people", CsvSource(str(tmp_path / "semi.csv"), delimiter=";", encoding="latin-1", null_values=["NA"]))
    df = rows(ws, "people").sort("id")
    assert df["name"].to_list() == ["Zoë", "Åsa"] and df["score"].to_list() == [None, 3.5]
    assert res.version.schema == {"id": "Int64", "name": "String", "score": "Float64"}
    assert res.version.source["encoding"] == "latin-1" and res.version.source["files"][0]["size"] == (tmp_path / "semi.csv").stat().st_size

    (tmp_path / "nohdr.csv").write_text("1,a\n2,b\n")
    ingest(ws, "nohdr", CsvSource(str(tmp_path / "nohdr.csv"), has_header=False, columns=["k", "v"]))
    assert rows(ws, "nohdr").sort("k").to_dicts() == [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]

    ingest(ws, "strings", CsvSource(str(tmp_path / "nohdr.csv"), has_header=False, columns=["k", "v"], all_strings=True))
    assert dataset_version(ws, "strings").schema == {"k": "String", "v": "String"}

    (tmp_path / "lossy.csv").write_bytes(b"id,name\n1,caf\xe9\n")
    ingest(ws, "lossy", CsvSource(str(tmp_path / "lossy.csv"), encoding="utf8-lossy"))
    assert rows(ws, "lossy")["name"][0] == "caf\ufffd"

    (tmp_path / "utf16.csv").write_text("id,name\n1,Zoë\n", encoding="utf-16")
    ingest(ws, "utf16", CsvSource(str(tmp_path / "utf16.csv"), encoding="utf-16"))
    assert rows(ws, "utf16")["name"][0] == "Zoë"
    assert not list(ws.path(".tmp").glob("*")), "scratch copies are removed"


def test_parquet_json_ndjson(ws, tmp_path):
    df = pl.DataFrame({"id": [1, 2, 3], "tags": [["a"], [], ["b", "c"]], "when": [None, "2025-01-01", "2025-01-02"]})
    df.write_parquet(tmp_path / "a.parquet"); df.write_json(tmp_path / "a.json"); df.write_ndjson(tmp_path / "a.ndjson")
    for kind, src in [("parquet", ParquetSource(str(tmp_path / "a.parquet"))), ("json", JsonSource(str(tmp_path / "a.json"))),
                      ("ndjson", {"kind": "ndjson", "path": str(tmp_path / "a.ndjson")})]:
        res = ingest(ws, f"t_{kind}", src)
        assert res.rows_added == 3 and res.version.source["kind"] == kind
        assert rows(ws, f"t_{kind}").sort("id").equals(df), kind


def test_delta_source_version_and_watermark(ws, tmp_path):
    table = str(tmp_path / "lake")
    pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}).write_delta(table)
    pl.DataFrame({"id": [3], "v": ["c"]}).write_delta(table, mode="append")
    assert ingest(ws, "v0", DeltaSource(table, version=0)).rows_added == 2
    src = DeltaSource(table, watermark_column="id")
    first = ingest(ws, "lake", src, incremental=True)
    assert (first.rows_added, first.watermark) == (3, {"column": "id", "value": 3})
    pl.DataFrame({"id": [4, 5], "v": ["d", "e"]}).write_delta(table, mode="append")
    second = ingest(ws, "lake", src, incremental=True)
    assert second.rows_added == 2 and sorted(rows(ws, "lake")["id"]) == [1, 2, 3, 4, 5]
    assert not ingest(ws, "lake", src, incremental=True).written
    with pytest.raises(NotFound, match="does not exist"):
        ingest(ws, "x", DeltaSource(str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound, match="is not a Delta table"):
        ingest(ws, "x", DeltaSource(str(tmp_path / "empty")))


# ---------------------------------------------------------------- SQL

def test_sqlite_table_query_and_types(ws, tmp_path):
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, placed TIMESTAMP, paid BOOLEAN, day DATE, note)")
        con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [(i, f"c{i % 7}", i * 1.5, f"2025-01-01 10:{i % 60:02d}:00", i % 2, "2025-02-03", f"n{i}") for i in range(1, 2501)])
    res = ingest(ws, "orders", SqlSource(f"sqlite:///{db}", table="orders", batch_size=1000))
    assert res.rows_added == 2500
    assert res.version.schema == {"id": "Int64", "customer": "String", "amount": "Float64", "placed": "Datetime(time_unit='us', time_zone=None)",
                                  "paid": "Boolean", "day": "Date", "note": "String"}
    res = ingest(ws, "big_orders", {"kind": "sql", "uri": f"sqlite:///{db}", "query": "SELECT id, amount FROM orders WHERE amount > 3000;"})
    assert res.rows_added == sum(1 for i in range(1, 2501) if i * 1.5 > 3000)
    assert res.version.source["location"].startswith(f"sqlite:///{db}#query:")
    with pytest.raises(InvalidInput, match=r"column 'amount' has 1,250 value\(s\) that are not Int64, e.g. 1.5 \(row 1\)"):
        ingest(ws, "orders_cast", SqlSource(f"sqlite:///{db}", table="orders", batch_size=700), cast={"amount": "Int64"})  # never truncated
    res = ingest(ws, "orders_cast", SqlSource(f"sqlite:///{db}", table="orders", batch_size=700), cast={"amount": "Int64", "note": "Categorical"},
                 strict_cast=False)
    assert res.version.schema["amount"] == "Int64" and res.cast_nulls == {"amount": 1250, "note": 0}
    res = ingest(ws, "query_cast", SqlSource(f"sqlite:///{db}", query="SELECT id, amount FROM orders", batch_size=700), cast={"id": "Int32"})
    assert res.version.schema == {"id": "Int32", "amount": "Float64"} and res.rows_added == 2500
    with pytest.raises(NotFound, match=r"table 'nope' not found; tables: orders"):
        ingest(ws, "x", SqlSource(f"sqlite:///{db}", table="nope"))
    with pytest.raises(NotFound, match="SQLite database file .* does not exist"):
        ingest(ws, "x", SqlSource(f"sqlite:///{tmp_path}/missing.db", table="t"))
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(InvalidInput, match="the database refused the read .*no such column"):
        ingest(ws, "x", SqlSource(f"sqlite:///{db}", query="SELECT missing_col FROM orders"))


def test_sql_streams_in_batches(ws, tmp_path):
    db = tmp_path / "n.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (id INTEGER, s TEXT)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 100) for i in range(10_000)])
    with _reading(ws) as r:
        lf = SqlSource(f"sqlite:///{db}", table="t", batch_size=1_000).scan(r)
        assert "PYTHON" in lf.explain()  # an IO-plugin scan, not an in-memory frame
        sizes = [b.height for b in lf.collect_batches()]
    assert sum(sizes) == 10_000 and max(sizes) <= 1_000


def test_sql_watermark_incremental(ws, tmp_path):
    db = tmp_path / "ev.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE ev (id INTEGER, at TIMESTAMP)")
        con.executemany("INSERT INTO ev VALUES (?, ?)", [(i, f"2025-01-01 00:00:{i:02d}") for i in range(10)])
    by_time = SqlSource(f"sqlite:///{db}", table="ev", watermark_column="at")
    first = ingest(ws, "ev", by_time, incremental=True)
    assert first.rows_added == 10 and first.watermark["value"] == {"datetime": "2025-01-01T00:00:09"}
    assert not ingest(ws, "ev", by_time, incremental=True).written
    with sqlite3.connect(db) as con: con.executemany("INSERT INTO ev VALUES (?, ?)", [(i, f"2025-01-01 00:01:{i:02d}") for i in range(10, 13)])
    second = ingest(ws, "ev", by_time, incremental=True)
    assert second.rows_added == 3 and sorted(rows(ws, "ev")["id"]) == list(range(13))
    with pytest.raises(InvalidInput, match="incremental=True needs a folder source .* or a table source with watermark_column"):
        ingest(ws, "ev2", SqlSource(f"sqlite:///{db}", table="ev"), incremental=True)
    with pytest.raises(InvalidInput, match="watermark column 'nope' is not in the table; columns: id, at"):
        ingest(ws, "ev2", SqlSource(f"sqlite:///{db}", table="ev", watermark_column="nope"))


def test_postgresql_source(ws, pg_new_database, monkeypatch):
    uri = pg_new_database()
    eng = sa.create_engine(uri.replace("postgresql://", "postgresql+psycopg://"))
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE events (id bigint PRIMARY KEY, name text, amount numeric(10,2), happened timestamptz, ok boolean, day date)"))
        c.execute(sa.text("INSERT INTO events SELECT i, 'e' || i, i * 1.25, TIMESTAMPTZ '2025-01-01 00:00:00+00' + i * INTERVAL '1 minute', i % 2 = 0, "
                          "DATE '2025-01-01' + i FROM generate_series(1, 2500) AS i"))
    src = SqlSource(uri, table="events", watermark_column="id", batch_size=1000)
    res = ingest(ws, "events", src, incremental=True)
    assert res.rows_added == 2500 and res.watermark["value"] == 2500
    assert res.version.schema == {"id": "Int64", "name": "String", "amount": "Decimal(precision=10, scale=2)",
                                  "happened": "Datetime(time_unit='us', time_zone='UTC')", "ok": "Boolean", "day": "Date"}
    first = rows(ws, "events").sort("id").row(0, named=True)
    assert str(first["happened"]) == "2025-01-01 00:01:00+00:00"  # UTC, whatever the server's time zone (Asia/Kolkata)
    with eng.begin() as c:
        c.execute(sa.text("INSERT INTO events SELECT i, 'e' || i, 0, now(), true, CURRENT_DATE FROM generate_series(2501, 2510) AS i"))
    assert ingest(ws, "events", src, incremental=True).rows_added == 10
    with pytest.raises(InvalidInput, match=r"duplicate column names \['id'\]; alias them"):
        ingest(ws, "x", SqlSource(uri, query="SELECT id, id FROM events"))
    res = ingest(ws, "paid", SqlSource(uri, query="SELECT id, name FROM events WHERE ok"))
    assert res.rows_added == 1250 + 10
    # the password comes from the environment, never the record
    with eng.begin() as c: c.execute(sa.text("CREATE ROLE reader LOGIN PASSWORD 'pw-in-env'; GRANT SELECT ON events TO reader"))
    monkeypatch.setenv("MLW_TEST_PG_PASSWORD", "pw-in-env")
    res = ingest(ws, "as_reader", SqlSource(uri.replace("postgres@", "reader@"), table="events", password_env="MLW_TEST_PG_PASSWORD"))
    assert res.rows_added == 2510 and "pw-in-env" not in json.dumps(res.version.source)
    eng.dispose()


def test_database_refusing_the_connection_names_the_uri_without_password(ws):
    uri = f"postgresql://mlw:s3cretpw@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(MLWError, match=r"sql source 'postgresql://mlw:\*\*\*@127.0.0.1:\d+/nothing': cannot connect \(.*refused") as e:
        ingest(ws, "x", SqlSource(uri, table="t", connect_timeout=3))
    assert "s3cretpw" not in str(e.value)
    with pytest.raises(NotFound): dataset_version(ws, "x")


# ---------------------------------------------------------------- HTTP

@pytest.fixture
def web(tmp_path):
    "A loopback HTTP server over tmp_path/www: /private/ needs 'Bearer s3cret', /slow/ answers after the test ends."
    root, release = tmp_path / "www", threading.Event()
    (root / "private").mkdir(parents=True); (root / "slow").mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            if self.path.startswith("/slow/"): release.wait(30)
            if self.path.startswith("/private/") and self.headers.get("Authorization") != "Bearer s3cret": return self.send_error(401)
            super().do_GET()

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address): pass  # a client that timed out and left

    server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    release.set(); server.shutdown(); server.server_close()


def test_http_source(ws, web, monkeypatch):
    root, base = web
    pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}).write_csv(root / "data.csv", separator=";")
    pl.DataFrame({"id": [3]}).write_parquet(root / "private" / "p.parquet")
    res = ingest(ws, "web", HttpSource(f"http://annuser:pwsecret@{base[7:]}/data.csv?token=tokensecret", options={"delimiter": ";"}))
    assert res.rows_added == 2 and res.files_read == [f"{base}/data.csv?token=***"]
    assert res.version.source["files"][0]["size"] == (root / "data.csv").stat().st_size
    assert not any(secret in json.dumps(res.version.source) for secret in ("annuser", "pwsecret", "tokensecret"))
    monkeypatch.setenv("MLW_TEST_TOKEN", "Bearer wrong")
    with pytest.raises(Unauthorized, match="answered 401"):
        ingest(ws, "priv", HttpSource(f"{base}/private/p.parquet", headers_env={"Authorization": "MLW_TEST_TOKEN"}))
    monkeypatch.setenv("MLW_TEST_TOKEN", "Bearer s3cret")
    assert ingest(ws, "priv", HttpSource(f"{base}/private/p.parquet", headers_env={"Authorization": "MLW_TEST_TOKEN"})).rows_added == 1
    with pytest.raises(NotFound, match="answered 404"):
        ingest(ws, "x", HttpSource(f"{base}/missing.csv"))
    (root / "empty.csv").write_bytes(b"")
    with pytest.raises(InvalidInput, match=f"csv file '{base}/empty.csv' is empty"):
        ingest(ws, "x", HttpSource(f"{base}/empty.csv"))
    assert not list(ws.path(".tmp").glob("*")), "downloads are removed"


def test_http_env_var_missing(ws, web, monkeypatch):
    monkeypatch.delenv("MLW_TEST_TOKEN", raising=False)
    with pytest.raises(InvalidInput, match="environment variable 'MLW_TEST_TOKEN' .* is not set"):
        ingest(ws, "x", HttpSource(f"{web[1]}/private/p.parquet", headers_env={"Authorization": "MLW_TEST_TOKEN"}))


def test_http_timeout(ws, web):
    root, base = web
    pl.DataFrame({"id": [1]}).write_csv(root / "slow" / "a.csv")
    with pytest.raises(MLWError, match=rf"http source '{base}/slow/a.csv': timed out after 0.5 s"):
        ingest(ws, "slow", HttpSource(f"{base}/slow/a.csv", timeout=0.5))
    with pytest.raises(NotFound): dataset_version(ws, "slow")


def test_http_refused(ws):
    with pytest.raises(MLWError, match=r"download failed \(ConnectError"):
        ingest(ws, "x", HttpSource(f"http://127.0.0.1:{free_port()}/a.csv", timeout=3))


# ---------------------------------------------------------------- folders, incremental

def test_folder_incremental_reads_new_files_only(ws, tmp_path):
    land = tmp_path / "landing"; land.mkdir()
    def drop(name, ids): pl.DataFrame({"id": ids, "v": [f"v{i}" for i in ids]}).write_csv(land / name)
    drop("a.csv", [1, 2]); drop("b.csv", [3])
    (land / ".c.csv.123.tmp").write_text("half written"); (land / "notes.txt").write_text("ignored")
    src = FolderSource(str(land), format="csv")
    first = ingest(ws, "inbox", src, incremental=True)
    assert [Path(f).name for f in first.files_read] == ["a.csv", "b.csv"] and first.version.version == 0
    drop("c.csv", [4, 5])
    second = ingest(ws, "inbox", src, incremental=True)
    assert [Path(f).name for f in second.files_read] == ["c.csv"] and second.rows_added == 2 and second.version.parent_version == 0
    third = ingest(ws, "inbox", src, incremental=True)
    assert not third.written and "nothing new" in third.note and delta_log(ws, "inbox") == ["00000000000000000000.json", "00000000000000000001.json"]
    os.utime(land / "a.csv", ns=(1, 1))  # touched, same content: still known
    assert not ingest(ws, "inbox", src, incremental=True).written
    drop("a.csv", [1, 2, 99])  # rewritten with new rows: re-reading it would duplicate 1 and 2
    with pytest.raises(Conflict, match="file 'a.csv' changed since it was ingested"):
        ingest(ws, "inbox", src, incremental=True)
    assert sorted(rows(ws, "inbox")["id"]) == [1, 2, 3, 4, 5]
    # a glob, and a non-incremental read of everything
    assert ingest(ws, "globbed", FolderSource(str(land / "[bc].csv"))).rows_added == 3
    with pytest.raises(NotFound, match="no csv files match"):
        ingest(ws, "x", FolderSource(str(land / "*.zip"), format="csv"))


def test_incremental_state_survives_a_crash_between_commit_and_state(ws, tmp_path):
    land = tmp_path / "landing"; land.mkdir()
    pl.DataFrame({"id": [1]}).write_parquet(land / "1.parquet")
    ingest(ws, "s", FolderSource(str(land)), incremental=True)
    with ws.metadata.begin() as c: c.execute(datasets.update().where(datasets.c.name == "s").values(watermark=None))  # the state update never ran
    assert not ingest(ws, "s", FolderSource(str(land)), incremental=True).written  # replayed from the version's record
    pl.DataFrame({"id": [2]}).write_parquet(land / "2.parquet")
    assert ingest(ws, "s", FolderSource(str(land)), incremental=True).rows_added == 1


def test_folder_with_mixed_formats_or_headers(ws, tmp_path):
    land = tmp_path / "mixed"; land.mkdir()
    pl.DataFrame({"id": [1]}).write_csv(land / "a.csv"); pl.DataFrame({"id": [1]}).write_parquet(land / "b.parquet")
    with pytest.raises(InvalidInput, match=r"several formats \(csv, parquet\); pass format="):
        ingest(ws, "x", FolderSource(str(land)))
    pl.DataFrame({"id": [1], "extra": [2]}).write_csv(land / "c.csv")
    with pytest.raises(InvalidInput, match="have different columns"):
        ingest(ws, "x", FolderSource(str(land), format="csv"))


# ---------------------------------------------------------------- schema and coercion

def test_cast_strict_and_lenient(ws, tmp_path):
    (tmp_path / "a.csv").write_text("id,amount,when,ok\n1,10.5,2025-01-02,yes\n2,n/a,2025-01-03,no\n3,12,bad,true\n")
    src = CsvSource(str(tmp_path / "a.csv"))
    with pytest.raises(InvalidInput, match=r"column 'amount' has 1 value\(s\) that are not Float64, e.g. 'n/a' \(row 2\); .*strict_cast=False.*other columns with such values: when \(1\)"):
        ingest(ws, "c", src, cast={"amount": "Float64", "when": "Date", "ok": "Boolean"})
    res = ingest(ws, "c", src, cast={"amount": "Float64", "when": "Date", "ok": "Boolean"}, strict_cast=False)
    assert res.cast_nulls == {"amount": 1, "when": 1, "ok": 0}
    assert res.version.schema == {"id": "Int64", "amount": "Float64", "when": "Date", "ok": "Boolean"}
    assert rows(ws, "c").sort("id")["amount"].to_list() == [10.5, None, 12.0]
    with pytest.raises(InvalidInput, match=r"cast names columns \['nope'\] that the source does not have"):
        ingest(ws, "c2", src, cast={"nope": "Int64"})
    with pytest.raises(InvalidInput, match="'Money' is not a polars dtype"):
        ingest(ws, "c2", src, cast={"amount": "Money"})


def test_schema_policy(ws, tmp_path):
    pl.DataFrame({"id": [1]}).write_parquet(tmp_path / "v1.parquet")
    pl.DataFrame({"id": [2], "extra": ["x"]}).write_parquet(tmp_path / "v2.parquet")
    pl.DataFrame({"id": ["3"], "extra": ["y"]}).write_parquet(tmp_path / "v3.parquet")
    ingest(ws, "strict", ParquetSource(str(tmp_path / "v1.parquet")), schema_policy="strict")
    with pytest.raises(InvalidInput, match=r"columns \['extra'\] are new and the schema policy is 'strict'"):
        ingest(ws, "strict", ParquetSource(str(tmp_path / "v2.parquet")))
    with pytest.raises(Conflict, match="has schema policy 'strict', set when it was created"):
        ingest(ws, "strict", ParquetSource(str(tmp_path / "v2.parquet")), schema_policy="allow_added")
    ingest(ws, "open", ParquetSource(str(tmp_path / "v1.parquet")))
    assert ingest(ws, "open", ParquetSource(str(tmp_path / "v2.parquet"))).version.schema == {"id": "Int64", "extra": "String"}
    with pytest.raises(InvalidInput, match=r"column types changed \(id: Int64 -> String\); cast them"):
        ingest(ws, "open", ParquetSource(str(tmp_path / "v3.parquet")))
    assert ingest(ws, "open", ParquetSource(str(tmp_path / "v3.parquet")), cast={"id": "Int64"}).rows_added == 1


def test_column_names_spaces_non_ascii_and_normalizing(ws, tmp_path):
    (tmp_path / "a.csv").write_text("Customer ID,prénom,totalAmount\n1,Zoë,3\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"column names \['Customer ID'\] contain spaces.*normalize_columns=True"):
        ingest(ws, "names", CsvSource(str(tmp_path / "a.csv")))
    res = ingest(ws, "names", CsvSource(str(tmp_path / "a.csv")), normalize_columns=True, cast={"Customer ID": "Int32"})
    assert list(res.version.schema) == ["customer_id", "prenom", "total_amount"] and res.version.schema["customer_id"] == "Int32"
    assert res.version.lineage["steps"][0] == {"kind": "rename", "columns": {"Customer ID": "customer_id", "prénom": "prenom", "totalAmount": "total_amount"}}
    (tmp_path / "b.csv").write_text("id,prénom\n1,Zoë\n", encoding="utf-8")
    assert list(ingest(ws, "unicode", CsvSource(str(tmp_path / "b.csv"))).version.schema) == ["id", "prénom"]  # non-ASCII letters are kept
    (tmp_path / "c.csv").write_text("Total,total \n1,2\n")
    with pytest.raises(InvalidInput, match=r"would give columns \['Total', 'total '\] the same name 'total'"):
        ingest(ws, "clash", CsvSource(str(tmp_path / "c.csv")), normalize_columns=True)


# ---------------------------------------------------------------- bad input, each with its message

def test_missing_and_empty_files(ws, tmp_path):
    with pytest.raises(NotFound, match=r"csv file '.*nope.csv' does not exist"):
        ingest(ws, "x", CsvSource(str(tmp_path / "nope.csv")))
    (tmp_path / "zero.csv").write_bytes(b"")
    with pytest.raises(InvalidInput, match=r"csv file '.*zero.csv' is empty \(0 bytes\)"):
        ingest(ws, "x", CsvSource(str(tmp_path / "zero.csv")))
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(InvalidInput, match=r"csv file '.*header.csv' is empty: it has no data rows"):
        ingest(ws, "x", CsvSource(str(tmp_path / "header.csv")))
    (tmp_path / "zero.parquet").write_bytes(b"")
    with pytest.raises(InvalidInput, match="is empty"):
        ingest(ws, "x", ParquetSource(str(tmp_path / "zero.parquet")))
    pl.DataFrame({"a": []}, schema={"a": pl.Int64}).write_parquet(tmp_path / "norows.parquet")
    with pytest.raises(InvalidInput, match="is empty: it has no data rows"):
        ingest(ws, "x", ParquetSource(str(tmp_path / "norows.parquet")))
    with pytest.raises(InvalidInput, match="is a folder; use a folder source"):
        ingest(ws, "x", CsvSource(str(tmp_path)))


def test_wrong_delimiter(ws, tmp_path):
    (tmp_path / "a.csv").write_text("id;name;amount\n1;a;2\n")
    with pytest.raises(InvalidInput, match=r"the first line is one column \('id;name;amount'\); the delimiter is probably ';', not ',': pass delimiter=';'"):
        ingest(ws, "x", CsvSource(str(tmp_path / "a.csv")))
    (tmp_path / "t.tsv").write_text("id\tname\n1\ta\n")
    with pytest.raises(InvalidInput, match=r"pass delimiter='\\t'"):
        ingest(ws, "x", FolderSource(str(tmp_path / "*.tsv")))


def test_non_utf8_bytes_name_offset_and_line(ws, tmp_path):
    head = b"id,name\n" + b"".join(b"%d,plain\n" % i for i in range(30_000))
    (tmp_path / "latin.csv").write_bytes(head + "1,caf\xe9\n".encode("latin-1"))
    offset = len(head) + len(b"1,caf")
    with pytest.raises(InvalidInput, match=rf"csv file '.*latin.csv' is not UTF-8: byte {offset} \(line 30002\) is 0xe9; pass the file's encoding \(e.g. encoding='latin-1'"):
        ingest(ws, "x", CsvSource(str(tmp_path / "latin.csv")))
    assert ingest(ws, "x", CsvSource(str(tmp_path / "latin.csv"), encoding="latin-1")).rows_added == 30_001
    (tmp_path / "notutf16.csv").write_bytes(b"id\n1\n2")  # odd length: not UTF-16
    with pytest.raises(InvalidInput, match="is not valid utf-16"):
        ingest(ws, "y", CsvSource(str(tmp_path / "notutf16.csv"), encoding="utf-16"))


def test_truncated_and_corrupt_parquet(ws, tmp_path):
    pl.DataFrame({"a": range(100_000)}).write_parquet(tmp_path / "ok.parquet")
    b = (tmp_path / "ok.parquet").read_bytes()
    (tmp_path / "trunc.parquet").write_bytes(b[: len(b) // 2])
    with pytest.raises(InvalidInput, match=r"parquet file '.*trunc.parquet' is truncated or corrupt"):
        ingest(ws, "x", ParquetSource(str(tmp_path / "trunc.parquet")))
    bad = bytearray(b); bad[100:200] = b"\0" * 100  # a data page, not the footer
    (tmp_path / "corrupt.parquet").write_bytes(bytes(bad))
    with pytest.raises(InvalidInput, match=r"parquet file '.*corrupt.parquet' is corrupt"):
        ingest(ws, "x", ParquetSource(str(tmp_path / "corrupt.parquet")))
    land = tmp_path / "land"; land.mkdir()
    shutil.copy(tmp_path / "ok.parquet", land / "a.parquet"); shutil.copy(tmp_path / "corrupt.parquet", land / "b.parquet")
    with pytest.raises(InvalidInput, match=r"parquet file '.*land/b.parquet' is corrupt"):
        ingest(ws, "x", FolderSource(str(land)))
    (tmp_path / "junk.parquet").write_text("not parquet at all")
    with pytest.raises(InvalidInput, match="junk.parquet' is truncated or corrupt"):
        ingest(ws, "x", ParquetSource(str(tmp_path / "junk.parquet")))


def test_type_change_mid_file(ws, tmp_path):
    (tmp_path / "a.csv").write_text("id,qty\n" + "".join(f"{i},{i}\n" for i in range(20_000)) + "20000,lots\n")
    with pytest.raises(InvalidInput, match=r"csv file '.*a.csv': column 'qty' looks like Int64 in the first 10,000 rows, but data row 20001 holds 'lots'; "
                                           r"pass cast=\{'qty': 'Int64'\}.*all_strings=True.*infer_schema_length=None"):
        ingest(ws, "x", CsvSource(str(tmp_path / "a.csv")))
    with pytest.raises(InvalidInput, match=r"column 'qty' has 1 value\(s\) that are not Int64, e.g. 'lots' \(row 20001\)"):
        ingest(ws, "x", CsvSource(str(tmp_path / "a.csv")), cast={"qty": "Int64"})
    res = ingest(ws, "x", CsvSource(str(tmp_path / "a.csv")), cast={"qty": "Int64"}, strict_cast=False)
    assert res.cast_nulls == {"qty": 1} and res.rows_added == 20_001
    assert ingest(ws, "y", CsvSource(str(tmp_path / "a.csv"), infer_schema_length=None)).version.schema["qty"] == "String"
    (tmp_path / "a.ndjson").write_text("".join(f'{{"id": {i}, "qty": {i}}}\n' for i in range(20_000)) + '{"id": 1, "qty": "lots"}\n')
    with pytest.raises(InvalidInput, match=r"ndjson file '.*a.ndjson': field 'qty' looks like Int64 in the first objects, but line 20001 holds 'lots'"):
        ingest(ws, "z", NdjsonSource(str(tmp_path / "a.ndjson")))


def test_mixed_types(ws, tmp_path):
    db = tmp_path / "m.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (id INTEGER, qty INTEGER, anything)")
        con.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, i if i != 7 else "seven", i if i < 5 else f"s{i}") for i in range(10)])
    with pytest.raises(InvalidInput, match=r"column 'anything' holds mixed types \(int, str\), e.g. 0 and 's5'; pass dtypes=\{'anything': 'String'\}"):
        ingest(ws, "m", SqlSource(f"sqlite:///{db}", table="t"))
    with pytest.raises(InvalidInput, match=r"column 'qty' is Int64 but row 8 holds 'seven' \(str\): the column has mixed types"):
        ingest(ws, "m", SqlSource(f"sqlite:///{db}", table="t", dtypes={"anything": "String"}))
    res = ingest(ws, "m", SqlSource(f"sqlite:///{db}", table="t", dtypes={"anything": "String", "qty": "String"}))
    assert rows(ws, "m").sort("id")["anything"].to_list()[4:6] == ["4", "s5"] and res.rows_added == 10
    (tmp_path / "m.json").write_text('[{"a": 1}, {"a": "x"}]')  # mixed within the inferred rows: polars reads text
    assert ingest(ws, "mj", JsonSource(str(tmp_path / "m.json"))).version.schema == {"a": "String"}


def test_duplicate_column_names(ws, tmp_path):
    (tmp_path / "a.csv").write_text("id,name,id\n1,a,2\n")
    with pytest.raises(InvalidInput, match=r"column names \['id'\] appear more than once; rename them .* or pass columns="):
        ingest(ws, "x", CsvSource(str(tmp_path / "a.csv")))
    assert list(ingest(ws, "x", CsvSource(str(tmp_path / "a.csv"), columns=["id", "name", "id2"])).version.schema) == ["id", "name", "id2"]
    (tmp_path / "b.csv").write_text("ID,id\n1,2\n")
    with pytest.raises(InvalidInput, match=r"column names \['ID', 'id'\] differ only by case"):
        ingest(ws, "y", CsvSource(str(tmp_path / "b.csv")))


def test_huge_string_cell(ws, tmp_path):
    big = "x" * (50 * 1024 * 1024)
    with open(tmp_path / "big.csv", "w") as fh: fh.write("id,text\n1,"); fh.write(big); fh.write("\n2,short\n")
    res = ingest(ws, "big", CsvSource(str(tmp_path / "big.csv")))
    assert res.rows_added == 2
    assert rows(ws, "big").sort("id")["text"].str.len_bytes().to_list() == [len(big), 5]


def test_null_only_and_undeliverable_types(ws, tmp_path):
    (tmp_path / "n.ndjson").write_text('{"id": 1, "x": null}\n{"id": 2, "x": null}\n')
    with pytest.raises(InvalidInput, match=r"column 'x': it is null in every row read.*cast=\{'x': 'String'\}"):
        ingest(ws, "n", NdjsonSource(str(tmp_path / "n.ndjson")))
    assert ingest(ws, "n", NdjsonSource(str(tmp_path / "n.ndjson")), cast={"x": "Int64"}).version.schema == {"id": "Int64", "x": "Int64"}


# ---------------------------------------------------------------- modes: append, overwrite, merge

def _snapshot(tmp_path, name: str, rows: list[str]) -> CsvSource:
    "A sales export as the shop delivers it: `;`-delimited latin-1 text, no id column, dates as text."
    (tmp_path / f"{name}.csv").write_bytes(("store;day;product;units;revenue\n" + "\n".join(rows) + "\n").encode("latin-1"))
    return CsvSource(str(tmp_path / f"{name}.csv"), delimiter=";", encoding="latin-1")

WEEK1 = ["Zürich;03.03.2025;Käse;12;54.5", "Zürich;03.03.2025;Brot;30;45.0", "Genève;03.03.2025;Käse;7;33.25", "Köln;04.03.2025;Brot;;0.0"]
WEEK2 = WEEK1[:3] + ["Köln;04.03.2025;Brot;20;30.0", "Malmö;10.03.2025;Käse;11;49.5", "Genève;10.03.2025;Brot;21;31.5"]
KEY = ["store", "day", "product"]


def test_merge_snapshots_of_a_table_without_an_id(ws, tmp_path):
    "Full snapshots merged on three text keys: the row count is the number of keys, corrections replace rows, every version reads back."
    w1, w2 = _snapshot(tmp_path, "w1", WEEK1), _snapshot(tmp_path, "w2", WEEK2)
    results = [ingest(ws, "sales", s, mode="merge", keys=KEY) for s in (w1, w2, w2)]
    assert [(r.version.version, r.version.operation, r.rows_added, r.rows_updated, r.version.row_count) for r in results] == \
           [(0, "create", 4, 0, 4), (1, "merge", 2, 4, 6), (2, "merge", 0, 6, 6)]
    assert all(r.version.source["mode"] == "merge" and r.version.source["keys"] == KEY for r in results)
    assert results[1].version.lineage["steps"][-1] == {"kind": "merge", "keys": KEY, "inserted": 2, "updated": 4}
    assert "v1 (merge), 2 rows inserted, 4 updated" in repr(results[1])
    want = lambda week: pl.read_csv(str(tmp_path / f"{week}.csv"), separator=";", encoding="latin-1").sort(KEY)
    assert rows(ws, "sales").sort(KEY).equals(want("w2"))
    assert rows(ws, "sales", 0).sort(KEY).equals(want("w1"))  # time travel to the first delivery
    assert rows(ws, "sales", 1).sort(KEY).equals(rows(ws, "sales", 2).sort(KEY))
    assert results[1].version.fingerprint != results[0].version.fingerprint
    # the same deliveries appended: what merge avoids
    for s in (w1, w2, w2): last = ingest(ws, "sales_appended", s)
    assert (last.version.row_count, last.mode, last.version.source["mode"]) == (4 + 6 + 6, "append", "append")
    # a merge key may be given as one string
    assert ingest(ws, "by_store", _snapshot(tmp_path, "one", WEEK2[-2:]), mode="merge", keys="store").rows_added == 2


def test_overwrite_replaces_the_rows_and_keeps_history(ws, tmp_path):
    w1, w2 = _snapshot(tmp_path, "w1", WEEK1), _snapshot(tmp_path, "w2", WEEK2)
    first, second = ingest(ws, "latest", w1, mode="overwrite"), ingest(ws, "latest", w2, mode="overwrite")
    assert [(r.version.operation, r.rows_added, r.version.row_count, r.version.source["mode"]) for r in (first, second)] == \
           [("create", 4, 4, "overwrite"), ("overwrite", 6, 6, "overwrite")]
    assert rows(ws, "latest").height == 6 and rows(ws, "latest", 0).height == 4
    assert ingest(ws, "latest", w1).version.row_count == 10  # append still adds
    # the schema policy holds for snapshots too: a delivery that lost a column is refused, not narrowed
    files = folder(ws, "latest")
    (tmp_path / "narrow.csv").write_bytes("store;day;product;units\nBern;01.04.2025;Brot;3\n".encode("latin-1"))
    with pytest.raises(InvalidInput, match=r"dataset 'latest' v3 \(overwrite\): the data does not match the dataset's schema: columns \['revenue'\] are missing"):
        ingest(ws, "latest", CsvSource(str(tmp_path / "narrow.csv"), delimiter=";"), mode="overwrite")
    assert folder(ws, "latest") == files


def test_merge_with_a_watermark_is_change_data_capture(ws, tmp_path):
    "Rows changed since the last run (by `updated_at`) merged on the id: the dataset follows the table, updates included."
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE accounts (account TEXT, plan TEXT, seats INTEGER, updated_at TIMESTAMP)")
        con.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?)", [(f"acc-{i}", "basic", i, f"2025-01-01 00:00:{i:02d}") for i in range(10)])
    src = SqlSource(f"sqlite:///{db}", table="accounts", watermark_column="updated_at")
    first = ingest(ws, "accounts", src, mode="merge", keys="account", incremental=True)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE accounts SET plan = 'pro', seats = 50, updated_at = '2025-02-01 00:00:00' WHERE account IN ('acc-3', 'acc-7')")
        con.execute("INSERT INTO accounts VALUES ('acc-10', 'basic', 1, '2025-02-01 00:00:01')")
    second = ingest(ws, "accounts", src, mode="merge", keys="account", incremental=True)
    assert (first.rows_added, second.rows_added, second.rows_updated, second.version.row_count) == (10, 1, 2, 11)
    with sqlite3.connect(db) as con: table = pl.read_database("SELECT account, plan, seats FROM accounts", con)
    assert rows(ws, "accounts").select("account", "plan", "seats").sort("account").equals(table.sort("account"))
    assert not ingest(ws, "accounts", src, mode="merge", keys="account", incremental=True).written


def test_merge_keys_are_checked_before_writing(ws, tmp_path):
    ingest(ws, "sales", _snapshot(tmp_path, "w1", WEEK1), mode="merge", keys=KEY)
    files = folder(ws, "sales")
    nulls = _snapshot(tmp_path, "nulls", WEEK2 + [";11.03.2025;Brot;1;1.5", "Bern;;Käse;2;3.0", ";;Brot;3;4.5"])
    bad = {
        "nulls": (nulls, KEY, r"merge key 'store' is null in 2 row\(s\), 'day' is null in 2 row\(s\) \(first: data row 7\); a row without its key cannot be matched"),
        "duplicates": (_snapshot(tmp_path, "dups", WEEK2 + WEEK2[:2] + WEEK2[:1]), KEY,
                       r"2 merge key\(s\) appear in more than one source row, e.g. store='Zürich', day='03.03.2025', product='Käse' \(3 rows\); "
                       r"store='Zürich', day='03.03.2025', product='Brot' \(2 rows\); a merge needs one row per key"),
        "too few keys": (_snapshot(tmp_path, "w2", WEEK2), ["store", "day"], r"merge key\(s\) appear in more than one source row.*add the column that tells those rows apart"),
        "not in the source": (_snapshot(tmp_path, "w2", WEEK2), ["store", "sku"], r"merge key\(s\) \['sku'\] are not columns of the source; columns: store, day, product, units, revenue"),
        "named twice": (_snapshot(tmp_path, "w2", WEEK2), ["store", "store"], r"merge keys \['store', 'store'\] name a column twice"),
    }
    for case, (src, keys, message) in bad.items():
        with pytest.raises(InvalidInput, match=message): ingest(ws, "sales", src, mode="merge", keys=keys)
        assert folder(ws, "sales") == files, case
    (tmp_path / "more.csv").write_bytes("store;day;product;units;revenue;sku\nBern;01.04.2025;Brot;3;4.5;B-1\n".encode("latin-1"))
    with pytest.raises(InvalidInput, match=r"merge key\(s\) \['sku'\] are not columns of the dataset \(v0 has store, day, product, units, revenue\)"):
        ingest(ws, "sales", CsvSource(str(tmp_path / "more.csv"), delimiter=";", encoding="latin-1"), mode="merge", keys=["sku"])
    for kw, message in [({"mode": "merge"}, "mode 'merge' needs keys="), ({"keys": KEY}, "keys= is for mode 'merge'; mode 'append' does not match rows"),
                        ({"mode": "replace"}, "mode 'replace' is unknown; modes: append, overwrite, merge"),
                        ({"mode": "overwrite", "incremental": True}, "would drop every earlier row")]:
        with pytest.raises(InvalidInput, match=message): ingest(ws, "sales", _snapshot(tmp_path, "w2", WEEK2), **kw)
    assert folder(ws, "sales") == files and dataset_version(ws, "sales").version == 0


def test_merge_schema_policy_and_column_names(ws, tmp_path):
    "New columns arrive with a merge (allow_added), a strict dataset refuses them; keys with capitals and accents are matched as written."
    df = pl.DataFrame({"Store": ["Zürich", "Köln"], "prénom": ["Zoë", "Åsa"], "visits": [1, 2]})
    df.write_parquet(tmp_path / "a.parquet")
    df.with_columns(visits=pl.col("visits") * 10, spend=pl.Series([9.5, None])).vstack(
        pl.DataFrame({"Store": ["Bern"], "prénom": ["Zoë"], "visits": [3], "spend": [1.0]})).write_parquet(tmp_path / "b.parquet")
    keys = ["Store", "prénom"]
    ingest(ws, "open", ParquetSource(str(tmp_path / "a.parquet")), mode="merge", keys=keys)
    res = ingest(ws, "open", ParquetSource(str(tmp_path / "b.parquet")), mode="merge", keys=keys)
    assert (res.rows_added, res.rows_updated, res.version.schema) == (1, 2, {"Store": "String", "prénom": "String", "visits": "Int64", "spend": "Float64"})
    assert rows(ws, "open").sort("Store")["visits"].to_list() == [3, 20, 10]
    assert rows(ws, "open", 0).columns == ["Store", "prénom", "visits"]
    ingest(ws, "closed", ParquetSource(str(tmp_path / "a.parquet")), mode="merge", keys=keys, schema_policy="strict")
    with pytest.raises(InvalidInput, match=r"columns \['spend'\] are new and the schema policy is 'strict'"):
        ingest(ws, "closed", ParquetSource(str(tmp_path / "b.parquet")), mode="merge", keys=keys)


def test_writers_of_one_dataset_take_turns(ws, tmp_path):
    "Four threads ingest into one new dataset at once: each gets its own version, none fails, no row is lost."
    srcs = [_snapshot(tmp_path, f"t{i}", [f"Store {i};0{i + 1}.03.2025;Brot;{i};1.5"]) for i in range(4)]
    results, errors = [], []
    def run(s):
        try: results.append(ingest(ws, "busy", s))
        except Exception as e: errors.append(e)
    threads = [threading.Thread(target=run, args=(s,)) for s in srcs]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors, errors
    assert sorted(r.version.version for r in results) == [0, 1, 2, 3] and rows(ws, "busy").height == 4


# ---------------------------------------------------------------- a failed ingestion leaves the dataset as it was

def folder(ws, name) -> dict | None:
    "Dataset `name`'s table folder: every file with its sha256 and every folder (None: there is no folder)."
    root = Path(ws.backend("storage").table_uri(name))
    if not root.exists(): return None
    return {str(p.relative_to(root)): "folder" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))}


def _sales(n: int, bad_at: int | None = None) -> str:
    "A `;`-delimited sales export (text, for latin-1): no id column, text categoricals, dates as text, gaps, a numeric target."
    stores = ["Zürich", "Genève", "Köln", "Malmö"]
    rows = [f"{stores[i % 4]};{1 + i % 28:02d}.{1 + i // 28 % 12:02d}.{2020 + i // 336};{'Käse' if i % 3 else 'Brot'};"
            f"{'' if i % 11 == 0 else i % 40};{i % 97 * 1.25}" for i in range(n)]
    if bad_at is not None: rows[bad_at] = rows[bad_at].rsplit(";", 2)[0] + ";viele;1.0"  # `units` turns to text deep in the file
    return "store;day;product;units;revenue\n" + "\n".join(rows) + "\n"

def _mid_file(tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("id,qty\n1,1\n2,2\n")
    bad.write_text("id,qty\n" + "".join(f"{i},{i}\n" for i in range(300_000)) + "300000,lots\n")  # fails deep inside the streaming write
    return CsvSource(str(good)), CsvSource(str(bad)), {}, "looks like Int64 in the first 10,000 rows, but data row 300001 holds 'lots'"

def _sales_mid_file(tmp_path):
    (tmp_path / "good.csv").write_bytes(_sales(50).encode("latin-1"))
    (tmp_path / "bad.csv").write_bytes(_sales(300_000, bad_at=299_000).encode("latin-1"))
    opts = dict(delimiter=";", encoding="latin-1")
    return CsvSource(str(tmp_path / "good.csv"), **opts), CsvSource(str(tmp_path / "bad.csv"), **opts), {}, "data row 299001 holds 'viele'"

def _strict_cast(tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text("id,qty\n1,1\n"); bad.write_text("id,qty\n2,two\n")
    return CsvSource(str(good)), CsvSource(str(bad)), {"cast": {"qty": "Int64"}}, r"value\(s\) that are not Int64"

def _corrupt_parquet(tmp_path):
    pl.DataFrame({"a": range(100_000)}).write_parquet(tmp_path / "good.parquet")
    b = bytearray((tmp_path / "good.parquet").read_bytes()); b[100:200] = b"\0" * 100
    (tmp_path / "bad.parquet").write_bytes(bytes(b))
    return ParquetSource(str(tmp_path / "good.parquet")), ParquetSource(str(tmp_path / "bad.parquet")), {}, "is corrupt"

def _sql_late_mixed(tmp_path):
    db = tmp_path / "s.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE good (id INTEGER, qty INTEGER)"); con.execute("CREATE TABLE bad (id INTEGER, qty INTEGER)")
        con.executemany("INSERT INTO good VALUES (?, ?)", [(i, i) for i in range(10)])
        con.executemany("INSERT INTO bad VALUES (?, ?)", [(i, i if i != 1_500_000 else "oops") for i in range(1_600_000)])
    return (SqlSource(f"sqlite:///{db}", table="good"), SqlSource(f"sqlite:///{db}", table="bad", batch_size=50_000), {},
            "column 'qty' is Int64 but row 1500001 holds 'oops'")  # its first 1.5M rows are already in Parquet files when it fails

def _schema_change(tmp_path):
    pl.DataFrame({"id": [1]}).write_parquet(tmp_path / "good.parquet")
    pl.DataFrame({"id": [1.5]}).write_parquet(tmp_path / "bad.parquet")
    return ParquetSource(str(tmp_path / "good.parquet")), ParquetSource(str(tmp_path / "bad.parquet")), {}, "column types changed"

def _sales_schema_change(tmp_path):
    (tmp_path / "good.csv").write_bytes(_sales(50).encode("latin-1"))
    (tmp_path / "bad.csv").write_bytes(_sales(50).replace(";Brot;", ";Brot;x").encode("latin-1"))  # every Brot row's units is text now
    opts = dict(delimiter=";", encoding="latin-1")
    return CsvSource(str(tmp_path / "good.csv"), **opts), CsvSource(str(tmp_path / "bad.csv"), **opts), {}, r"units: Int64 -> String"

CASES = [_mid_file, _sales_mid_file, _strict_cast, _corrupt_parquet, _sql_late_mixed, _schema_change, _sales_schema_change]


@pytest.mark.parametrize("mode", ["append", "merge"])
@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__[1:])
def test_failed_ingestion_leaves_the_folder_byte_identical(ws, tmp_path, case, mode):
    good, bad, kw, message = case(tmp_path)
    keys = {"keys": [c for c in ("id", "a", "store", "day", "product") if c in preview(ws, good).columns]} if mode == "merge" else {}
    ok = ingest(ws, "target", good, mode=mode, **keys)
    before, files = rows(ws, "target"), folder(ws, "target")
    with pytest.raises(InvalidInput, match=message):
        ingest(ws, "target", bad, mode=mode, **keys, **kw)
    assert folder(ws, "target") == files and delta_log(ws, "target") == ["00000000000000000000.json"]
    assert dataset_version(ws, "target") == ok.version and [v.version for v in dataset_versions_of(ws, "target")] == [0]
    assert rows(ws, "target").equals(before)
    assert not list(ws.path(".tmp").glob("*"))
    assert ingest(ws, "target", good, mode=mode, **keys).version.version == 1  # and the dataset takes the next good version


@pytest.mark.parametrize("case", [c for c in CASES if "schema" not in c.__name__], ids=lambda f: f.__name__[1:])  # a new dataset has no schema to change
def test_failed_first_ingestion_leaves_no_folder(ws, tmp_path, case):
    good, bad, kw, message = case(tmp_path)
    with pytest.raises(InvalidInput, match=message):
        ingest(ws, "fresh", bad, **kw)
    with pytest.raises(NotFound): dataset_version(ws, "fresh")
    assert folder(ws, "fresh") is None
    assert ingest(ws, "fresh", good).version.version == 0


@pytest.fixture
def flaky():
    "A source kind `flaky` (registered for the test only): a polars IO plugin that streams `rows` sales rows, then raises `error`."
    from dataclasses import dataclass
    from polars.io.plugins import register_io_source
    from mlops_workbench.data.sources import _SCANNERS

    @source_kind("flaky")
    @dataclass
    class FlakySource(Source):
        rows: int = 400_000
        error: str = "ConnectionResetError"  # or KeyboardInterrupt
        @property
        def location(self): return "flaky://sales"

    @scanner("flaky")
    def _scan(o, r, paths=None):
        schema = {"store": pl.String, "units": pl.Int64}
        def batches(with_columns, predicate, n_rows, batch_size):
            done = 0
            for i in range(0, o.rows, 50_000):
                df = pl.DataFrame({"store": [f"Zürich-{j}" for j in range(i, i + 50_000)], "units": range(i, i + 50_000)})
                if predicate is not None: df = df.filter(predicate)
                yield df if with_columns is None else df.select(with_columns)
                done += df.height
                if n_rows is not None and done >= n_rows: return
            raise {"ConnectionResetError": ConnectionResetError("the server closed the stream"), "KeyboardInterrupt": KeyboardInterrupt()}[o.error]
        return register_io_source(batches, schema=schema)

    yield FlakySource
    SOURCES.pop("flaky"); _SCANNERS.pop("flaky")


@pytest.mark.parametrize("error", ["ConnectionResetError", "KeyboardInterrupt"])
def test_an_exception_during_the_write_leaves_nothing(ws, flaky, error):
    "A source that dies after streaming 400,000 rows into the writer: its Parquet files are removed, new dataset or not."
    with pytest.raises((MLWError, KeyboardInterrupt)) as e:
        ingest(ws, "fresh", flaky(error=error))
    assert error in f"{e.type.__name__}: {e.value}", e.value
    assert folder(ws, "fresh") is None
    pl.DataFrame({"store": ["Köln"], "units": [1]}).write_parquet(ws.path("seed.parquet"))
    ok = ingest(ws, "grown", ParquetSource(str(ws.path("seed.parquet"))))
    files = folder(ws, "grown")
    for mode, keys in [("append", None), ("overwrite", None), ("merge", ["store"])]:
        with pytest.raises((MLWError, KeyboardInterrupt)):
            ingest(ws, "grown", flaky(error=error), mode=mode, keys=keys)
        assert folder(ws, "grown") == files, mode
    assert dataset_version(ws, "grown") == ok.version


def test_metadata_refusing_the_record_removes_the_delta_commit(ws, tmp_path):
    "The Delta commit succeeds, then the metadata database refuses the version's record: the commit and its files go again."
    (tmp_path / "w1.csv").write_bytes(_sales(40).encode("latin-1")); (tmp_path / "w2.csv").write_bytes(_sales(60).encode("latin-1"))
    src = lambda n: CsvSource(str(tmp_path / f"w{n}.csv"), delimiter=";", encoding="latin-1")
    by_key = ["store", "day", "product"]
    ingest(ws, "sales", src(1), mode="merge", keys=by_key)
    files = folder(ws, "sales")
    with sqlite3.connect(ws.path("metadata.db")) as con:
        con.execute("CREATE TRIGGER refuse BEFORE INSERT ON dataset_versions BEGIN SELECT RAISE(ABORT, 'no new versions today'); END")
    for mode in ("append", "overwrite", "merge"):
        with pytest.raises(MLWError, match=r"dataset 'sales': the new version could not be recorded in the metadata database \(.*no new versions today\); "
                                           r"its Delta commit was removed, nothing was written"):
            ingest(ws, "sales", src(2), mode=mode, keys=by_key if mode == "merge" else None)
        assert folder(ws, "sales") == files, mode
    with pytest.raises(MLWError, match="could not be recorded"):
        ingest(ws, "fresh", src(2))
    assert folder(ws, "fresh") is None
    with pytest.raises(NotFound): dataset_version(ws, "fresh")
    with sqlite3.connect(ws.path("metadata.db")) as con: con.execute("DROP TRIGGER refuse")
    v = ingest(ws, "sales", src(2), mode="merge", keys=by_key).version
    assert (v.version, v.row_count, delta_log(ws, "sales")[-1]) == (1, 60, "00000000000000000001.json")


# ---------------------------------------------------------------- streaming

CHILD = """
import json, sys
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.data.ingest import ingest
from mlops_workbench.data.sources import ParquetSource
res = ingest(Workspace.init(sys.argv[1]), "big", ParquetSource(sys.argv[2]))
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({"rows": res.rows_added, "peak_rss": int(status["VmHWM"].split()[0]) * 1024}))
"""

def test_larger_than_memory_parquet_streams(tmp_path):
    "Ingest ~2 GB of in-memory data in a child process whose peak resident memory stays far below it."
    n = 30_000_000
    path = tmp_path / "big.parquet"
    (pl.LazyFrame({"i": pl.int_range(0, n, dtype=pl.Int64, eager=True)})
     .with_columns(s=pl.lit("x" * 60) + pl.col("i").cast(pl.String)).sink_parquet(path, row_group_size=100_000))
    in_memory = pl.scan_parquet(path).head(100_000).collect().estimated_size() * (n // 100_000)
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "ws"), str(path)], capture_output=True, text=True,
                             env={**os.environ, "POLARS_MAX_THREADS": "2"}, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["rows"] == n
        assert got["peak_rss"] < in_memory / 2, f"peak RSS {got['peak_rss'] / 1e6:.0f} MB for {in_memory / 1e6:.0f} MB of data: not streaming"
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_ingest_step_run_twice_in_a_pipeline_replaces_the_snapshot(ws, tmp_path):
    "The packaged ingest_data notebook (mode overwrite by default) on a table of the user's, run twice: one snapshot's rows, two versions."
    from mlops_workbench.pipelines import runner
    raw = tmp_path / "raw"; raw.mkdir()
    (raw / "sales.csv").write_text("store,day,product,units,revenue\n" + "\n".join(
        f"{s},2025-03-0{d},{p},{'' if d == 2 else d * 3},{d * 4.5}" for s in ("Zürich", "Köln") for d in (1, 2, 3) for p in ("Brot", "Käse")) + "\n")
    nb = Path(runner.__file__).parent / "ingest_data.ipynb"
    spec = runner.PipelineSpec.from_yaml(f"name: land_sales\nsteps:\n  ingest:\n    notebook: {nb}\n"
                                         f"    parameters: {{raw_dir: '{raw}', tables: [sales], text_tables: []}}\n")
    runs = [runner.run_pipeline(ws, spec, progress=False) for _ in range(2)]
    for r in runs: r.raise_for_status()
    assert [r.step("ingest").outputs for r in runs] == [{"datasets": {"sales": 0}, "rows": {"sales": 12}}, {"datasets": {"sales": 1}, "rows": {"sales": 12}}]
    assert [(v.operation, v.row_count, v.source["mode"]) for v in dataset_versions_of(ws, "sales")] == [("create", 12, "overwrite"), ("overwrite", 12, "overwrite")]
    assert rows(ws, "sales").schema["day"] == pl.Date  # parse_dates=True for tables that are not text
