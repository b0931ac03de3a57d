"""Scaling: the search and the training on 1, 2, ... N local Dask workers against threads in one process.

Run: .venv/bin/python bench/scale.py [--rows 60_000] [--features 30] [--trials 16] [--rounds 80] [--max-workers N]

The synthetic problem of bench/experiments.py (--rows x --features, a nonlinear signal, the latest 20% validating).
For each N from 1 to --max-workers (default: this machine's cores), in this one process, side by side:

  search   --trials trials with a seeded random sampler (every side trains the same models), LightGBM on one thread
           per trial: N trials at once in threads of this process (`n_jobs=N`), then on a Dask LocalCluster of N
           single-threaded worker processes (`dask-local://?n_workers=N`). The data is scattered to the workers once.
  train    the final fit with the same parameters: LightGBM on N threads in this process, then `lightgbm.dask` on the
           N workers (data partitioned by rows, one LightGBM collective across the workers).

It prints wall times, the speed-up of each side against its N = 1 (threads: one thread), and Dask against threads at
the same N (the issue's aim on a 16-core machine: parallel trials >= 10x at 16, Dask within 1.5x of threads). A
cluster's start-up is timed apart; MLflow's first run and a first short search are paid before any clock. Every trial tracks to the workspace's MLflow store as in production; the
tracking and the study's bookkeeping run in this process, so they bound the search's speed-up when trials are short.
Timings on shared VMs swing run to run: read the ratios, measured side by side.
"""
import argparse, os, shutil, tempfile, time
from pathlib import Path

from experiments import make_data, ours, space  # the same data and the same search set-up as bench/experiments.py


def fit_time(ws, df, a, params: dict, compute=None) -> float:
    "Wall time of `train()` with `params` on `compute` (default: this process)."
    from mlops_workbench.experiments.definition import Experiment, TimeSplit
    from mlops_workbench.training.fit import train
    exp = Experiment(name="scale_fit", target="label", split=TimeSplit("t", 0.2), num_boost_round=a.rounds, early_stopping_rounds=None,
                     search_space=space(), params={"force_row_wise": True, **params})
    t0 = time.perf_counter()
    train(ws, exp, {"learning_rate": 0.1, "num_leaves": 63}, data=df, compute=compute)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=80)
    ap.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    a.threads = 1  # what bench/experiments.ours reads for its fixed parameters
    from mlops_workbench.core.backends import registry
    from mlops_workbench.core.workspace import Workspace
    tmp = Path(tempfile.mkdtemp(prefix="mlw-scale-"))
    try:
        ws = Workspace.init(tmp / "ws", env={})
        df = make_data(a.rows, a.features, a.seed)
        print(f"scale: {a.rows:,} rows x {a.features} features, {a.trials} random-sampled trials of at most {a.rounds} rounds; "
              f"this machine has {os.cpu_count()} cores", flush=True)
        fit_time(ws, df, a, {"num_threads": 1})  # MLflow's first run and LightGBM's first load, off the clock
        common = dict(trials=a.trials, sampler={"kind": "random"}, early_stopping_rounds=None)
        ours(ws, df, "scale_warmup", a, **{**common, "trials": 2}, params={"force_row_wise": True, "num_threads": 1})  # a search's first-time costs, off the clock
        rows, base_s, base_t = [], None, None
        for n in range(1, a.max_workers + 1):
            t_thr, *_, r_thr = ours(ws, df, f"scale_threads_{n}", a, **common, params={"force_row_wise": True, "num_threads": 1}, n_jobs=n)
            t0 = time.perf_counter()
            cluster = registry("compute").build(f"dask-local://?n_workers={n}&threads_per_worker=1", ws); cluster.slots()
            t_start = time.perf_counter() - t0
            try:
                t_dask, *_, r_dask = ours(ws, df, f"scale_dask_{n}", a, **common, params={"force_row_wise": True, "num_threads": 1}, compute=cluster)
                f_dask = fit_time(ws, df, a, {}, compute=cluster)
            finally:
                cluster.close()
            f_thr = fit_time(ws, df, a, {"num_threads": n})
            same = sorted(round(t.value, 9) for t in r_thr.study.trials if t.value is not None) == \
                sorted(round(t.value, 9) for t in r_dask.study.trials if t.value is not None)
            base_s, base_t = base_s or t_thr, base_t or f_thr
            rows.append((n, t_thr, t_dask, t_start, f_thr, f_dask, same))
        print("\n  N | search: threads   x     Dask     x   Dask/threads | train: threads   x     Dask     x   Dask/threads | cluster start | same trials")
        for n, t_thr, t_dask, t_start, f_thr, f_dask, same in rows:
            print(f"  {n:>2} | {t_thr:13.1f} s {base_s / t_thr:4.2f} {t_dask:7.1f} s {base_s / t_dask:4.2f}   {t_dask / t_thr:5.2f}      "
                  f"| {f_thr:12.1f} s {base_t / f_thr:4.2f} {f_dask:7.1f} s {base_t / f_dask:4.2f}   {f_dask / f_thr:5.2f}      "
                  f"| {t_start:9.1f} s   | {'yes' if same else 'NO'}", flush=True)
        print("\n  x: speed-up against N = 1 on threads; Dask/threads: above 1 is Dask slower at the same N.")
        ws.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
