"""Concurrent writers of datasets: N processes (spawned, not threads) against one workspace, on SQLite and PostgreSQL.

Four long-lived worker processes run every round together (a barrier starts each round), so a round costs one
write each, not four interpreter starts. After each round the catalog, the Delta log and the table must agree:
every Delta commit is a recorded version, every recorded version time-travels to its recorded row count, the
latest version holds exactly the rows of the writes reported as successful, and no file is left in the table's
folder that no commit references (a reported failure left nothing behind).
"""
import json
import multiprocessing as mp
import queue
import sqlite3
import urllib.parse
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from pg import pg_new_database, pg_server  # noqa: F401  (fixtures)
from mlops_workbench.core.errors import Conflict, MLWError
from mlops_workbench.core.metadata import datasets, transact, utcnow
from mlops_workbench.core.storage import dataset_versions_of, read_dataset
from mlops_workbench.core.workspace import Workspace

WORKERS, ROUNDS = 4, 10
ROUND_TIMEOUT = 240  # seconds a round may take before the test fails (a hang, not a timing assertion)


# ---------------------------------------------------------------- worker processes

def _job(ws, job):
    kind, name, arg = job
    if kind == "ingest":
        from mlops_workbench.data.ingest import ingest
        r = ingest(ws, name, {"kind": "csv", "path": arg})
        return r.version.version, r.rows_added
    if kind == "write":  # write_dataset directly, from a CSV read here; arg: (path, schema_overrides or None)
        from mlops_workbench.core.storage import write_dataset
        path, strings = arg
        df = pl.read_csv(path, schema_overrides={c: pl.String for c in strings or []})
        v = write_dataset(ws, name, df, source={"kind": "test", "location": path})
        return v.version, df.height
    raise ValueError(kind)


def _worker(root, rounds, barrier, results):
    "One writer: for each round, wait for the others, run this worker's job, report what happened."
    from mlops_workbench.core.workspace import Workspace
    ws = Workspace.open(root)
    try:
        for i, job in enumerate(rounds):
            barrier.wait(timeout=ROUND_TIMEOUT)
            try:
                version, rows = _job(ws, job)
                results.put((i, "ok", version, rows, ""))
            except BaseException as e:  # everything that would reach the user, reported by type
                results.put((i, type(e).__name__, None, 0, f"{type(e).__module__}: {e}"))
    finally:
        ws.close()


def _race(root, jobs_per_worker):
    "Run each worker's list of jobs, round by round, in WORKERS spawned processes; return results[round] = [(outcome, version, rows, msg)]."
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(jobs_per_worker)), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(root), jobs, barrier, results)) for jobs in jobs_per_worker]
    for p in procs: p.start()
    n = sum(len(j) for j in jobs_per_worker)
    out = {}
    try:
        for _ in range(n):
            i, *rest = results.get(timeout=ROUND_TIMEOUT)
            out.setdefault(i, []).append(tuple(rest))
    except queue.Empty:
        pytest.fail(f"the writers did not finish: {sum(map(len, out.values()))} of {n} results", pytrace=False)
    finally:
        for p in procs: p.join(timeout=60)
        for p in procs:
            if p.is_alive(): p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [out[i] for i in sorted(out)]


# ---------------------------------------------------------------- what must hold afterwards

def _commit_files(table: Path) -> tuple[list[int], set[str]]:
    "The Delta versions committed in `table` and every data file any commit added."
    log, added = table/"_delta_log", set()
    versions = sorted(int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()) if log.is_dir() else []
    for v in versions:
        for line in (log/f"{v:020d}.json").read_text().splitlines():
            if line.strip() and "add" in (a := json.loads(line)): added.add(urllib.parse.unquote(a["add"]["path"]))
    return versions, added


def check_agree(ws, name, outcomes, allowed=("Conflict",)):
    "The catalog, the Delta log and the table agree, successes are recorded, failures left nothing: return the successes."
    ok = [o for o in outcomes if o[0] == "ok"]
    for o in outcomes:
        if o[0] != "ok":
            assert o[0] in allowed, f"unexpected failure reached the caller: {o}"
            assert repr(name) in o[3], f"the error does not name dataset {name!r}: {o[3]}"
            assert "IntegrityError" not in o[3] and "OperationalError" not in o[3] and "sqlite3" not in o[3], o[3]
    recorded = dataset_versions_of(ws, name)
    assert sorted(v.version for v in recorded) == sorted(o[1] for o in ok), (recorded, outcomes)
    table = Path(ws.backend("storage").table_uri(name))
    if not ok:
        assert not table.exists(), f"every write of {name!r} failed, yet {table} exists"
        return ok
    versions, added = _commit_files(table)
    assert versions == [v.version for v in recorded], f"Delta versions {versions} but the catalog records {[v.version for v in recorded]}"
    for v in recorded:  # time travel: each version holds what its record says
        assert read_dataset(ws, name, v.version).select(pl.len()).collect().item() == v.row_count
    data = {str(p.relative_to(table)) for p in table.rglob("*.parquet") if "_delta_log" not in p.parts}
    assert data <= added, f"files no commit references (left by a failed write): {sorted(data - added)}"
    return ok


# ---------------------------------------------------------------- workspaces and data

@pytest.fixture(params=["sqlite", "postgresql"])
def cws(request, tmp_path, monkeypatch):
    "A workspace whose metadata is SQLite (the default) or a fresh PostgreSQL database."
    monkeypatch.delenv("MLW_HOME", raising=False)
    backends = {"metadata": request.getfixturevalue("pg_new_database")()} if request.param == "postgresql" else {}
    ws = Workspace.init(tmp_path/"ws", backends=backends)
    yield ws
    ws.close()


@pytest.fixture
def orders_csv(tmp_path):
    p = tmp_path/"orders.csv"
    p.write_text("id,amount,placed\n" + "".join(f"{i},{i * 1.25},2025-03-{1 + i % 28:02d}\n" for i in range(120)))
    return str(p), 120


@pytest.fixture
def visits_csv(tmp_path):
    "Another shape: no id column, text categoricals, nulls (in the keys too), dates as strings, a ';' in a quoted field."
    rows = [f'{["Zürich", "Basel", ""][i % 3]},{["web", "store", ""][i % 3 != 0 and i % 2]},{"" if i % 7 == 0 else i / 4},'
            f'{i % 28 + 1:02d}.03.2025,"note; {i}"' for i in range(75)]
    p = tmp_path/"visits.csv"
    p.write_text("shop_code,channel,spend,seen_on,note\n" + "\n".join(rows) + "\n")
    return str(p), 75


# ---------------------------------------------------------------- the races

def test_creation_race_of_one_csv_ends_in_four_versions_or_three_and_a_conflict(cws, orders_csv):
    "The issue's race, ROUNDS times: four `ingest`s of one CSV into a dataset that does not exist yet."
    path, n = orders_csv
    names = [f"orders_r{i}" for i in range(ROUNDS)]
    rounds = _race(cws.root, [[("ingest", name, path) for name in names]] * WORKERS)
    summary = []
    for name, outcomes in zip(names, rounds):
        ok = check_agree(cws, name, outcomes)
        assert len(ok) >= WORKERS - 1, outcomes
        assert read_dataset(cws, name).select(pl.len()).collect().item() == n * len(ok)
        assert sorted(o[1] for o in ok) == list(range(len(ok)))  # versions 0.. in order: every loser joined the winner
        summary.append(f"{len(ok)} ok" + (f" + {outcomes}" if len(ok) < WORKERS else ""))
    print(f"{cws.metadata.engine.dialect.name}: {ROUNDS} rounds: {summary}")


def test_appends_to_an_existing_dataset_from_four_processes(cws, orders_csv, visits_csv):
    "Appends from four processes, two rounds per shape: every append recorded, rows add up, versions consecutive."
    from mlops_workbench.data.ingest import ingest
    for name, (path, _) in (("orders", orders_csv), ("visits", visits_csv)):
        ingest(cws, name, {"kind": "csv", "path": path})
    jobs = [("ingest", "orders", orders_csv[0]), ("ingest", "visits", visits_csv[0])] * 2
    rounds = _race(cws.root, [jobs] * WORKERS)
    for (kind, name, _), outcomes in zip(jobs, rounds):
        assert all(o[0] == "ok" for o in outcomes), outcomes
    for name, (_, n) in (("orders", orders_csv), ("visits", visits_csv)):
        check_agree(cws, name, [("ok", v.version, 0, "") for v in dataset_versions_of(cws, name)])
        recorded = dataset_versions_of(cws, name)
        assert [v.version for v in recorded] == list(range(1 + 2 * WORKERS))
        assert [v.row_count for v in recorded] == [n * (i + 1) for i in range(1 + 2 * WORKERS)]


def test_write_dataset_directly_from_four_processes(cws, orders_csv, visits_csv):
    "`write_dataset` (no ingest around it) racing to create, on both shapes: the same agreement as ingest's."
    names = [(f"w_orders_{i}", orders_csv) for i in range(3)] + [(f"w_visits_{i}", visits_csv) for i in range(3)]
    rounds = _race(cws.root, [[("write", name, (path, None)) for name, (path, _) in names]] * WORKERS)
    for (name, (_, n)), outcomes in zip(names, rounds):
        ok = check_agree(cws, name, outcomes)
        assert len(ok) >= WORKERS - 1, outcomes
        assert read_dataset(cws, name).select(pl.len()).collect().item() == n * len(ok)


def test_a_writer_whose_data_does_not_fit_leaves_nothing_behind(cws, visits_csv):
    "One of four creators writes `spend` as text: whoever creates the dataset first sets its schema, the others fail by name, cleanly."
    path, n = visits_csv
    names = [f"mixed_{i}" for i in range(4)]
    odd = [[("write", name, (path, ["spend"])) for name in names]]
    rounds = _race(cws.root, odd + [[("write", name, (path, None)) for name in names]] * (WORKERS - 1))
    for name, outcomes in zip(names, rounds):
        ok = check_agree(cws, name, outcomes, allowed=("InvalidInput", "Conflict"))
        assert len(ok) in (1, WORKERS - 1), outcomes  # the text writer won (the others refused) or lost (only it refused)
        failed = [o for o in outcomes if o[0] != "ok"]
        assert all("column types changed (spend:" in o[3] for o in failed), failed  # named: the dataset, the column, the types
        assert read_dataset(cws, name).select(pl.len()).collect().item() == n * len(ok)


# ---------------------------------------------------------------- driver errors

def test_sqlite_busy_after_retries_is_a_conflict_that_says_to_use_postgresql(tmp_path):
    "A stale snapshot's write on SQLite ('database is locked' at once, in WAL mode) with no retries left: a Conflict, the advice to move to PostgreSQL."
    ws = Workspace.init(tmp_path/"ws")
    other = sqlite3.connect(tmp_path/"ws"/"metadata.db", isolation_level=None)
    def work(c):
        c.execute(sa.select(datasets.c.name)).all()
        other.execute("INSERT INTO secrets VALUES ('k', 't', 1, '2026-01-01', '2026-01-01', 'x')")
        c.execute(datasets.insert().values(name="busy", kind="raw", description="", schema_policy="strict", created_at=utcnow()))
    try:
        with pytest.raises(Conflict, match=r"dataset 'busy': the metadata database stayed busy .*PostgreSQL"):
            transact(ws.metadata, work, what="dataset 'busy'", attempts=1)
    finally:
        other.close(); ws.close()


def test_postgresql_serialization_failure_is_retried_and_a_duplicate_is_a_conflict(pg_new_database, tmp_path, monkeypatch):
    "On PostgreSQL, a transaction that lost a concurrent update (40001) runs again; a duplicate name is a Conflict naming the thing."
    monkeypatch.delenv("MLW_HOME", raising=False)
    ws = Workspace.init(tmp_path/"ws", backends={"metadata": pg_new_database()})
    try:
        row = dict(name="d", kind="raw", description="", schema_policy="strict", created_at=utcnow())
        with ws.metadata.begin() as c: c.execute(datasets.insert().values(**row))
        runs = []
        def work(c):
            runs.append(1)
            c.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            c.execute(sa.select(datasets.c.description).where(datasets.c.name == "d")).all()
            if len(runs) == 1:  # another writer updates the row and commits after our snapshot
                with ws.metadata.engine.begin() as o: o.execute(datasets.update().where(datasets.c.name == "d").values(description="theirs"))
            c.execute(datasets.update().where(datasets.c.name == "d").values(description="ours"))
            return len(runs)
        assert transact(ws.metadata, work, what="dataset 'd'") == 2
        with ws.metadata.begin() as c: assert c.execute(sa.select(datasets.c.description)).scalar() == "ours"
        with pytest.raises(Conflict, match=r"dataset 'd': it already exists \(.*duplicate key"):
            transact(ws.metadata, lambda c: c.execute(datasets.insert().values(**row)), what="dataset 'd'", conflict="it already exists")
        with ws.metadata.lock("dataset:d") as outer, ws.metadata.lock("dataset:d") as inner:
            assert (outer, inner) == (True, False)
    finally:
        ws.close()
