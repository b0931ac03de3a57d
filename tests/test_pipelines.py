"""The pipeline runner under real papermill kernels: parallelism, failure, timeouts, kernel death, retries, kills and resume."""
import json, os, re, signal, subprocess, sys, time
from pathlib import Path

import psutil
import pytest

from mlops_workbench.core.errors import InvalidInput, Conflict
from mlops_workbench.pipelines.runner import PipelineSpec, run_pipeline, list_runs, get_run, make_notebook

pytestmark = pytest.mark.timeout(300)
RECORD = "from mlops_workbench.pipelines.runner import record_output"
MLW = str(Path(sys.executable).parent / "mlw")


def spec(name, steps, **extra):
    return PipelineSpec.from_dict({"name": name, "steps": steps, **extra})


def overlaps(a, b):
    return a.started_at < b.ended_at and b.started_at < a.ended_at


@pytest.fixture
def nbs(tmp_path):
    "A folder of small step notebooks."
    d = tmp_path / "nbs"
    make_notebook(d / "nap.ipynb", "seconds = 1.0\nlabel = ''", "import time, os", "time.sleep(seconds)", f"{RECORD}\nrecord_output('pid', os.getpid())")
    make_notebook(d / "boom.ipynb", "d = 0", "x = 1", "x / d")
    make_notebook(d / "die.ipynb", "", "import os, signal", "os.kill(os.getpid(), signal.SIGKILL)", "print('unreachable')")
    make_notebook(d / "flaky.ipynb", "counter = ''", "from pathlib import Path\np = Path(counter)\nn = int(p.read_text()) if p.exists() else 0\np.write_text(str(n + 1))",
                  "assert n >= 1, f'attempt {n + 1} fails on purpose'")
    make_notebook(d / "wait_for.ipynb", "marker = ''", "import time, os\nfrom pathlib import Path", "Path(marker + '.pid').write_text(str(os.getpid()))",
                  "while not Path(marker).exists(): time.sleep(0.2)")
    return d


def test_independent_steps_run_in_parallel_and_limit_is_kept(ws, nbs):
    steps = {n: {"notebook": str(nbs / "nap.ipynb"), "parameters": {"seconds": 2.0}} for n in ("a", "b", "c")}
    run = run_pipeline(ws, spec("par", steps), max_parallel=2, progress=False)
    assert run.status == "succeeded"
    a, b, c = (run.step(n) for n in "abc")
    assert overlaps(a, b), "two independent steps run at the same time"
    assert not (overlaps(a, c) and overlaps(b, c)), "never three at once with max_parallel=2"
    serial = run_pipeline(ws, spec("ser", steps), max_parallel=1, progress=False)
    s = [serial.step(n) for n in "abc"]
    assert not any(overlaps(x, y) for i, x in enumerate(s) for y in s[i + 1:])


def _phases(run, step):
    "The phase timings the worker logs as its last line: worker start, kernel start, cells, shutdown (seconds)."
    line = [l for l in (Path(run.folder) / f"{step}.log").read_text().splitlines() if l.startswith("mlw phases: ")][-1]
    return {k: float(v) for k, v in (part.rsplit(" ", 1) for part in line[len("mlw phases: "):].split(", "))}


# Issue 19: now and then one of four parallel 2 s steps took ~6.2 s instead of ~3.5 s. The kernel (ipykernel 7) can
# hang on its way out (its control thread still flushing to an IOPub thread the main thread already closed) and
# jupyter_client waited half of shutdown_wait_time (5 s) before SIGTERM. Steps side by side in one round share the
# machine, so their durations differ only by kernel start under load: up to ~1.3x on 2 busy cores in 60 measured
# steps. A stall adds >= 2 s to a ~3.5 s step, >= 1.6x. 1.5x lies between. The shutdown itself is bounded against
# the 2 s of cells: a healthy kernel is gone in ~0.3 s, a stuck one is terminated at 0.5 s (<= 0.35x), the old
# stall took 2.5-3 s (>= 1.25x); 0.5x lies between.
SPREAD_BOUND, SHUTDOWN_BOUND = 1.5, 0.5


def test_parallel_steps_take_alike_no_kernel_shutdown_stall(ws, nbs):
    steps = {f"p{i}": {"notebook": str(nbs / "nap.ipynb"), "parameters": {"seconds": 2.0}} for i in range(4)}
    run_pipeline(ws, spec("warm", {"w": steps["p0"]}), progress=False)  # the forkserver starts once per process: not a step's cost
    worst = []
    for r in range(5):
        run = run_pipeline(ws, spec(f"round{r}", steps), max_parallel=4, progress=False)
        assert run.status == "succeeded", run.error
        d = {s.name: s.duration_s for s in run.steps}
        worst.append(max(d.values()) / min(d.values()))
        for n in d:
            ph = _phases(run, n)
            assert ph["shutdown_s"] / ph["cells_s"] <= SHUTDOWN_BOUND, f"round {r} step {n}: kernel shutdown took {ph} (log: {run.folder}/{n}.log)"
        assert worst[-1] <= SPREAD_BOUND, f"round {r}: slowest step {max(d.values()) / min(d.values()):.2f}x the fastest: {d}"


def test_failure_names_cell_keeps_notebook_and_skips_dependants(ws, nbs):
    run = run_pipeline(ws, spec("fail", {"boom": {"notebook": str(nbs / "boom.ipynb")},
                                          "after": {"notebook": str(nbs / "nap.ipynb"), "depends_on": ["boom"]},
                                          "free": {"notebook": str(nbs / "nap.ipynb"), "parameters": {"seconds": 0.1}}}), progress=False)
    assert run.status == "failed"
    boom = run.step("boom")
    assert (boom.status, boom.error["type"], boom.error["cell_index"]) == ("failed", "ZeroDivisionError", 2)
    assert "x / d" in boom.error["cell_source"]
    assert Path(boom.notebook).exists() and "ZeroDivisionError" in Path(boom.notebook).read_text()
    assert run.step("after").status == "skipped" and "boom" in run.step("after").error["message"]
    assert run.step("free").status == "succeeded", "an independent step still runs"
    assert run.error["step"] == "boom"


def test_timeout_kills_the_kernel_and_other_steps_finish(ws, nbs):
    run = run_pipeline(ws, spec("slow", {"hang": {"notebook": str(nbs / "wait_for.ipynb"), "parameters": {"marker": str(nbs / "never")}, "timeout": 4},
                                          "quick": {"notebook": str(nbs / "nap.ipynb"), "parameters": {"seconds": 0.1}}}), progress=False)
    hang = run.step("hang")
    assert (run.status, hang.status, hang.error["type"]) == ("failed", "timed_out", "StepTimeout")
    assert "while not Path(marker).exists()" in hang.error["cell_source"]
    kernel_pid = int((nbs / "never.pid").read_text())
    assert not psutil.pid_exists(kernel_pid) or psutil.Process(kernel_pid).status() == psutil.STATUS_ZOMBIE
    assert run.step("quick").status == "succeeded"


def test_kernel_death_fails_the_step_instead_of_hanging(ws, nbs):
    run = run_pipeline(ws, spec("die", {"die": {"notebook": str(nbs / "die.ipynb"), "timeout": 120}}), progress=False)
    die = run.step("die")
    assert (die.status, die.error["type"]) == ("failed", "KernelDied")
    assert die.duration_s < 120, "did not wait for the timeout"


def test_retries_rerun_a_failed_step(ws, nbs, tmp_path):
    steps = {"flaky": {"notebook": str(nbs / "flaky.ipynb"), "parameters": {"counter": str(tmp_path / "n")}, "retries": 1}}
    run = run_pipeline(ws, spec("retry", steps), progress=False)
    assert (run.status, run.step("flaky").attempts) == ("succeeded", 2)
    (tmp_path / "n").unlink()
    steps["flaky"]["retries"] = 0
    assert run_pipeline(ws, spec("retry", steps), progress=False).step("flaky").status == "failed"


def test_outputs_flow_and_a_missing_output_is_a_clear_step_error(ws, nbs):
    run = run_pipeline(ws, spec("flow", {"a": {"notebook": str(nbs / "nap.ipynb"), "parameters": {"seconds": 0.0}},
                                          "b": {"notebook": str(nbs / "nap.ipynb"), "depends_on": ["a"], "parameters": {"label": "${steps.a.outputs.nope}"}}}), progress=False)
    assert run.step("a").outputs["pid"] > 0
    b = run.step("b")
    assert b.status == "failed" and "recorded only: pid" in b.error["message"]


@pytest.mark.parametrize("steps,params,message", [
    ({"a": {"notebook": "nap.ipynb", "depends_on": ["zzz"]}}, None, "depends on unknown step 'zzz'"),
    ({"a": {"notebook": "nap.ipynb", "depends_on": ["b"]}, "b": {"notebook": "nap.ipynb", "depends_on": ["a"]}}, None, "cycle"),
    ({"a": {"notebook": "missing.ipynb"}}, None, "does not exist"),
    ({"a": {"notebook": "nap.ipynb", "parameters": {"secs": 1}}}, None, "parameter 'secs' is not declared in nap.ipynb"),
    ({"a": {"notebook": "nap.ipynb", "parameters": {"seconds": "soon"}}}, None, "'soon' is a str, but nap.ipynb declares a float"),
    ({"a": {"notebook": "nap.ipynb", "parameters": {"seconds": "${params.s}"}}}, {"s": "x"}, "pipeline parameter 's': 'x' is not a float"),
    ({"a": {"notebook": "nap.ipynb", "parameters": {"seconds": "${params.s}"}}}, {"t": 1}, "unknown pipeline parameter 't'"),
    ({"a": {"notebook": "nap.ipynb", "parameters": {"label": "${steps.b.outputs.x}"}}, "b": {"notebook": "nap.ipynb"}}, None, "not among its dependencies"),
])
def test_bad_specs_fail_before_anything_is_recorded(ws, nbs, steps, params, message):
    d = {"name": "bad", "parameters": {"s": 1.0}, "steps": {n: {**s, "notebook": str(nbs / s["notebook"])} for n, s in steps.items()}}
    with pytest.raises(InvalidInput, match=None) as e:
        run_pipeline(ws, PipelineSpec.from_dict(d), params, progress=False)
    assert message in str(e.value)
    assert list_runs(ws) == []


def _wait_running(ws, run_id_file, step, timeout=90):
    "Poll the metadata store until `step` of the subprocess's run is running; return the run id."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = list_runs(ws)
        if runs and runs[0].step(step).status == "running": return runs[0].id
        time.sleep(0.3)
    raise AssertionError(f"step {step!r} never started")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_killed_run_is_marked_and_resumes_from_first_unfinished_step(ws, nbs, tmp_path, how):
    marker = tmp_path / "go"
    (tmp_path / "p.yaml").write_text(json.dumps({"name": "long", "steps": {
        "first": {"notebook": str(nbs / "nap.ipynb"), "parameters": {"seconds": 0.0}},
        "wait": {"notebook": str(nbs / "wait_for.ipynb"), "depends_on": ["first"], "parameters": {"marker": str(marker)}},
        "last": {"notebook": str(nbs / "nap.ipynb"), "depends_on": ["wait"], "parameters": {"seconds": 0.0}}}}))
    env = {**os.environ, "MLW_HOME": str(ws.root)}
    runner = subprocess.Popen([MLW, "run", str(tmp_path / "p.yaml"), "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_id = _wait_running(ws, None, "wait")
    kernel_pid = None
    deadline = time.monotonic() + 60
    while kernel_pid is None and time.monotonic() < deadline:
        p = Path(str(marker) + ".pid")
        kernel_pid = int(p.read_text()) if p.exists() and p.read_text() else None
        time.sleep(0.2)
    runner.send_signal(getattr(signal, how))
    runner.wait(timeout=60)
    run = get_run(ws, run_id)
    assert run.status == "killed" and run.step("wait").status == "killed" and run.step("last").status == "pending"
    assert "--resume" in run.error["message"]
    # the orphaned step's kernel does not outlive its runner
    deadline = time.monotonic() + 30
    while psutil.pid_exists(kernel_pid) and psutil.Process(kernel_pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline: time.sleep(0.3)
    assert not psutil.pid_exists(kernel_pid) or psutil.Process(kernel_pid).status() == psutil.STATUS_ZOMBIE
    first_nb = Path(run.step("first").notebook)
    first_mtime = first_nb.stat().st_mtime
    marker.write_text("go")
    done = subprocess.run([MLW, "run", "--resume", run_id, "--quiet"], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    run = get_run(ws, run_id)
    assert run.status == "succeeded"
    assert (run.step("first").attempts, first_nb.stat().st_mtime) == (1, first_mtime), "finished steps are not rerun"
    assert [s.status for s in run.steps] == ["succeeded"] * 3
    with pytest.raises(Conflict, match="only killed or failed runs can be resumed"):
        run_pipeline(ws, resume=run_id, progress=False)


SCRIPT = """
from pathlib import Path
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.pipelines.runner import PipelineSpec, run_pipeline
marks = Path({marks!r}); marks.write_text(marks.read_text() + "x" if marks.exists() else "x")  # top level, no __main__ guard
run = run_pipeline(Workspace.open({ws!r}), PipelineSpec.from_dict({{"name": "script", "steps": {{"a": {{"notebook": {nb!r}, "parameters": {{"seconds": 0.0}}}}}}}}), progress=False)
print(run.status)
"""


@pytest.mark.parametrize("how", ["stdin", "unguarded file"])
def test_runs_from_scripts_without_a_main_guard(ws, nbs, tmp_path, how):
    "multiprocessing must neither fail on a stdin script nor re-run an unguarded script's top level in each worker."
    code = SCRIPT.format(marks=str(tmp_path / "marks"), ws=str(ws.root), nb=str(nbs / "nap.ipynb"))
    if how == "stdin": p = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    else:
        (tmp_path / "script.py").write_text(code)
        p = subprocess.run([sys.executable, str(tmp_path / "script.py")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.stdout.strip() == "succeeded", p.stderr[-2000:]
    assert (tmp_path / "marks").read_text() == "x", "the script's top level ran once"


def test_a_running_steps_progress_is_shown_live_and_recorded(ws, tmp_path):
    "`mlw run` in a plain log (stderr not a terminal): a line when a step starts and as its reported progress advances; the run record carries it."
    make_notebook(tmp_path / "slow.ipynb", "n = 5", "import time\nfrom mlops_workbench.core.progress import report_progress",
                  "for i in range(1, n + 1):\n    time.sleep(0.8)\n    report_progress(i, n, 'items', note=f'item {i}')")
    (tmp_path / "slow.yaml").write_text("name: slow\nparameters: {n: 5}\nsteps:\n  slow: {notebook: slow.ipynb}\n")
    env = {k: v for k, v in os.environ.items() if k != "MLW_HOME"}
    proc = subprocess.Popen([MLW, "run", "slow.yaml", "--workspace", str(ws.root)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, deadline = set(), time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        runs = list_runs(ws)
        if runs and (p := runs[0].steps[0].progress): seen.add((p["done"], p["total"], p["unit"]))
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert re.search(r"^ +started  slow$", err, re.M), err
    lines = re.findall(r"^ +running  slow  (\d)/5 items \(\d+%\), item (\d)$", err, re.M)
    assert len(lines) >= 2 and all(a == b for a, b in lines), err  # each line as the step said it, in order
    assert [int(a) for a, _ in lines] == sorted(int(a) for a, _ in lines)
    assert len(seen) >= 2 and all(t == 5 and u == "items" for _, t, u in seen), seen
    run = list_runs(ws)[0]
    assert run.status == "succeeded" and run.steps[0].progress["done"] == 5 and run.steps[0].progress["note"] == "item 5"


def test_ingest_step_reports_its_rows(ws, tmp_path):
    "The packaged ingest step on a file of the test's own (a ';'-free plain CSV, no id column): its last progress is the rows written."
    raw = tmp_path / "raw"; raw.mkdir()
    (raw / "sales.csv").write_text("store,day,units\n" + "".join(f"s{i % 3},2025-01-{1 + i % 28:02d},{i}\n" for i in range(250)))
    import mlops_workbench.pipelines as packaged
    nb = Path(packaged.__file__).parent / "ingest_data.ipynb"
    run = run_pipeline(ws, spec("ingest", {"ingest": {"notebook": str(nb), "parameters": {"raw_dir": str(raw), "tables": ["sales"], "text_tables": []}}}), progress=False)
    assert run.status == "succeeded", run.error
    p = run.step("ingest").progress
    assert (p["done"], p["total"], p["unit"], p["note"]) == (250, 250, "rows", "sales v0 written (overwrite)")
