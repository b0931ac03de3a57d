"""Per-step overhead of the mlops-workbench runner against plain papermill, and the speed-up of parallel steps.

Run: .venv/bin/python bench/pipeline_overhead.py [--steps 6] [--sleep 2]
Both sides run in this one process on the same notebooks; figures are wall-clock seconds on this machine,
so compare the ratios, not the absolute numbers (timings on shared VMs swing run to run).
The parallel comparison also prints the spread of per-step times (min, median, max, max/min) and each phase of a
step (worker start, kernel start, cells, kernel shutdown), so one stalled step cannot hide behind a median.
The temporary folder it works in (/tmp/mlw-bench-*) is removed when it ends, also on failure.
"""
import argparse, json, os, shutil, statistics, sys, tempfile, time
from pathlib import Path

import papermill as pm

from mlops_workbench.core.workspace import Workspace
from mlops_workbench.pipelines.runner import PipelineSpec, run_pipeline, make_notebook


def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t


def spread(xs):
    "min, median, max and max/min of per-step seconds: a stall in one step shows in max and the ratio, never hides in a median."
    return f"min {min(xs):.2f}s  median {statistics.median(xs):.2f}s  max {max(xs):.2f}s  max/min {max(xs) / min(xs):.2f}"


def phases(run):
    "Each step's phase timings (worker start, kernel start, cells, kernel shutdown) from the result the worker wrote."
    return [json.loads((Path(run.folder) / f".{s.name}.result.json").read_text()).get("phases", {}) for s in run.steps]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6, help="notebooks per sequential comparison")
    ap.add_argument("--sleep", type=float, default=2.0, help="seconds each step of the parallel comparison sleeps")
    ap.add_argument("--parallel", type=int, default=4, help="independent steps in the parallel comparison")
    ap.add_argument("--repeat", type=int, default=5, help="rounds of the parallel comparison")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mlw-bench-"))
    ws = None
    try:
        ws = Workspace.init(tmp / "ws")
        nb = make_notebook(tmp / "work.ipynb", "n = 200_000\nseconds = 0.0", "import time", "total = sum(i * i for i in range(n))", "time.sleep(seconds)")

        # warm both paths (imports, forkserver, kernel spec lookup) so neither pays a one-off cost in the figures
        pm.execute_notebook(str(nb), str(tmp / "warm.ipynb"), parameters={}, progress_bar=False, kernel_name="python3")
        run_pipeline(ws, PipelineSpec.from_dict({"name": "warm", "steps": {"w": {"notebook": str(nb)}}}), progress=False)

        # 1. per-step overhead, steps one at a time
        base = [timed(lambda i=i: pm.execute_notebook(str(nb), str(tmp / f"plain{i}.ipynb"), parameters={"n": 200_000}, progress_bar=False,
                                                       kernel_name="python3")) for i in range(a.steps)]
        steps = {f"s{i}": {"notebook": str(nb), "parameters": {"n": 200_000}} for i in range(a.steps)}
        run = run_pipeline(ws, PipelineSpec.from_dict({"name": "seq", "steps": steps}), max_parallel=1, progress=False)
        assert run.status == "succeeded", run.error
        ours = [s.duration_s for s in run.steps]
        ours_total = run.duration_s
        print(f"sequential, {a.steps} steps (papermill.execute_notebook vs mlops-workbench runner, max_parallel=1)")
        print(f"  papermill per notebook   median {statistics.median(base):.3f}s   total {sum(base):.2f}s")
        print(f"  runner per step          median {statistics.median(ours):.3f}s   run total {ours_total:.2f}s")
        print(f"  overhead per step        {statistics.median(ours) - statistics.median(base):+.3f}s (medians)   "
              f"ratio runner/papermill {statistics.median(ours) / statistics.median(base):.2f}x (medians), {ours_total / sum(base):.2f}x (totals)")

        # 2. independent steps in parallel against one at a time, alternating, median of --repeat rounds
        steps = {f"p{i}": {"notebook": str(nb), "parameters": {"n": 1000, "seconds": a.sleep}} for i in range(a.parallel)}
        serial, par, par_steps, par_phases = [], [], [], []
        for _ in range(a.repeat):
            for limit, out in ((1, serial), (a.parallel, par)):
                r = run_pipeline(ws, PipelineSpec.from_dict({"name": f"limit{limit}", "steps": steps}), max_parallel=limit, progress=False)
                assert r.status == "succeeded", r.error
                out.append(r.duration_s)
                if limit > 1: par_steps += [s.duration_s for s in r.steps]; par_phases += phases(r)
        s_med, p_med = statistics.median(serial), statistics.median(par)
        print(f"parallel, {a.parallel} independent steps sleeping {a.sleep:g}s each ({os.cpu_count()} CPU cores), median of {a.repeat} rounds")
        print(f"  max_parallel=1           {s_med:.2f}s   (rounds: {', '.join(f'{x:.1f}' for x in serial)})")
        print(f"  max_parallel={a.parallel}           {p_med:.2f}s   (rounds: {', '.join(f'{x:.1f}' for x in par)})   speed-up {s_med / p_med:.2f}x (ideal {a.parallel}x)")
        print(f"  per step at max_parallel={a.parallel} ({len(par_steps)} steps)   {spread(par_steps)}")
        for k in ("worker_start_s", "kernel_start_s", "cells_s", "shutdown_s"):
            xs = [p[k] for p in par_phases if k in p]
            if xs: print(f"    {k[:-2].replace('_', ' '):<14} min {min(xs):.2f}s  median {statistics.median(xs):.2f}s  max {max(xs):.2f}s")
    finally:
        if ws is not None: ws.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
