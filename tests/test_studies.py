"""The `studies` role for real: a search on each scheme (journal file, PostgreSQL RDBStorage, Redis journal) against a
real PostgreSQL and a real redis-server; two processes searching one experiment on PostgreSQL (one refused, naming the
holder, nothing half-written); listing; a second, differently shaped table. Small searches: the suite runs on 2 cores."""
import os, signal, socket, subprocess, sys, textwrap, time, uuid

import numpy as np
import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import optuna
from optuna.trial import TrialState
from mlops_workbench.core.errors import Conflict, InvalidInput, NotFound
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.core.storage import write_dataset
from mlops_workbench.experiments.definition import Experiment, FloatParam, IntParam, KFold, TimeSplit
from mlops_workbench.experiments.search import load_study, search, study_lock_key
from mlops_workbench.experiments.results import _runs, best_model, open_search, searched, select_best

from pg import pg_new_database, pg_server  # noqa: F401  (fixtures)
from test_experiments import toy

pytestmark = pytest.mark.timeout(600)
optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"learning_rate": FloatParam(0.05, 0.3, log=True), "num_leaves": IntParam(4, 32, log=True)}


def experiment(name, **kw) -> Experiment:
    base = dict(name=name, dataset="toy", target="label", split=KFold(2), search_space=SPACE, params={"num_threads": 1},
                num_boost_round=15, early_stopping_rounds=None, trials=4, pruner="none")
    return Experiment(**{**base, **kw})


def workspace(tmp_path, **backends) -> Workspace:
    ws = Workspace.init(tmp_path / f"ws-{uuid.uuid4().hex[:6]}", backends=backends)
    write_dataset(ws, "toy", toy(1500, 5), source={"kind": "test", "location": "toy(1500, 5)"})
    return ws


def parents(ws, name):
    "The search parent runs of experiment `name` (children carry mlflow.parentRunId)."
    c = ws.backend("tracking").client
    e = c.get_experiment_by_name(name)
    return [] if e is None else [r for r in _runs(c, e.experiment_id, "") if "mlflow.parentRunId" not in r.data.tags]


def test_a_search_records_the_same_trials_on_every_scheme(tmp_path, pg_new_database, redis_uri):
    uris = {"journal": None, "postgresql": pg_new_database(), "redis": f"{redis_uri}?prefix=mlw-{uuid.uuid4().hex[:8]}"}
    seen = {}
    for scheme, uri in uris.items():
        ws = workspace(tmp_path, **({"studies": uri} if uri else {}))
        try:
            studies = ws.backend("studies")
            assert type(studies).__name__ == {"journal": "JournalStudies", "postgresql": "PostgresqlStudies", "redis": "RedisStudies"}[scheme]
            with pytest.raises(NotFound, match="run search"): load_study(ws, experiment("churn"))
            res = search(ws, experiment("churn"), report=False, progress=False)
            trials = res.study.get_trials(deepcopy=False)
            assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
            assert all(set(t.params) == set(SPACE) and set(t.user_attrs["mlw"]) == {"n_trees", "duration_s", "host", "curve"} for t in trials)
            assert {"mlw.experiment", "mlw.definition", "mlw.data", "mlw.parent_run_id"} <= set(res.study.user_attrs)
            # listed and read back through the role, by another workspace object (a fresh connection)
            other = Workspace.open(ws.root)
            assert searched(other) == ["churn"]
            again = open_search(other, "churn")
            best = best_model(other, "churn")
            assert best["trial"] == res.best_trial == select_best(again.study.get_trials(deepcopy=False), again.experiment).number
            assert best["value"] == res.best_value and best["run_id"] == res.runs[res.best_trial]
            assert (ws.path("experiments", "churn", "study.journal").exists()) == (scheme == "journal")  # shared schemes keep nothing local
            assert ws.metadata.lock_holder(study_lock_key("churn")) is None  # released
            seen[scheme] = [(t.number, t.state.name, t.params, t.value) for t in trials]
            other.close()
        finally:
            ws.close()
    # the same seed, the same data: the same trials, whatever keeps the study
    assert seen["journal"] == seen["postgresql"] == seen["redis"]


def test_a_password_in_the_studies_uri_is_refused_without_showing_it(tmp_path):
    from conftest import edit_settings
    uri = "postgresql://ann:s3cret@127.0.0.1:1/optuna"
    with pytest.raises(InvalidInput, match="stored in clear") as e: Workspace.init(tmp_path / "new", backends={"studies": uri})
    assert "s3cret" not in str(e.value)
    Workspace.init(tmp_path / "ws").close()  # settings edited by hand: refused when the backend is built
    edit_settings(tmp_path / "ws", {"studies": uri})
    ws = Workspace.open(tmp_path / "ws")
    with pytest.raises(InvalidInput, match="stored in clear") as e: ws.backend("studies")
    assert "s3cret" not in str(e.value)


def test_try_lock_on_postgresql_names_the_holder_across_connections(pg_new_database):
    from mlops_workbench.core.metadata import postgresql_metadata
    a, b = postgresql_metadata(pg_new_database()), None
    b = postgresql_metadata(a.name)  # another engine: another session, as another host would have
    try:
        with a.try_lock("study:churn", "pid 4242 on host-a"):
            assert b.lock_holder("study:churn") == "pid 4242 on host-a"
            with pytest.raises(Conflict, match="held by pid 4242 on host-a"):
                with b.try_lock("study:churn", "pid 7 on host-b"): pass
            with pytest.raises(Conflict):  # not re-entrant, even in the holder's own process
                with a.try_lock("study:churn", "again"): pass
        assert b.lock_holder("study:churn") is None
        with b.try_lock("study:churn", "pid 7 on host-b"): assert a.lock_holder("study:churn") == "pid 7 on host-b"
        with a.engine.connect() as c:  # the holder's name does not stay on the pooled connection
            assert c.exec_driver_sql("SHOW application_name").scalar() != "pid 7 on host-b"
    finally:
        a.close(); b.close()


WORKER = textwrap.dedent("""
    import sys
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.experiments.definition import Experiment
    from mlops_workbench.experiments.search import search
    search(Workspace.open(sys.argv[1]), Experiment.from_yaml(sys.argv[2]), report=False, progress=False)
""")


def test_two_processes_search_one_experiment_on_postgresql(tmp_path, pg_new_database):
    "The team profile: metadata and studies on PostgreSQL. A second search, from another process, is refused naming the first."
    ws = workspace(tmp_path, metadata=pg_new_database(), studies=pg_new_database())
    exp = experiment("shared", split=TimeSplit("t", 0.25), num_boost_round=4000, trials=3)  # trials of a few seconds
    y = tmp_path / "shared.yaml"; y.write_text(exp.to_yaml())
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(ws.root), str(y)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # wait until the first process holds the lock and has a trial running
            if proc.poll() is not None: pytest.fail(f"the search process exited early ({proc.returncode}):\n{proc.stdout.read().decode()[-3000:]}")
            if ws.backend("studies").exists("shared") and any(t.state == TrialState.RUNNING for t in load_study(ws, exp).get_trials(deepcopy=False)): break
            time.sleep(0.2)
        else: pytest.fail("no trial running within 240 s")
        holder = f"pid {proc.pid} on {socket.gethostname()}"
        assert ws.metadata.lock_holder(study_lock_key("shared")) == holder
        before_runs = {r.info.run_id for r in parents(ws, "shared")}
        with pytest.raises(Conflict, match=f"experiment 'shared' is being searched by {holder}; wait for it"):
            search(ws, exp, report=False, progress=False)
        # nothing half-written by the refused search: still one study, one parent run (the first process's)
        assert searched(ws) == ["shared"] and {r.info.run_id for r in parents(ws, "shared")} == before_runs and len(before_runs) == 1
        proc.send_signal(signal.SIGTERM); proc.wait(120)
    finally:
        if proc.poll() is None: proc.kill(); proc.wait(30)
    assert ws.metadata.lock_holder(study_lock_key("shared")) is None  # the dead process's session let it go
    res = search(ws, Experiment.from_dict({**exp.to_dict(), "trials": 1}), report=False, progress=False)  # a resume: the lock is free again
    assert res.parent_run_id in before_runs
    ws.close()


def shaped(n=900, seed=1) -> pl.DataFrame:
    "Regression target, no id column, text categoricals with nulls, dates as strings."
    r = np.random.default_rng(seed)
    city = r.choice(["paris", "lyon", "nantes", None], n, p=[0.4, 0.3, 0.2, 0.1])
    plan = r.choice(["basic", "pro"], n)
    size = r.gamma(2.0, 30.0, n)
    size[r.random(n) < 0.05] = np.nan
    day = [f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)]
    y = 3 * np.nan_to_num(size, nan=50.0) + np.where(plan == "pro", 40.0, 0.0) + np.where(city == "paris", 25.0, 0.0) + r.normal(0, 5, n)
    return pl.DataFrame({"city": list(city), "plan": list(plan), "size_m2": size, "signup_day": day, "monthly_spend": y}).with_columns(
        pl.col("size_m2").fill_nan(None))


def test_a_differently_shaped_table_on_the_postgresql_studies_backend(tmp_path, pg_new_database):
    ws = Workspace.init(tmp_path / "ws", backends={"studies": pg_new_database()})
    df = shaped()
    assert df["city"].null_count() > 0 and df["size_m2"].null_count() > 0 and df.schema["signup_day"] == pl.String
    write_dataset(ws, "spend", df, source={"kind": "test", "location": "shaped()"})
    exp = Experiment(name="spend_reg", dataset="spend", target="monthly_spend", task="regression", split=KFold(2), search_space=SPACE,
                     params={"num_threads": 1}, num_boost_round=20, early_stopping_rounds=None, trials=3, pruner="none")
    res = search(ws, exp, report=False, progress=False)
    trials = res.study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert res.best_value == min(t.value for t in trials)  # rmse: lower is better
    assert searched(ws) == ["spend_reg"] and best_model(ws, "spend_reg")["trial"] == res.best_trial
    assert not ws.path("experiments", "spend_reg", "study.journal").exists()
    ws.close()
