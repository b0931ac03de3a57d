"""The metadata backend contract, run against every registered metadata scheme on a real server.

`sqlite` is a file in the test's folder; `postgresql` is a real server (tests/pg.py) with a fresh database per test,
its time zone set to something other than UTC. A scheme registered later fails here until it gets a fixture in
`METADATA_DATABASES`, so no backend can skip the contract.
"""
import datetime as dt
import itertools
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from conftest import free_port
from pg import pg_new_database, pg_server  # noqa: F401  (fixtures)
from mlops_workbench.core.backends import registry
from mlops_workbench.core.errors import Conflict, InvalidInput, MLWError
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.core.metadata import MIGRATIONS, pipeline_runs, schema_migrations
from mlops_workbench.pipelines.runner import PipelineSpec, get_run, list_runs, make_notebook, run_pipeline

LATEST = MIGRATIONS[-1].version
UTC = dt.timezone.utc

def _sqlite_databases(request, tmp_path):
    n = itertools.count()
    return lambda: f"sqlite:///{tmp_path}/metadata-{next(n)}.db"  # the file appears on first connect


# scheme -> a function (request, tmp_path) returning a function that makes a fresh, empty metadata database and returns its URI
METADATA_DATABASES = {
    "sqlite": _sqlite_databases,
    "postgresql": lambda request, tmp_path: request.getfixturevalue("pg_new_database"),
}


@pytest.fixture(params=registry("metadata").schemes)
def new_metadata_uri(request, tmp_path, monkeypatch):
    "A function returning the URI of a fresh, empty metadata database, once per registered scheme."
    monkeypatch.delenv("MLW_HOME", raising=False)
    if request.param not in METADATA_DATABASES:
        pytest.fail(f"metadata scheme {request.param!r} is registered but has no contract fixture; add it to METADATA_DATABASES", pytrace=False)
    return METADATA_DATABASES[request.param](request, tmp_path)


@pytest.fixture
def metadata_uri(new_metadata_uri):
    "The URI of a fresh, empty metadata database, once per registered scheme."
    return new_metadata_uri()


@pytest.fixture
def mws(metadata_uri, tmp_path):
    "A workspace whose metadata lives in `metadata_uri`."
    ws = Workspace.init(tmp_path/"ws", backends={"metadata": metadata_uri})
    yield ws
    ws.close()


def _versions(ws):
    with ws.metadata.begin() as c:
        return c.execute(sa.select(schema_migrations.c.version, schema_migrations.c.applied_at).order_by(schema_migrations.c.version)).all()


def _run_row(run_id, started_at):
    return dict(id=run_id, pipeline="p", status="succeeded", spec={}, parameters={}, started_at=started_at)


def test_init_migrates_to_latest_and_again_is_a_no_op(mws):
    assert mws.metadata.version == LATEST
    before = _versions(mws)
    assert [v for v, _ in before] == [m.version for m in MIGRATIONS]
    assert mws.metadata.migrate() == LATEST
    again = Workspace.open(mws.root)  # a new engine, migrating on open
    try: assert _versions(again) == before  # nothing re-applied: same rows, same applied_at
    finally: again.close()
    assert set(sa.inspect(mws.metadata.engine).get_table_names()) >= {"schema_migrations", "pipeline_runs", "pipeline_steps"}


def test_timestamps_come_back_aware_utc(mws):
    "Whatever zone a timestamp is written in (and whatever the server's zone), it reads back as the same instant in UTC."
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    written = dt.datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=ist)
    with mws.metadata.begin() as c: c.execute(pipeline_runs.insert().values(_run_row("r1", written)))
    with mws.metadata.begin() as c:
        got = c.execute(sa.select(pipeline_runs.c.started_at)).scalar()
        applied = c.execute(sa.select(schema_migrations.c.applied_at)).scalars().all()
    assert got == written
    for t in [got, *applied]: assert t.utcoffset() == dt.timedelta(0), t
    assert got.isoformat() == "2024-03-01T04:00:15.123456+00:00"


def test_naive_datetime_is_refused_with_invalid_input(mws):
    with pytest.raises(InvalidInput, match="has no time zone"):
        with mws.metadata.begin() as c: c.execute(pipeline_runs.insert().values(_run_row("naive", dt.datetime(2024, 3, 1, 9, 30))))
    with mws.metadata.begin() as c: assert c.execute(sa.select(sa.func.count()).select_from(pipeline_runs)).scalar() == 0


# Reads a database URI per line; loads a store for it, says `ready`, waits for `go`, migrates, prints the version or the error.
MIGRATE_SCRIPT = textwrap.dedent("""
    import sys
    from mlops_workbench.core.backends import registry
    for uri in sys.stdin:
        store = registry("metadata").build(uri.strip())
        print("ready", flush=True)
        sys.stdin.readline()
        try: print(store.migrate(), flush=True)
        except Exception as e: print(f"{type(e).__name__}: {' '.join(str(e).split())[:400]}", flush=True)
        store.close()
""")
ROUNDS = 20  # the processes stay up between rounds, so each round costs a migration, not an interpreter start


def test_two_processes_migrating_at_once_both_succeed(new_metadata_uri, tmp_path):
    "Two processes migrate the same empty database at the same moment: both finish, and the schema is applied once."
    uris = [new_metadata_uri() for _ in range(ROUNDS)]
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path) for _ in range(2)]
    got = []
    try:
        for uri in uris:
            for p in procs: p.stdin.write(uri + "\n"); p.stdin.flush()
            for p in procs: assert p.stdout.readline().strip() == "ready", p.communicate(timeout=60)[1]
            for p in procs: p.stdin.write("go\n"); p.stdin.flush()  # both are loaded and waiting: they migrate together
            got.append([p.stdout.readline().strip() for p in procs])
    finally:
        for p in procs: p.stdin.close()
        for p in procs:
            try: p.wait(timeout=60)
            except subprocess.TimeoutExpired: p.kill(); p.wait()
    failed = [f"round {i}: {out}" for i, outs in enumerate(got) for out in outs if out != str(LATEST)]
    assert not failed, "\n".join(failed)
    for uri in uris:
        store = registry("metadata").build(uri)
        try:
            with store.begin() as c: rows = c.execute(sa.select(schema_migrations.c.version).order_by(schema_migrations.c.version)).scalars().all()
            assert rows == [m.version for m in MIGRATIONS], uri
        finally: store.close()


def test_pipeline_run_is_recorded_and_read_back_identically(mws, tmp_path):
    "A real two-step run (one step records outputs, the next fails in cell 2) reads back the same through every path."
    make = make_notebook(tmp_path/"nbs"/"make.ipynb", "n: int = 2\nlabel: str = 'x'",
                         "from mlops_workbench.pipelines.runner import record_output",
                         "record_output('total', n * 10); record_output('label', label.upper())\n"
                         "record_output('items', {'n': n, 'squares': [i * i for i in range(n)]})")
    boom = make_notebook(tmp_path/"nbs"/"boom.ipynb", "total: int = 0", "half = total / 2", "raise ValueError(f'bad total {total}')")
    spec = PipelineSpec.from_dict({"name": "contract", "parameters": {"n": 3, "label": "abc"}, "steps": {
        "make": {"notebook": str(make), "parameters": {"n": "${params.n}", "label": "${params.label}"}},
        "boom": {"notebook": str(boom), "depends_on": ["make"], "parameters": {"total": "${steps.make.outputs.total}"}}}})
    run = run_pipeline(mws, spec, {"n": 4}, progress=False)

    assert (run.pipeline, run.status) == ("contract", "failed")
    assert run.parameters == {"n": 4, "label": "abc"}
    assert run.error == {"type": "StepFailed", "step": "boom", "message": "step 'boom' failed"}
    make_s, boom_s = run.step("make"), run.step("boom")
    assert (make_s.status, make_s.attempts, make_s.error) == ("succeeded", 1, None)
    assert make_s.outputs == {"total": 40, "label": "ABC", "items": {"n": 4, "squares": [0, 1, 4, 9]}}
    assert make_s.parameters == {"n": 4, "label": "abc"}
    assert (boom_s.status, boom_s.parameters, boom_s.outputs) == ("failed", {"total": 40}, {})
    assert {k: boom_s.error[k] for k in ("type", "message", "cell_index")} == {"type": "ValueError", "message": "bad total 40", "cell_index": 2}
    assert "raise ValueError" in boom_s.error["cell_source"]
    assert boom_s.notebook == str(mws.path("runs", run.id, "boom.ipynb")) and mws.path("runs", run.id, "boom.ipynb").exists()
    for t in (run.started_at, run.ended_at, make_s.started_at, make_s.ended_at, boom_s.ended_at): assert t.utcoffset() == dt.timedelta(0)

    again = Workspace.open(mws.root)  # a new engine: what comes back is what the database holds
    try:
        listed = list_runs(again)
        assert [r.id for r in listed] == [run.id]
        assert listed[0].to_dict() == get_run(again, run.id).to_dict() == run.to_dict()
    finally: again.close()


def test_database_newer_than_the_code_is_refused(mws):
    with mws.metadata.begin() as c:
        c.execute(schema_migrations.insert().values(version=999, name="from the future", applied_at=dt.datetime.now(UTC)))
    with pytest.raises(Conflict, match=r"schema version 999, newer than this mlops-workbench knows \(%d\); upgrade" % LATEST):
        Workspace.open(mws.root)


def test_transaction_is_atomic(mws):
    "An exception inside `begin()` after an insert leaves no row."
    class Boom(Exception): pass
    with pytest.raises(Boom):
        with mws.metadata.begin() as c:
            c.execute(pipeline_runs.insert().values(_run_row("half", dt.datetime.now(UTC))))
            assert c.execute(sa.select(sa.func.count()).select_from(pipeline_runs)).scalar() == 1
            raise Boom()
    with mws.metadata.begin() as c: assert c.execute(sa.select(sa.func.count()).select_from(pipeline_runs)).scalar() == 0


def test_unreachable_server_is_named_without_its_password(tmp_path, monkeypatch):
    from conftest import edit_settings
    monkeypatch.delenv("MLW_HOME", raising=False)
    port = free_port()  # nothing listens there
    uri = f"postgresql://mlw:s3cret-pw@127.0.0.1:{port}/mlw"
    with pytest.raises(InvalidInput) as e:  # a new workspace never writes a password into mlw.toml
        Workspace.init(tmp_path/"ws", backends={"metadata": uri})
    assert "s3cret-pw" not in str(e.value) and f"'postgresql://mlw:***@127.0.0.1:{port}/mlw': a password in mlw.toml" in str(e.value)
    assert not (tmp_path/"ws").exists(), "no half-made workspace is left"
    Workspace.init(tmp_path/"old").close()  # a workspace whose settings were written with one, by hand or by an older release
    edit_settings(tmp_path/"old", {"metadata": uri})
    with pytest.raises(MLWError) as e:
        Workspace.open(tmp_path/"old")
    msg = str(e.value)
    assert "s3cret-pw" not in msg
    assert f"'postgresql://mlw:***@127.0.0.1:{port}/mlw' is unreachable" in msg, msg  # as the user wrote it
