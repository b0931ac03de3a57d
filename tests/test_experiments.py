"""Experiment search for real: a search process killed (SIGKILL, SIGTERM) and resumed, trials on Dask clusters and in
threads, every bad input with its error (and the run it leaves FAILED, where one was created), the offline report in a browser.
Real MLflow stores, real optuna journals, real Dask LocalClusters; no mocks."""
import os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2-core machines: every LightGBM below runs on one thread

import optuna
from optuna.trial import TrialState
from mlops_workbench.core.errors import Conflict, InvalidInput, MLWError, NotFound
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.core.storage import write_dataset
from mlops_workbench.experiments.definition import Experiment, FloatParam, IntParam, CategoricalParam, KFold, TimeSplit
from mlops_workbench.experiments.search import load_study, search
from mlops_workbench.experiments.results import _runs, study_dir
from mlops_workbench.experiments.report import compare
from mlops_workbench.experiments.results import best_model

pytestmark = pytest.mark.timeout(600)
optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"learning_rate": FloatParam(0.05, 0.3, log=True), "num_leaves": IntParam(4, 32, log=True), "min_child_samples": IntParam(5, 50)}


def toy(n=4000, p=8, seed=0) -> pl.DataFrame:
    "A binary problem with a nonlinear signal, and a timestamp per row."
    r = np.random.default_rng(seed)
    X = r.standard_normal((n, p))
    y = (X[:, 0] + X[:, 1] ** 2 + 0.7 * r.standard_normal(n) > 1).astype(int)
    t = pl.datetime_range(pl.datetime(2025, 1, 1), pl.datetime(2025, 1, 1) + pl.duration(minutes=n - 1), "1m", eager=True, time_zone="UTC")
    return pl.DataFrame({f"x{i}": X[:, i] for i in range(p)}).with_columns(label=y, t=t)


def experiment(name, **kw) -> Experiment:
    base = dict(name=name, target="label", split=KFold(3), search_space=SPACE, params={"num_threads": 1}, num_boost_round=60, trials=6,
                pruner={"kind": "median", "n_startup_trials": 3, "n_warmup_steps": 10})
    return Experiment(**{**base, **kw})


@pytest.fixture(scope="module")
def mws(tmp_path_factory):
    "One workspace for the module (MLflow's database migrations cost seconds per new store), with the toy dataset."
    ws = Workspace.init(tmp_path_factory.mktemp("exp") / "ws")
    write_dataset(ws, "toy", toy(), source={"kind": "test", "location": "toy()"})
    yield ws
    ws.close()


def client_of(ws):
    return ws.backend("tracking").client


def children(ws, parent):
    c = client_of(ws)
    return _runs(c, c.get_run(parent).info.experiment_id, f"tags.mlflow.parentRunId = '{parent}'")


def running_runs(ws):
    c = client_of(ws)
    return [r for e in c.search_experiments() for r in _runs(c, e.experiment_id, "attributes.status = 'RUNNING'")]


# -- interrupt and resume ------------------------------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import sys
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.experiments.definition import Experiment
    from mlops_workbench.experiments.search import search
    search(Workspace.open(sys.argv[1]), Experiment.from_yaml(sys.argv[2]), report=False, progress=False)
""")


def start_search(ws, exp, tmp_path):
    "A search of `exp` in another process (the experiment as a YAML file, the way a pipeline would pass it)."
    y = tmp_path / f"{exp.name}.yaml"
    y.write_text(exp.to_yaml())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(ws.root), str(y)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_trials(ws, exp, proc, finished, timeout=240):
    "Wait until the study has `finished` finished trials and one running; fail with the worker's output if it died."
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None: pytest.fail(f"the search process exited early ({proc.returncode}):\n{proc.stdout.read().decode()[-3000:]}")
        if (study_dir(ws, exp.name) / "study.journal").exists():
            trials = load_study(ws, exp).get_trials(deepcopy=False)
            done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
            if done >= finished and any(t.state == TrialState.RUNNING for t in trials): return
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no {finished} finished trials within {timeout} s")


def slow(name, trials, rounds=3000):
    """Trials of about two seconds on the toy data, long beside the moment between seeing a trial running and signalling the
    search, so the signal lands inside that trial even on a loaded machine."""
    return experiment(name, dataset="toy", split=TimeSplit("t", 0.25), num_boost_round=rounds, early_stopping_rounds=None, trials=trials,
                      pruner="none")


def test_sigkill_mid_study_then_rerun_finishes_the_budget(mws, tmp_path):
    exp = slow("killed", trials=5)
    proc = start_search(mws, exp, tmp_path)
    wait_for_trials(mws, exp, proc, finished=2)
    proc.send_signal(signal.SIGKILL); proc.wait(30)
    before = load_study(mws, exp).get_trials(deepcopy=False)
    stale = [t.number for t in before if t.state == TrialState.RUNNING]
    assert stale, "the process was killed between trials; the test wants one cut short"
    parent = load_study(mws, exp).user_attrs["mlw.parent_run_id"]
    assert client_of(mws).get_run(parent).info.status == "RUNNING"  # what a SIGKILL leaves behind

    res = search(mws, exp, report=False, progress=False)  # rerun: resumes
    assert res.parent_run_id == parent
    trials = res.study.get_trials(deepcopy=False)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 5  # the budget counts finished trials
    for n in stale:
        assert trials[n].state == TrialState.FAIL and trials[n].user_attrs["mlw.error"].startswith("stale")
    assert [t.number for t in trials[:len(before)] if t.state == TrialState.COMPLETE] == [t.number for t in before if t.state == TrialState.COMPLETE]
    runs = {int(r.data.tags["mlw.trial"]): r for r in children(mws, parent)}
    assert set(runs) == {t.number for t in trials}  # every trial has its child run, lost ones re-logged
    for n in stale:
        assert runs[n].info.status == "FAILED" and runs[n].data.tags["mlw.failure_reason"].startswith("stale")
    assert client_of(mws).get_run(parent).info.status == "FINISHED"
    assert running_runs(mws) == []


def test_sigterm_kills_cleanly_and_a_second_search_is_refused_meanwhile(mws, tmp_path):
    exp = slow("terminated", trials=4)
    proc = start_search(mws, exp, tmp_path)
    wait_for_trials(mws, exp, proc, finished=1)
    with pytest.raises(Conflict, match="'terminated' is being searched by pid"):
        search(mws, exp, report=False, progress=False)
    wait_for_trials(mws, exp, proc, finished=1)  # again: the refused search took a while, and the signal must cut a trial
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode != 0 and "KeyboardInterrupt" in out
    study = load_study(mws, exp)
    parent = client_of(mws).get_run(study.user_attrs["mlw.parent_run_id"])
    assert parent.info.status == "KILLED" and "SIGTERM" in parent.data.tags["mlw.failure_reason"]
    cut = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL]
    assert cut and all(t.user_attrs["mlw.error"].startswith("interrupted") for t in cut)
    assert not [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    assert running_runs(mws) == []  # nothing left RUNNING, without any rerun
    res = search(mws, exp, report=False, progress=False)
    assert sum(t.state == TrialState.COMPLETE for t in res.study.trials) == 4


# -- where trials run ----------------------------------------------------------------------------------------------

def hosts(res):
    return {t.user_attrs["mlw"]["host"] for t in res.study.trials}


def check_finished(ws, res, n):
    assert len(res.study.trials) == n and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in res.study.trials)
    assert {r.info.status for r in children(ws, res.parent_run_id)} == {"FINISHED"}
    assert client_of(ws).get_run(res.parent_run_id).info.status == "FINISHED"


def test_parallel_trials_in_threads_overlap(mws):
    res = search(mws, experiment("threads", dataset="toy", trials=6), n_jobs=2, report=False, progress=False)
    check_finished(mws, res, 6)
    spans = [(t.datetime_start, t.datetime_complete) for t in res.study.trials]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:])


def test_distributed_trials_on_a_dask_local_cluster(mws):
    res = search(mws, experiment("dask_local", dataset="toy", trials=6), compute="dask-local://?n_workers=2&threads_per_worker=1",
                 report=False, progress=False)
    check_finished(mws, res, 6)
    assert len(hosts(res)) == 2 and all(h.split(":")[1] != str(os.getpid()) for h in hosts(res))  # both worker processes, not us
    assert res.best_trial is not None


def test_distributed_trials_on_an_existing_scheduler(mws):
    from distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        res = search(mws, experiment("dask_tcp", dataset="toy", trials=4), compute=cluster.scheduler_address, report=False, progress=False)
    check_finished(mws, res, 4)
    assert len(hosts(res)) == 1 and next(iter(hosts(res))).split(":")[1] != str(os.getpid())


# -- bad input -----------------------------------------------------------------------------------------------------

def nothing_created(ws, name):
    assert not study_dir(ws, name).exists()
    assert client_of(ws).get_experiment_by_name(name) is None


@pytest.mark.parametrize("data, exp_kw, exc, message", [
    (toy().head(0), {}, InvalidInput, "training data (data frame) has no rows"),
    (toy().drop("label"), {}, InvalidInput, "target 'label' is not a column; columns: x0"),
    (toy().with_columns(label=pl.lit(1)), {}, InvalidInput, "target 'label' has a single class (1); a binary task needs at least two"),
    (toy().with_columns(label=pl.lit(1)), {"task": "multiclass"}, InvalidInput, "has a single class (1); a multiclass task needs at least two"),
    (toy().with_columns(label=pl.lit(2.5)), {"task": "regression"}, InvalidInput, "target 'label' is constant (2.5)"),
    (toy().with_columns(label=pl.when(pl.col("x0") > 2).then(float("nan")).otherwise(pl.col("x0"))), {"task": "regression"}, InvalidInput,
     "NaN or infinite value(s); drop or fix those rows"),
    (toy().with_columns(label=pl.when(pl.col("x0") > 2).then(float("inf")).otherwise(pl.col("x0"))), {"task": "regression"}, InvalidInput,
     "NaN or infinite value(s)"),
    (toy().with_columns(label=pl.when(pl.col("x0") > 2).then(None).otherwise(pl.col("label"))), {}, InvalidInput, "null value(s); drop or label those rows"),
], ids=["empty", "target-missing", "single-class", "single-class-multiclass", "constant", "nan", "inf", "null"])
def test_bad_training_data_fails_before_any_run(mws, data, exp_kw, exc, message):
    exp = experiment("bad_data", **exp_kw)
    with pytest.raises(exc) as e: search(mws, exp, data=data, progress=False)
    assert message in str(e.value)
    nothing_created(mws, "bad_data")


@pytest.mark.parametrize("kw, message", [
    ({"search_space": {"learning_rate": FloatParam(0.3, 0.01)}}, "search_space['learning_rate']: low 0.3 is above high 0.01"),
    ({"search_space": {"num_leafs": IntParam(4, 32)}}, "'num_leafs' is not a LightGBM parameter"),
    ({"search_space": {"bagging_fraction": FloatParam(0.5, 1.0, when={"strategy": "bagging"})}}, "names 'strategy', which is not a parameter declared before it"),
    ({"search_space": {"boosting": CategoricalParam([])}}, "choices must be a non-empty list"),
    ({"search_space": {}}, "search_space is empty"),
    ({"metric": "accuracy"}, "metric 'accuracy' is unknown; metrics for binary: auc, average_precision"),
    ({"task": "regression", "metric": "auc"}, "metric 'auc' does not apply to a regression task"),
    ({"sampler": "grid"}, "sampler 'grid' is unknown; kinds: tpe, random, cmaes, qmc"),
], ids=["low-high", "unknown-param", "bad-condition", "no-choices", "empty-space", "unknown-metric", "metric-task", "unknown-sampler"])
def test_invalid_definitions_fail_as_they_are_made(kw, message):
    with pytest.raises(InvalidInput, match="experiment 'bad_def' is invalid") as e: experiment("bad_def", **kw)
    assert message in str(e.value)


def test_invalid_yaml_definitions_fail_as_they_are_read():
    y = experiment("ok").to_yaml()
    with pytest.raises(InvalidInput, match="metric 'accuracy' is unknown"): Experiment.from_yaml(y.replace("metric: auc", "metric: accuracy"))
    with pytest.raises(InvalidInput, match="'num_leafs' is not a LightGBM parameter"): Experiment.from_yaml(y.replace("num_leaves", "num_leafs"))
    with pytest.raises(InvalidInput, match="field 'trails' is unknown"): Experiment.from_yaml(y.replace("trials:", "trails:"))


def test_feature_service_or_dataset_not_found(mws):
    with pytest.raises(NotFound, match="experiment 'no_service': feature service 'credit_v9' not found"):
        search(mws, experiment("no_service", feature_service="credit_v9", entities="toy"), progress=False)
    with pytest.raises(NotFound, match="experiment 'no_dataset': dataset 'nope'"):
        search(mws, experiment("no_dataset", dataset="nope"), progress=False)
    nothing_created(mws, "no_service"); nothing_created(mws, "no_dataset")


def test_unreachable_dask_scheduler_names_the_uri(mws):
    with pytest.raises(MLWError, match=r"compute backend 'tcp://127.0.0.1:9': the Dask scheduler is unreachable"):
        search(mws, experiment("no_scheduler", dataset="toy"), compute="tcp://127.0.0.1:9?timeout=1", progress=False)
    nothing_created(mws, "no_scheduler")


def test_failing_trial_leaves_parent_and_child_failed_with_the_reason(mws):
    exp = experiment("lgb_error", dataset="toy", params={"num_threads": 1, "num_leaves": 1}, search_space={"learning_rate": FloatParam(0.05, 0.3)})
    with pytest.raises(MLWError, match=r"trial 0 failed \(LightGBMError: .*num_leaves"):
        search(mws, exp, report=False, progress=False)
    parent = client_of(mws).get_run(load_study(mws, exp).user_attrs["mlw.parent_run_id"])
    assert parent.info.status == "FAILED" and "trial 0 failed (LightGBMError" in parent.data.tags["mlw.failure_reason"]
    [child] = children(mws, parent.info.run_id)
    assert child.info.status == "FAILED" and "num_leaves" in child.data.tags["mlw.failure_reason"]
    assert running_runs(mws) == []


def test_resume_refuses_other_data_or_definition_and_leaves_runs_alone(mws):
    exp = experiment("provenance", trials=3)
    res = search(mws, exp, data=toy(seed=1), report=False, progress=False)
    with pytest.raises(Conflict, match="was started on other training data"):
        search(mws, exp, data=toy(seed=2), progress=False)
    with pytest.raises(Conflict, match="was started with another definition"):
        search(mws, experiment("provenance", trials=3, num_boost_round=30), data=toy(seed=1), progress=False)
    assert client_of(mws).get_run(res.parent_run_id).info.status == "FINISHED"
    assert len(search(mws, experiment("provenance", trials=5), data=toy(seed=1), report=False, progress=False).study.trials) == 5


# -- the report ----------------------------------------------------------------------------------------------------

def test_report_works_offline_and_sorts_in_a_browser(mws, page):
    res = search(mws, experiment("reported", dataset="toy", trials=8), progress=False)
    assert "report.html" in [a.path for a in client_of(mws).list_artifacts(res.parent_run_id)]
    page.goto(res.report_path.as_uri())
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length === 8")  # five comparison figures, then slice, contour, EDF
    assert [u for u in page.offsite if u != res.report_path.as_uri()] == []  # no CDN: nothing fetched but the file itself
    values = lambda: [float(v) if v else None for v in page.eval_on_selector_all("table.mlw-sortable tbody tr td:nth-child(3)", "tds => tds.map(t => t.dataset.v)")]
    page.click("table.mlw-sortable th:nth-child(3)")
    got = [v for v in values() if v is not None]
    assert got == sorted(got)
    page.click("table.mlw-sortable th:nth-child(3)")
    got = [v for v in values() if v is not None]
    assert got == sorted(got, reverse=True)
    assert best_model(mws, "reported")["trial"] == res.best_trial == compare(mws, "reported").search.best_trial
