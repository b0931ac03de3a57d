"""Experiment search: what our tracking and storage cost per trial against plain optuna, what pruning saves, and Dask throughput.

Run: .venv/bin/python bench/experiments.py [--rows 100_000] [--features 50] [--trials 50] [--rounds 100] [--threads 1] [--throughput-trials 20]
     [--studies URI ...] [--studies-trials 100] [--only-studies]

One synthetic binary problem (--rows x --features, a nonlinear signal in a dozen features), the latest 20% of rows
validating, LightGBM with early stopping (10 rounds), a 6-parameter space. All sides run in this one process, side by
side, on the same rows and the same validation split:

  (1) tracking overhead, --trials trials, TPE with the same seed, no pruning:
      plain   optuna in memory, `study.optimize`, the LightGBM Dataset built once, nothing tracked
      ours    `search()`: study in the workspace's journal file, every trial an MLflow child run (per-round metrics,
              parameters, final metrics, duration) on the SQLite tracking store, the parent run, the training data's record
      Same seed and same values make TPE propose the same parameters on both sides (checked below), so the LightGBM
      work is identical and the difference is our bookkeeping. Target: ours at most 5% slower per trial. Both wall
      time and the process's CPU time are shown: our MLflow writes run in a background thread, so on a machine with a
      spare core they hide in the wall time, while the CPU time counts them in full. LightGBM gets --threads threads
      (default 1: on busy shared VMs OpenMP's multi-thread timings swing most).
  (2) pruning: ours again with the median pruner, against (1)'s unpruned run: wall time saved, best value reached.
  (3) throughput, --throughput-trials trials with a seeded random sampler (every mode trains the same models):
      one trial at a time on one LightGBM thread and on every core, one trial per core in threads of this process, and a
      Dask LocalCluster of one single-threaded worker process per core (`dask-local://`).

  (4) with --studies URI (repeatable): the study storage's own cost per trial, the workspace's default journal file
      against each `studies` backend URI (postgresql://user@host/db, redis://host:6379/0; see core.studies), in this
      same run: --studies-trials trivial trials (no LightGBM), each doing the bookkeeping a search does (ask six
      parameters, one `mlw` user attribute with a 20-point curve, tell), after a warm-up of 20, TPE and random sampler.
      The ratio to the journal file is what to read. --only-studies skips (1)-(3).

MLflow's one-time costs (its import and the creation of a workspace's tracking database) are paid before the clock
starts and reported apart. Timings on these shared 2-core VMs swing run to run (another job on the machine stretches one
side's wall time, and even its CPU time): compare the ratios measured side by side, read the CPU spent outside
LightGBM (the bookkeeping itself, free of LightGBM's swing), and use --repeat 2 when another job was busy.
"""
import argparse, os, shutil, tempfile, time
from pathlib import Path

import numpy as np
import polars as pl


def make_data(rows: int, features: int, seed: int = 0) -> pl.DataFrame:
    r = np.random.default_rng(seed)
    X = r.standard_normal((rows, features)).astype(np.float64)
    k = min(12, features); w = np.zeros(features); w[:k] = r.normal(0, 1, k)
    z = X @ w + 0.8 * np.sin(2 * X[:, 0]) * X[:, 1] + 0.5 * (X[:, 2] > 0.5) + r.normal(0, 1.2, rows)
    y = (z > np.quantile(z, 0.7)).astype(np.int8)
    t = pl.datetime_range(pl.datetime(2025, 1, 1), pl.datetime(2025, 1, 1) + pl.duration(seconds=rows - 1), "1s", eager=True, time_zone="UTC")
    return pl.DataFrame({f"f{i}": X[:, i] for i in range(features)}).with_columns(label=y, t=t)


def space():
    "The searched space; plain_optuna below suggests the same parameters in the same order."
    from mlops_workbench.experiments.definition import CategoricalParam, FloatParam, IntParam
    return {"learning_rate": FloatParam(0.05, 0.3, log=True), "num_leaves": IntParam(8, 128, log=True),
            "min_child_samples": IntParam(10, 200, log=True), "feature_fraction": FloatParam(0.5, 1.0),
            "lambda_l2": FloatParam(1e-3, 10.0, log=True), "extra_trees": CategoricalParam([False, True])}


def plain_optuna(data, a, fixed: dict) -> tuple[float, list]:
    "The baseline: what a data scientist writes with optuna alone."
    import lightgbm as lgb, optuna
    t0, c0, train_cpu = time.perf_counter(), time.process_time(), []
    tr, va = data.folds[0]
    dtr = lgb.Dataset(data.X[tr], data.y[tr], params={"feature_pre_filter": False, "verbose": -1}, free_raw_data=False)
    dva = lgb.Dataset(data.X[va], data.y[va], reference=dtr, free_raw_data=False)

    def objective(trial):
        p = {**fixed,
             "learning_rate": trial.suggest_float("learning_rate", 0.05, 0.3, log=True),
             "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
             "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
             "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
             "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
             "extra_trees": trial.suggest_categorical("extra_trees", [False, True])}
        c = time.thread_time()
        b = lgb.train(p, dtr, a.rounds, valid_sets=[dva], callbacks=[lgb.early_stopping(10, first_metric_only=True, verbose=False)])
        train_cpu.append(time.thread_time() - c)
        return b.best_score["valid_0"]["auc"]

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=a.seed))
    study.optimize(objective, n_trials=a.trials)
    return time.perf_counter() - t0, time.process_time() - c0, sum(train_cpu), [t.value for t in study.trials]


def ours(ws, df, name, a, compute=None, n_jobs=None, **kw):
    "Our search of the same space on the same rows; its wall time, CPU time, CPU inside the trials (one-thread local runs) and result."
    from mlops_workbench.experiments import search as es
    from mlops_workbench.experiments.definition import Experiment, TimeSplit
    search, run_trial, train_cpu = es.search, es.run_trial, []
    def timed_trial(*args):  # the CPU of the trial's own thread: all of LightGBM's when it runs on one thread
        c = time.thread_time(); out = run_trial(*args); train_cpu.append(time.thread_time() - c); return out
    exp = Experiment(**{**dict(name=name, target="label", split=TimeSplit("t", 0.2), search_space=space(), num_boost_round=a.rounds,
                               early_stopping_rounds=10, trials=a.trials, pruner="none", seed=a.seed,
                               params={"num_threads": a.threads, "force_row_wise": True}), **kw})
    t0, c0 = time.perf_counter(), time.process_time()
    if compute is None: es.run_trial = timed_trial
    try: res = search(ws, exp, data=df, compute=compute, n_jobs=n_jobs, report=False, progress=False)
    finally: es.run_trial = run_trial
    return time.perf_counter() - t0, time.process_time() - c0, sum(train_cpu), res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=50)
    ap.add_argument("--trials", type=int, default=50, help="trials of the overhead and pruning comparisons")
    ap.add_argument("--rounds", type=int, default=100, help="boosting rounds at most (early stopping after 10 without gain)")
    ap.add_argument("--threads", type=int, default=1, help="LightGBM threads per trial in the overhead and pruning comparisons")
    ap.add_argument("--throughput-trials", type=int, default=20, help="trials per mode of the throughput comparison (0 skips it)")
    ap.add_argument("--repeat", type=int, default=1, help="alternate plain and ours this many times in (1); the best wall time of each side counts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--studies", action="append", default=[], metavar="URI", help="(4): a studies backend URI to compare with the journal file (repeatable)")
    ap.add_argument("--studies-trials", type=int, default=100, help="trivial trials per storage and sampler in (4)")
    ap.add_argument("--only-studies", action="store_true", help="run (4) only")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))

    t0 = time.perf_counter()
    import optuna, lightgbm
    import mlflow  # noqa: F401  (one-time cost, reported apart)
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.experiments.definition import Experiment, TimeSplit, prepare_data
    from mlops_workbench.experiments.report import write_report
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_import = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="mlw-bench-exp-"))
    try:
        if not a.only_studies: run(a, tmp, t_import, Workspace, Experiment, TimeSplit, prepare_data, write_report)
        if a.studies: studies_cost(a, tmp, Workspace)
    finally: shutil.rmtree(tmp, ignore_errors=True)  # whatever happened, nothing is left in /tmp


def run(a, tmp: Path, t_import: float, Workspace, Experiment, TimeSplit, prepare_data, write_report):
    "The measurements, with their workspace under `tmp`."
    import optuna, lightgbm, mlflow
    ws = Workspace.init(tmp / "ws")
    t0 = time.perf_counter(); ws.backend("tracking").experiment_id("warm-up"); t_store = time.perf_counter() - t0
    df = make_data(a.rows, a.features, a.seed)
    exp0 = Experiment("probe", target="label", split=TimeSplit("t", 0.2), search_space=space(), trials=1)
    data = prepare_data(None, exp0, df)
    fixed = {"objective": "binary", "metric": "auc", "seed": a.seed, "deterministic": True, "verbose": -1, "num_threads": a.threads, "force_row_wise": True}
    import warnings; warnings.filterwarnings("ignore", message="Overriding the parameters from Reference Dataset")

    print(f"experiments bench: {a.rows:,} rows x {a.features} features, {len(data.folds[0][1]):,} validating; {a.trials} trials, "
          f"<= {a.rounds} rounds; {os.cpu_count()} CPUs; optuna {optuna.__version__}, lightgbm {lightgbm.__version__}, mlflow {mlflow.__version__}", flush=True)
    print(f"  one-time, before the clock: imports {t_import:.1f} s, creating the workspace's MLflow database {t_store:.1f} s", flush=True)

    # (1) overhead
    line = lambda t, c, k: (f"{t:7.1f} s wall {t / a.trials * 1000:6.0f} ms/trial   {c:6.1f} s CPU, outside LightGBM {c - k:5.1f} s "
                            f"({(c - k) / a.trials * 1000:4.0f} ms/trial)")
    best = lambda runs: min(runs, key=lambda r: r[0])
    plains, ourss = [], []
    for i in range(a.repeat):
        plains.append(plain_optuna(data, a, fixed))
        print(f"  plain optuna, in memory, untracked: {line(*plains[-1][:3])}", flush=True)
        ourss.append(ours(ws, df, "overhead" if i == 0 else f"overhead_{i}", a))
        print(f"  ours, journal + MLflow tracking:    {line(*ourss[-1][:3])}", flush=True)
    (t_plain, c_plain, k_plain, plain_values), (t_ours, c_ours, k_ours, res) = best(plains), best(ourss)
    trials = res.study.trials
    same = len(plain_values) == len(trials) and all(abs(p - t.value) < 1e-9 for p, t in zip(plain_values, trials))
    print(f"      same {len(trials)} trials, same parameters and values on both sides: {'yes' if same else 'NO'}", flush=True)
    over, cover = t_ours / t_plain - 1, c_ours / c_plain - 1
    book = ((c_ours - k_ours) - (c_plain - k_plain)) / a.trials
    print(f"  (1) per-trial overhead of tracking + storage{f' (best of {a.repeat} per side)' if a.repeat > 1 else ''}: "
          f"wall {over * 100:+.1f}% ({(t_ours - t_plain) / a.trials * 1000:+.0f} ms/trial), "
          f"CPU {cover * 100:+.1f}%; the CPU outside LightGBM, which removes LightGBM's run-to-run swing: {book * 1000:+.0f} ms/trial, "
          f"{book / (c_plain / a.trials) * 100:+.1f}% of a plain trial (target <= +5%)", flush=True)
    t0 = time.perf_counter(); write_report(ws, res); t_report = time.perf_counter() - t0
    print(f"      once per search, not per trial: writing the comparison report {t_report:.1f} s", flush=True)

    # (2) pruning
    t_pruned, _, _, rp = ours(ws, df, "pruned", a, pruner={"kind": "median", "n_startup_trials": 5, "n_warmup_steps": 10})
    n_pruned = sum(t.state.name == "PRUNED" for t in rp.study.trials)
    print(f"  (2) median pruning: {t_pruned:.1f} s against {t_ours:.1f} s unpruned: {(1 - t_pruned / t_ours) * 100:.0f}% of the wall time saved; "
          f"{n_pruned}/{a.trials} trials pruned; best auc {rp.best_value:.4f} against {res.best_value:.4f}", flush=True)

    # (3) throughput
    if a.throughput_trials:
        from mlops_workbench.core.backends import registry
        n, cores = a.throughput_trials, os.cpu_count() or 1
        common = dict(trials=n, sampler={"kind": "random"})
        one = {"force_row_wise": True}  # no num_threads: each trial gets its share of the cores (threads), or the worker's (Dask)
        t_one, *_ = ours(ws, df, "tp_one", a, **common, params={**one, "num_threads": 1})
        t_all, *_, r1 = ours(ws, df, "tp_all", a, **common, params={**one, "num_threads": cores})
        t_thr, *_, r2 = ours(ws, df, "tp_threads", a, **common, params=one, n_jobs=cores)
        t0 = time.perf_counter()
        cluster = registry("compute").build(f"dask-local://?n_workers={cores}&threads_per_worker=1", ws); cluster.slots()
        t_start = time.perf_counter() - t0
        t_dask, *_, r3 = ours(ws, df, "tp_dask", a, **common, params=one, compute=cluster)
        cluster.close()
        rate = lambda t: f"{t:6.1f} s  {n / t * 60:6.1f} trials/min  {t_one / t:5.2f}x"
        print(f"  (3) throughput, {n} identical random-sampled trials per mode (x: against sequential on one thread):", flush=True)
        print(f"      sequential, 1 LightGBM thread:                  {rate(t_one)}", flush=True)
        print(f"      sequential, {cores} LightGBM threads:                 {rate(t_all)}", flush=True)
        print(f"      {cores} trials at once in threads, 1 thread each:      {rate(t_thr)}", flush=True)
        print(f"      Dask LocalCluster, {cores} worker processes x 1 thread: {rate(t_dask)}  (+ {t_start:.1f} s to start the cluster)", flush=True)
        vals = [sorted(round(t.value, 9) for t in r.study.trials if t.value is not None) for r in (r1, r2, r3)]
        print(f"      same models in every mode: {'yes' if vals[0] == vals[1] == vals[2] else 'NO'}", flush=True)
    ws.close()


def _bookkeeping(trial):
    "A trivial trial doing a search's study writes: six parameters asked, one `mlw` attribute with a curve (see search._tell)."
    x = [trial.suggest_float("learning_rate", 0.01, 0.3, log=True), trial.suggest_int("num_leaves", 4, 256, log=True),
         trial.suggest_int("min_child_samples", 5, 100), trial.suggest_float("feature_fraction", 0.5, 1.0),
         trial.suggest_float("lambda_l1", 1e-8, 10, log=True), trial.suggest_float("lambda_l2", 1e-8, 10, log=True)]
    v = (x[0] - 0.1) ** 2 + (x[3] - 0.8) ** 2
    trial.set_user_attr("mlw", {"n_trees": 100, "duration_s": 0.0, "host": "bench", "curve": [[i * 5, v + 1 / i] for i in range(1, 21)]})
    return v


def studies_cost(a, tmp: Path, Workspace):
    "(4) per-trial cost of the study storage: the default journal file against each --studies URI, side by side."
    import uuid, optuna
    from mlops_workbench.core.backends import registry
    ws = Workspace.init(tmp / "ws-studies")
    backends = [("journal file (default)", ws.backend("studies"))] + [(u, registry("studies").build(u, ws)) for u in a.studies]
    n = a.studies_trials
    print(f"  (4) study storage per trial, {n} trivial trials each (a search's writes, no training), after 20 warm-up trials:", flush=True)
    cost = {}
    for label, st in backends:
        names = []
        for kind, sampler in (("tpe", lambda: optuna.samplers.TPESampler(seed=a.seed)), ("random", lambda: optuna.samplers.RandomSampler(seed=a.seed))):
            name = f"bench-{kind}-{uuid.uuid4().hex[:8]}"; names.append(name)
            study = optuna.create_study(study_name=name, storage=st.storage(name), sampler=sampler(), direction="minimize")
            study.optimize(_bookkeeping, n_trials=20)  # warm-up: imports, connections, tables
            t0 = time.perf_counter(); study.optimize(_bookkeeping, n_trials=n); dt_ = time.perf_counter() - t0
            t0 = time.perf_counter(); optuna.load_study(study_name=name, storage=st.storage(name)).best_trial; t_load = time.perf_counter() - t0
            cost[(label, kind)] = dt_ / n
            base = cost[(backends[0][0], kind)]
            print(f"      {label:<50.50} {kind:<6} {dt_ / n * 1000:7.1f} ms/trial  x{dt_ / n / base:5.2f} the journal file   "
                  f"(load_study + best_trial {t_load * 1000:5.0f} ms)", flush=True)
        for name in names:  # leave nothing behind on a shared server
            try: optuna.delete_study(study_name=name, storage=st.storage(name))
            except Exception: pass
        if st is not backends[0][1]: st.close()
    ws.close()


if __name__ == "__main__":
    main()
