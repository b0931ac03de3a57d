"""A search on a real Dask cluster (a `dask scheduler` process and `dask worker` processes, tests/dask_cluster.py) survives a
worker killed (SIGKILL) mid-search, in the dangerous window: the killed worker is the only one holding the scattered
prepared data, so the cluster loses it and cancels the trial that runs on it. The search sends the data again and
resubmits the same optuna trial; every trial ends COMPLETE or PRUNED, numbered without gaps, one MLflow child run each.
A trial lost more than 3 times fails the search with the reason, and nothing is left half-recorded. A training fit whose
worker is killed mid-fit runs again on the worker left (restarted first: LightGBM's network is stuck in it) and ends as
one run tagged with its attempts, on both shapes. No mocks."""
import os, threading, time

import numpy as np
import polars as pl
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2-core machines: every LightGBM below runs on one thread

import optuna
from optuna.trial import TrialState
from mlops_workbench.core.errors import MLWError
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.experiments.definition import Experiment, FloatParam, IntParam, KFold, TimeSplit
from mlops_workbench.experiments.search import load_study, search
from dask_cluster import dask_cluster  # noqa: F401  (the fixture)
from test_experiments import SPACE, children, client_of, running_runs, toy

pytestmark = pytest.mark.timeout(600)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def toy_regression(n=3000, seed=1) -> pl.DataFrame:
    "A regression target, no id column, text categoricals with nulls, the date as a string."
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, 3))
    colour = r.choice(["red", "green", "blue", None], n)
    day = [f"2025-03-{1 + i % 28:02d}" for i in range(n)]
    bump = np.select([colour == "red", colour == "green"], [1.5, -1.0], 0.0)
    y = 2 * x[:, 0] - x[:, 1] ** 2 + bump + 0.3 * r.standard_normal(n)
    return pl.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "colour": colour.tolist(), "day": day, "amount": y})


def dask_ws(tmp_path, cluster) -> Workspace:
    "A workspace whose compute backend is the cluster (a scheduler gone missing is waited for up to 60 s)."
    return Workspace.init(tmp_path / "ws", backends={"compute": f"{cluster.address}?timeout=60"}, env={})


def prepared_holders(mon) -> tuple[str, ...]:
    "The workers holding the search's scattered PreparedData now (empty before it is scattered)."
    held = [ws for k, ws in mon.who_has().items() if str(k).startswith("PreparedData-")]
    return tuple(held[0]) if held else ()


class Killer(threading.Thread):
    "Beside the search: wait until a trial runs on the only worker holding the scattered data, then SIGKILL it."
    def __init__(self, cluster, replace: bool = False, timeout_s: float = 240):
        super().__init__(daemon=True)
        self.cluster, self.replace, self.timeout_s, self.killed, self.error = cluster, replace, timeout_s, None, None
        self.done = threading.Event()

    def run(self):
        from distributed import Client
        try:
            with Client(self.cluster.address, timeout=10, set_as_default=False) as mon:
                deadline = time.monotonic() + self.timeout_s
                while not self.done.is_set():
                    if time.monotonic() > deadline: raise AssertionError("no trial ran on a lone holder of the data in time")
                    holders, busy, names = prepared_holders(mon), mon.processing(), {a: w["name"] for a, w in mon.scheduler_info(n_workers=-1)["workers"].items()}
                    # Dask's memory manager drops the broadcast replica of an idle worker within 2 s: then one worker
                    # holds the data, and its death loses it (the dangerous window this test is about).
                    if len(holders) == 1 and any(str(k).startswith("run_trial-") for k in busy.get(holders[0], ())):
                        self.killed = self.cluster.kill(names[holders[0]])  # by name: no lookup between seeing the trial and the SIGKILL
                        if self.replace: self.cluster.start_worker()
                        return
                    time.sleep(0.02)
        except BaseException as e: self.error = e


def check_survived(ws, cluster, res, n, killer):
    assert killer.error is None, killer.error
    assert killer.killed is not None, "the search finished before the kill"
    assert "lose scattered data" in cluster.scheduler_log()  # the kill did land in the dangerous window
    trials = res.study.trials
    assert len(trials) == n
    assert [t.number for t in trials] == list(range(n))
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}, [(t.number, t.state, t.user_attrs) for t in trials]
    retried = [t for t in trials if t.user_attrs["mlw"].get("attempts", 1) > 1]
    assert retried, "no trial was resubmitted"
    runs = children(ws, res.parent_run_id)
    assert sorted(int(r.data.tags["mlw.trial"]) for r in runs) == list(range(n))  # one child run per trial, none twice
    assert {r.info.status for r in runs} == {"FINISHED"}
    by_trial = {int(r.data.tags["mlw.trial"]): r for r in runs}
    for t in retried:
        assert by_trial[t.number].data.tags["mlw.attempts"] == str(t.user_attrs["mlw"]["attempts"])
        assert {k: str(v) for k, v in t.params.items()} == {k: by_trial[t.number].data.params[k] for k in t.params}  # same sampled params
    assert client_of(ws).get_run(res.parent_run_id).info.status == "FINISHED"
    assert running_runs(ws) == []


def test_search_survives_the_death_of_the_worker_holding_its_data(dask_cluster, tmp_path):
    ws = dask_ws(tmp_path, dask_cluster)
    exp = Experiment(name="dask_kill", target="label", split=KFold(3), search_space=SPACE, params={"num_threads": 1},
                     num_boost_round=60, trials=14, pruner={"kind": "median", "n_startup_trials": 3, "n_warmup_steps": 10})
    killer = Killer(dask_cluster); killer.start()
    try: res = search(ws, exp, data=toy(), n_jobs=1, report=False, progress=False)
    finally: killer.done.set(); killer.join(60)
    check_survived(ws, dask_cluster, res, 14, killer)
    assert len(dask_cluster.names()) == 1  # the rest of the search ran on the survivor
    ws.close()


def test_search_survives_a_kill_on_a_regression_table_with_text_and_nulls(dask_cluster, tmp_path):
    ws = dask_ws(tmp_path, dask_cluster)
    exp = Experiment(name="dask_kill_reg", task="regression", metric="rmse", target="amount", split=KFold(3),
                     search_space={"learning_rate": FloatParam(0.05, 0.3, log=True), "num_leaves": IntParam(4, 32, log=True)},
                     params={"num_threads": 1}, num_boost_round=60, trials=12, pruner={"kind": "median", "n_startup_trials": 3, "n_warmup_steps": 10})
    killer = Killer(dask_cluster, replace=True); killer.start()  # and a replacement worker joins after the kill
    try: res = search(ws, exp, data=toy_regression(), n_jobs=1, report=False, progress=False)
    finally: killer.done.set(); killer.join(120)
    check_survived(ws, dask_cluster, res, 12, killer)
    assert set(res.study.trials[0].user_attrs) >= {"mlw"} and res.best_value is not None
    ws.close()


class Reaper(threading.Thread):
    "Beside the search: each time a trial runs, start a fresh worker, then SIGKILL every other one (so the data dies too)."
    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster, self.kills, self.error, self.done = cluster, 0, None, threading.Event()

    def run(self):
        from distributed import Client
        try:
            with Client(self.cluster.address, timeout=10, set_as_default=False) as mon:
                while not self.done.is_set():
                    busy = [a for a, ks in mon.processing().items() if any(str(k).startswith("run_trial-") for k in ks)]
                    if busy:
                        fresh = self.cluster.start_worker()
                        for a, name in self.cluster.names().items():
                            if name != fresh and not self.done.is_set(): self.cluster.kill(a); self.kills += 1
                    time.sleep(0.05)
        except BaseException as e: self.error = e


def test_a_trial_lost_more_than_three_times_fails_the_search_with_the_reason(dask_cluster, tmp_path):
    ws = dask_ws(tmp_path, dask_cluster)
    # Trials of many seconds, so each one is still running when its worker is killed.
    exp = Experiment(name="dask_reaped", target="label", split=TimeSplit("t", 0.25), search_space=SPACE, params={"num_threads": 1},
                     num_boost_round=20000, early_stopping_rounds=None, trials=3, pruner="none")
    reaper = Reaper(dask_cluster); reaper.start()
    try:
        with pytest.raises(MLWError) as e: search(ws, exp, data=toy(), n_jobs=1, report=False, progress=False)
    finally: reaper.done.set(); reaper.join(120)
    assert reaper.error is None, reaper.error
    msg = str(e.value)
    assert "experiment 'dask_reaped': trial 0 failed (lost on the Dask cluster 4 time(s), the last: CancelledError" in msg, msg
    assert "Check the Dask workers" in msg and "run the search again to resume" in msg
    study = load_study(ws, exp)
    [t] = study.trials  # one trial asked (n_jobs=1), sent 4 times, recorded once
    assert t.state == TrialState.FAIL and t.user_attrs["mlw.error"].startswith("lost on the Dask cluster 4 time(s)")
    assert t.user_attrs["mlw"]["attempts"] == 4
    parent = client_of(ws).get_run(study.user_attrs["mlw.parent_run_id"])
    assert parent.info.status == "FAILED" and "trial 0 failed (lost on the Dask cluster" in parent.data.tags["mlw.failure_reason"]
    [child] = children(ws, parent.info.run_id)
    assert child.info.status == "FAILED" and child.data.tags["mlw.trial"] == "0" and child.data.tags["mlw.attempts"] == "4"
    assert child.data.tags["mlw.failure_reason"].startswith("lost on the Dask cluster 4 time(s)")
    assert running_runs(ws) == []
    ws.close()


class FitKiller(threading.Thread):
    "Beside a training run: once LightGBM's fit runs on the workers (`_train_part` tasks), SIGKILL the first of them."
    def __init__(self, cluster, timeout_s: float = 240):
        super().__init__(daemon=True)
        self.cluster, self.timeout_s, self.killed, self.error, self.done = cluster, timeout_s, None, None, threading.Event()

    def run(self):
        from distributed import Client
        try:
            with Client(self.cluster.address, timeout=10, set_as_default=False) as mon:
                deadline = time.monotonic() + self.timeout_s
                while not self.done.is_set():
                    if time.monotonic() > deadline: raise AssertionError("the fit never ran on the workers")
                    busy = sorted(a for a, ks in mon.processing().items() if any(str(k).startswith("_train_part") for k in ks))
                    if len(busy) == 2:  # both workers are in LightGBM's collective: kill one of them mid-fit
                        names = {a: w["name"] for a, w in mon.scheduler_info(n_workers=-1)["workers"].items()}
                        time.sleep(0.2)
                        self.killed = self.cluster.kill(names[busy[0]])
                        return
                    time.sleep(0.02)
        except BaseException as e: self.error = e


@pytest.mark.parametrize("shape", ["binary", "regression"])
def test_training_survives_a_worker_killed_mid_fit(dask_cluster, tmp_path, shape):
    "The fit's worker dies: the one left is restarted (its LightGBM network is stuck) and the fit runs again there; one run, tagged."
    from mlops_workbench.training.fit import train
    ws = dask_ws(tmp_path, dask_cluster)
    if shape == "binary": data, kw = toy(8000), dict(target="label", split=TimeSplit("t", 0.25), search_space=SPACE)
    else:
        data = toy_regression(8000)
        kw = dict(task="regression", metric="rmse", target="amount", split=KFold(3), search_space={"learning_rate": FloatParam(0.05, 0.3, log=True)})
    exp = Experiment(name=f"fit_kill_{shape}", params={"num_threads": 1}, num_boost_round=2000, early_stopping_rounds=None, trials=1, **kw)
    killer = FitKiller(dask_cluster); killer.start()
    try: res = train(ws, exp, {"learning_rate": 0.05, "num_leaves": 15}, data=data)
    finally: killer.done.set(); killer.join(60)
    assert killer.error is None, killer.error
    assert killer.killed is not None, "the fit finished before the kill"
    assert len(dask_cluster.names()) == 1  # the fit ran again on the one worker left
    run = client_of(ws).get_run(res.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlw.attempts"] == "2"
    assert run.data.metrics["n_trees"] == 2000 and all(np.isfinite(v) for v in res.metrics.values())
    assert [r.info.run_id for r in client_of(ws).search_runs([run.info.experiment_id])] == [res.run_id]  # one run, not one per attempt
    assert running_runs(ws) == []
    ws.close()
