"""The `mlw` console script as a user runs it: the installed `.venv/bin/mlw` in a subprocess, in a scratch folder,
with no MLW_HOME unless a test sets it.

The contract for user errors: exactly one line on stderr starting `mlw: error:`, no traceback, exit 2 (1 when a
pipeline step failed). Pipeline runs start real kernels, so the module shares one workspace and one successful run.
"""
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlops_workbench.core.metadata import MIGRATIONS

MLW = str(Path(sys.executable).parent / "mlw")
ENV = {k: v for k, v in os.environ.items() if k != "MLW_HOME"}
RUN_LINE = re.compile(r"^run (\S+): (\w+) in [\d.]+s; executed notebooks in (\S+)$", re.M)


def mlw(*args, cwd, env=None, prefix=(), timeout=600):
    "Run `mlw ARGS` in `cwd` (as the user `prefix` selects) and return the completed process."
    return subprocess.run([*prefix, MLW, *map(str, args)], cwd=cwd, env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def user_error(p, *contains, code=2) -> str:
    "Assert `p` failed as a user error (one `mlw: error:` line, no traceback, exit `code`) naming `contains`; return the line."
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlw: error: "), p.stderr
    assert p.returncode == code, (p.returncode, p.stderr)
    for c in contains: assert str(c) in lines[0], (c, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    "A workspace made by `mlw init`, pipeline specs next to it, and one successful `mlw run` with `-p n 21`."
    from mlops_workbench.pipelines.runner import make_notebook
    d = tmp_path_factory.mktemp("cli")
    make_notebook(d/"count.ipynb", "n: int = 2",
                  "from mlops_workbench.pipelines.runner import record_output",
                  "record_output('double', n * 2); record_output('n_type', type(n).__name__)")
    (d/"count.yaml").write_text("name: count\nparameters: {n: 2}\nsteps:\n"
                                "  count:\n    notebook: count.ipynb\n    parameters: {n: '${params.n}'}\n")
    make_notebook(d/"divide.ipynb", "n: int = 1", "x = n + 1", "x / 0")
    (d/"divide.yaml").write_text("name: divide\nparameters: {n: 1}\nsteps:\n"
                                 "  divide:\n    notebook: divide.ipynb\n    parameters: {n: '${params.n}'}\n")
    make_notebook(d/"check.ipynb", "amount: int = -3", "if amount < 0: raise ValueError(f'amount must be positive\\ngot {amount}')")
    (d/"check.yaml").write_text("name: check\nsteps:\n  check:\n    notebook: check.ipynb\n")
    init = mlw("init", "ws", cwd=d)  # relative to the current folder, as a user types it
    assert init.returncode == 0, init.stderr
    run = mlw("run", "count.yaml", "-p", "n", "21", "--quiet", "--workspace", "ws", cwd=d)
    m = RUN_LINE.search(run.stdout)
    return SimpleNamespace(dir=d, ws=d/"ws", init=init, run=run, run_id=m and m[1], run_match=m)


VERB_OPTIONS = {
    "init": ["--profile", "--metadata", "--storage", "--storage_endpoint", "--storage_region", "--storage_keys", "--online", "--tracking",
             "--compute", "--studies", "path"],
    "run": ["--param", "--resume", "--parallel", "--quiet", "--workspace", "name"],
    "runs": ["{list,show}", "run_id", "--limit", "--pipeline", "--workspace"],
    "status": ["--workspace"],
    "doctor": ["--workspace"],
    "ingest": ["source", "name", "--mode", "--keys", "--kind", "--delimiter", "--encoding", "--null_values", "--all_strings", "--parse_dates",
               "--table", "--query", "--cast", "--lenient", "--normalize", "--incremental", "--watermark", "--schema_policy", "--description", "--workspace"],
    "validate": ["name", "rules", "--version", "--output", "--quarantine", "--workspace"],
    "datasets": ["{list,show,history,head}", "args", "--rows", "--csv", "--workspace"],
    "features": ["{list,show,apply}", "names", "--build", "--workspace"],
    "models": ["{list,show,promote,archive}", "args", "--reason", "--who", "--workspace"],
    "deploy": ["target", "--env", "--strategy", "--endpoint", "--reason", "--limit", "--who", "--workspace"],
    "monitor": ["{status,define,run,history,approve,decline}", "target", "--since", "--until", "--retrain", "--retrainings", "--model", "--reason", "--limit", "--who", "--workspace"],
    "serve": ["models", "--port", "--host", "--workers", "--oidc_issuer", "--oidc_audience", "--oidc_roles_claim", "--max_body", "--max_batch",
              "--reload_s", "--log_flush_s", "--tracing", "--log_level", "--workspace"],
    "predict": ["model", "dataset", "--version", "--output", "--chunk_rows", "--quiet", "--workspace"],
    "keys": ["{create,list,revoke,rotate}", "--workspace"],
    "audit": ["{list,verify}", "--workspace"],
    "secrets": ["{set,list,delete,rotate}", "--workspace"],
    "dashboards": ["--port", "--address", "--show", "--oauth", "--oauth_client_id", "--oauth_secret", "--workspace"],
    "lab": ["--port", "--workspace"],
    "mlflow-ui": ["--port", "--workspace"],
    "demo": ["--path", "--n_applications", "--quiet"],
}


def test_help_lists_every_verb(tmp_path):
    p = mlw("--help", cwd=tmp_path)
    assert (p.returncode, p.stderr) == (0, "")
    assert "usage: mlw VERB" in p.stdout
    for verb in VERB_OPTIONS: assert re.search(rf"^  {verb} +\S", p.stdout, re.M), verb


@pytest.mark.parametrize("verb", VERB_OPTIONS)
def test_verb_help_describes_its_options(verb, tmp_path):
    p = mlw(verb, "--help", cwd=tmp_path)
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout.startswith(f"usage: mlw {verb} ")
    for opt in VERB_OPTIONS[verb]: assert opt in p.stdout, (verb, opt)


def test_init_then_status(cli, tmp_path):
    ws = cli.ws
    assert cli.init.stdout.splitlines()[:2] == [f"created workspace {ws}", f"  metadata: sqlite:///{ws}/metadata.db"]
    assert (ws/"mlw.toml").exists() and (ws/"metadata.db").exists()
    p = mlw("status", "--workspace", ws, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[:2] == [f"workspace  {ws}  (format 1, metadata schema v{MIGRATIONS[-1].version})", f"  metadata   sqlite:///{ws}/metadata.db"]
    assert re.search(rf"^latest     {cli.run_id}  count  succeeded$", p.stdout, re.M), p.stdout
    assert mlw("status", cwd=tmp_path, env={"MLW_HOME": str(ws)}).stdout == p.stdout  # MLW_HOME names the same workspace


def test_run_coerces_parameter_and_records_it(cli):
    "`-p n 21` reaches the notebook as the int the pipeline declares, and the run records an int."
    assert cli.run.returncode == 0, cli.run.stderr
    assert cli.run.stderr == ""  # --quiet
    assert cli.run_match and cli.run_match[2] == "succeeded", cli.run.stdout
    assert cli.run_match[3] == str(cli.ws/"runs"/cli.run_id) and (cli.ws/"runs"/cli.run_id/"count.ipynb").exists()
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.pipelines.runner import get_run
    ws = Workspace.open(cli.ws)
    try: run = get_run(ws, cli.run_id)
    finally: ws.close()
    assert run.parameters == {"n": 21} and type(run.parameters["n"]) is int
    assert run.step("count").outputs == {"double": 42, "n_type": "int"}


def test_runs_lists_and_shows_the_run(cli):
    p = mlw("runs", "--workspace", cli.ws, cwd=cli.dir)
    assert p.returncode == 0, p.stderr
    assert re.search(rf"^{cli.run_id}  count +succeeded +\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d +[\d.]+s$", p.stdout, re.M), p.stdout
    p = mlw("runs", "show", cli.run_id, "--workspace", cli.ws, cwd=cli.dir)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert out[0].startswith(f"run {cli.run_id}  pipeline count  succeeded  started ")
    assert out[1:3] == ["parameters {'n': 21}", f"notebooks  {cli.ws/'runs'/cli.run_id}"]
    assert re.match(r"^  count +succeeded +attempts 1 +[\d.]+s$", out[3]), out[3]
    assert out[4:6] == ["      double  42", "      n_type  int"], out  # the step's outputs, a line each, names aligned


def test_failed_step_names_step_cell_and_notebook(cli):
    p = mlw("run", "divide.yaml", "--quiet", "--workspace", cli.ws, cwd=cli.dir)
    m = RUN_LINE.search(p.stdout)
    assert m and m[2] == "failed", p.stdout
    nb = cli.ws/"runs"/m[1]/"divide.ipynb"
    user_error(p, f"run {m[1]} of pipeline 'divide' failed", "step 'divide' failed", "ZeroDivisionError in cell 2",
               f"executed notebook: {nb}", code=1)
    assert nb.exists()


def test_failed_step_with_multi_line_message_is_one_line(cli):
    p = mlw("run", "check.yaml", "--quiet", "--workspace", cli.ws, cwd=cli.dir)
    user_error(p, "step 'check' failed: ValueError in cell 1: amount must be positive got -3; executed notebook: ", code=1)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path.parent


# name -> (arguments, given the shared fixture and a scratch folder `t`; what the one error line must contain,
# with {t} and {run_id} filled in)
USER_ERRORS = {
    "unknown verb": (lambda c, t: ["frobnicate"], ["unknown verb 'frobnicate'; verbs: init, run, runs, status, doctor, ingest, validate, datasets, features, models, deploy, monitor, ci, serve, predict, keys, audit, secrets, dashboards, lab, mlflow-ui, demo"]),
    "unknown pipeline": (lambda c, t: ["run", "nosuch", "--workspace", c.ws], ["pipeline 'nosuch' not found; known pipelines: batch_predict, demo, deploy, features, monitor, train"]),
    "undeclared parameter": (lambda c, t: ["run", c.dir/"count.yaml", "-p", "m", "1", "--workspace", c.ws],
                             ["pipeline 'count' cannot run", "unknown pipeline parameter 'm'; declared: n"]),
    "parameter of the wrong type": (lambda c, t: ["run", c.dir/"count.yaml", "-p", "n", "ten", "--workspace", c.ws],
                                    ["pipeline 'count' cannot run", "pipeline parameter 'n': 'ten' is not a"]),
    "unknown run id": (lambda c, t: ["runs", "show", "nope", "--workspace", c.ws], ["run 'nope' not found; list runs with `mlw runs`"]),
    "resume of a succeeded run": (lambda c, t: ["run", "--resume", c.run_id, "--workspace", c.ws],
                                  ["run '{run_id}' is succeeded; only killed or failed runs can be resumed"]),
    "no workspace here and no MLW_HOME": (lambda c, t: ["status"],
                                          ["workspace '{t}/workspace' does not exist; create it with `mlw init {t}/workspace`"]),
    "missing workspace": (lambda c, t: ["status", "--workspace", t/"absent"], ["workspace '{t}/absent' does not exist"]),
    "folder that is not a workspace": (lambda c, t: ["runs", "--workspace", _write(t/"plain"/"notes.txt", "hi")],
                                       ["folder '{t}/plain' is not a workspace (no mlw.toml); create one with `mlw init"]),
    "corrupt settings": (lambda c, t: ["status", "--workspace", _write(t/"ws"/"mlw.toml", "format_version = [\n")],
                         ["workspace settings '{t}/ws/mlw.toml' are corrupt (", "fix the file or re-create the workspace"]),
    "unknown backend scheme": (lambda c, t: ["status", "--workspace", _write(t/"ws"/"mlw.toml",
                                             'format_version = 1\n[backends]\nmetadata = "mongodb://x"\n')],
                               ["metadata backend 'mongodb://x': scheme 'mongodb' is not registered; known schemes: postgresql, sqlite"]),
    "ingest of a missing file": (lambda c, t: ["ingest", t/"sales.csv", "sales", "--workspace", c.ws],
                                 ["source '{t}/sales.csv' does not exist; check the path"]),
    "ingest without a name": (lambda c, t: ["ingest", "sales.csv", "--workspace", c.ws], ["`mlw ingest` needs a SOURCE and a dataset NAME"]),
    "ingest in an unknown mode": (lambda c, t: ["ingest", _write(t/"s.csv", "a;b\n1;2\n")/"s.csv", "s", "--delimiter", ";", "--mode", "upsert", "--workspace", c.ws],
                                  ["mode 'upsert' is unknown; modes: append, overwrite, merge"]),
    "merge without keys": (lambda c, t: ["ingest", _write(t/"s.csv", "a;b\n1;2\n")/"s.csv", "s", "--delimiter", ";", "--mode", "merge", "--workspace", c.ws],
                           ["mode 'merge' needs keys="]),
    "CSV options on a parquet file": (lambda c, t: ["ingest", _write(t/"s.parquet", "PAR1")/"s.parquet", "s", "--delimiter", ";", "--workspace", c.ws],
                                      ["parquet source: option(s) ['delimiter'] are unknown; options: path"]),
    "a cast without a type": (lambda c, t: ["ingest", _write(t/"s.csv", "a;b\n1;2\n")/"s.csv", "s", "--cast", "b", "--workspace", c.ws],
                              ["--cast 'b': write COLUMN=DTYPE, e.g. --cast amount=Float64"]),
    "validation of a dataset that does not exist": (lambda c, t: ["validate", "nosuch", _write(t/"r.yaml", "name: r\nrules: []\n")/"r.yaml", "--workspace", c.ws],
                                                    ["dataset 'nosuch' not found; datasets: "]),
    "a rules file that does not exist": (lambda c, t: ["validate", "sales", t/"rules.yaml", "--workspace", c.ws],
                                         ["rule set file '{t}/rules.yaml' does not exist; check the path"]),
    "an unknown dataset": (lambda c, t: ["datasets", "show", "nosuch", "--workspace", c.ws], ["dataset 'nosuch' not found"]),
    "a version that is not a number": (lambda c, t: ["datasets", "head", "sales", "latest", "--workspace", c.ws],
                                       ["version 'latest' of dataset 'sales' is not a number; list them with `mlw datasets history sales`"]),
}


@pytest.mark.parametrize("case", USER_ERRORS)
def test_user_error_is_one_line(case, cli, tmp_path):
    args, contains = USER_ERRORS[case]
    p = mlw(*args(cli, tmp_path), cwd=tmp_path)
    user_error(p, *[c.format(t=tmp_path, run_id=cli.run_id) for c in contains])


def test_mlflow_ui_serves_the_workspace_store(cli, tmp_path):
    "`mlw mlflow-ui` starts MLflow's own server on the workspace's tracking database: its UI answers, and it reads that store."
    import signal, time, urllib.error, urllib.request
    from conftest import free_port
    from mlops_workbench.core.workspace import Workspace
    ws = Workspace.open(cli.ws)
    try: eid = ws.backend("tracking").experiment_id("seen_by_the_ui")  # an MLflow experiment in the workspace's own store
    finally: ws.close()
    port = free_port()
    proc = subprocess.Popen([MLW, "mlflow-ui", "--port", str(port), "--workspace", str(cli.ws)], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == f"MLflow UI for {cli.ws} at http://127.0.0.1:{port}/ (Ctrl-C to stop)"
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180  # a start-up wait (MLflow imports for seconds), not a timing assertion
        while True:
            assert proc.poll() is None, f"mlflow exited with {proc.returncode}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200: break
            except (urllib.error.URLError, ConnectionError, TimeoutError): pass
            assert time.monotonic() < deadline, "the MLflow UI did not answer within 180 s"
            time.sleep(0.5)
        with urllib.request.urlopen(f"{url}/", timeout=30) as r:
            assert r.status == 200 and b"<title>MLflow</title>" in r.read()
        with urllib.request.urlopen(f"{url}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=seen_by_the_ui", timeout=30) as r:
            e = json.loads(r.read())["experiment"]
        assert (e["experiment_id"], e["artifact_location"]) == (eid, (cli.ws/"mlartifacts"/"seen_by_the_ui").as_uri())
        # the port is taken now: a second UI on it is refused before anything starts
        user_error(mlw("mlflow-ui", "--port", port, "--workspace", cli.ws, cwd=tmp_path), f"port {port} on 127.0.0.1 is in use; pass --port")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # mlflow's server and its worker, by their process group
        try: proc.wait(30)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()
        proc.stdout.close()


def _without_write_permission(workspace: Path) -> list:
    """Take write permission on `workspace` away from the user the returned command prefix runs as.

    Root writes through any mode bits, so as root the CLI runs as root minus the capabilities that bypass file
    permissions (setpriv). Not `runuser -u nobody`: the venv's interpreter lives under /root (mode 0700), which
    nobody cannot enter.
    """
    workspace.chmod(0o555)
    if os.geteuid() != 0: return []
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def test_unwritable_workspace(tmp_path):
    ws = tmp_path/"ws"
    assert mlw("init", ws, cwd=tmp_path).returncode == 0
    prefix = _without_write_permission(ws)
    try:
        assert mlw("status", "--workspace", ws, cwd=tmp_path).returncode == 0  # the unrestricted user still can
        p = mlw("status", "--workspace", ws, cwd=tmp_path, prefix=prefix)
    finally: ws.chmod(0o755)
    user_error(p, f"workspace '{ws}' is not writable (Permission denied); fix its permissions or open another workspace")


def test_unreadable_settings(tmp_path):
    "Settings another user cannot read give the one-line error, and `mlw init` writes them readable (per umask)."
    ws = tmp_path/"ws"
    assert mlw("init", ws, cwd=tmp_path).returncode == 0
    settings = ws/"mlw.toml"
    mode = stat.S_IMODE(settings.stat().st_mode)
    prefix = _without_write_permission(ws)
    settings.chmod(0)
    try: p = mlw("status", "--workspace", ws, cwd=tmp_path, prefix=prefix)
    finally: ws.chmod(0o755); settings.chmod(0o644)
    user_error(p, f"'{settings}'")
    umask = os.umask(0); os.umask(umask)
    assert mode == 0o666 & ~umask, oct(mode)


def test_demo_runs_end_to_end_and_keeps_other_folders(tmp_path, fresh_venv):
    demo = tmp_path/"demo"
    p = mlw("demo", "--path", demo, "--n_applications", "1000", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    m = re.search(r"^executed notebooks: (\S+)$", p.stdout, re.M)
    assert m and Path(m[1]).parent == demo/"runs", p.stdout
    for step in ("generate", "profile", "features", "materialize", "summary"): assert (Path(m[1])/f"{step}.ipynb").exists(), step
    summary = re.search(r"^summary_path: (\S+)$", p.stdout, re.M)
    assert summary and Path(summary[1]).is_file() and Path(summary[1]).is_relative_to(demo), p.stdout
    assert (demo/".mlw-demo").exists()
    p = mlw("features", "--workspace", demo, cwd=tmp_path)  # the demo's feature view, built and materialized
    assert p.returncode == 0 and re.search(r"^customer_transactions +v1 +batch +\d+ features +ttl \S+ +STALE, newest event .* ago$", p.stdout, re.M), p.stdout  # the demo world ended in 2025: past its TTL
    p = mlw("features", "show", "customer_transactions", "--workspace", demo, cwd=tmp_path)
    assert "amount_sum_7d" in p.stdout and "read transactions v0 -> fv_customer_transactions v0" in p.stdout, p.stdout
    user_error(mlw("features", "apply", "nope.yaml", "--workspace", demo, cwd=tmp_path), "definitions file 'nope.yaml' does not exist")
    _demo_ci_and_its_artifacts(demo, tmp_path, fresh_venv)

    mine = _write(tmp_path/"mine"/"thesis.tex", "my work")
    p = mlw("demo", "--path", mine, "--n_applications", "1000", "--quiet", cwd=tmp_path)
    user_error(p, f"folder '{mine}' exists and is not a demo workspace; pass --path")
    assert (mine/"thesis.tex").read_text() == "my work" and sorted(mine.iterdir()) == [mine/"thesis.tex"]


def _demo_ci_and_its_artifacts(demo, tmp_path, fresh_venv):
    """The demo put its model through `mlw ci` before deploying it: a JUnit XML a JUnit parser reads (a suite per stage,
    nothing failed); `mlw ci` again on the demo workspace, from the command line; and the version's build artifacts
    served from a fresh virtualenv (the Dockerfile's own command on the bundle alone) as the version scores offline."""
    import shutil
    import httpx
    import numpy as np
    from junitparser import JUnitXml
    from conftest import free_port
    from test_cicd_artifacts import _offline, _scores, _serve, _stop
    from mlops_workbench.cicd.artifacts import get_artifacts
    from mlops_workbench.cicd.ci import list_ci_runs
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.security.keys import create_key
    ws = Workspace.open(demo)
    (run,) = list_ci_runs(ws)
    assert (run.project, run.outcome, run.who) == ("credit-default", "passed", "demo")
    suites = {s.name: s for s in JUnitXml.fromfile(str(run.junit_path))}
    assert set(suites) == {"data", "model", "integration"} and all(s.tests > 0 and s.failures == s.errors == 0 for s in suites.values()), suites
    config = Path(__import__("mlops_workbench").__file__).parent/"pipelines"/"definitions"/"credit_default_ci.yaml"
    p = mlw("ci", "--config", config, "--stages", "data,model", "--junit", tmp_path/"again.xml", "--workspace", demo, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert {s.name for s in JUnitXml.fromfile(str(tmp_path/"again.xml"))} == {"data", "model"}
    version = run.stage("model").detail["version"]  # the version the demo registered, pinned by its ci step
    art = get_artifacts(ws, f"credit_default/{version}")
    alone = tmp_path/"alone"; alone.mkdir()
    shutil.copy(art.bundle_tar, alone/"bundle.tar.gz")
    key = create_key(ws, "demo-client", ["predictor"], who="test").key
    port = free_port()
    proc = _serve(fresh_venv.python, alone/"bundle.tar.gz", port, key, alone, tmp_path/"bundle-server.log")
    try:
        rows, want = _offline(ws, art.run_id, n=50)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/models/credit_default/predict", json={"rows": rows}, headers={"X-API-Key": key}, timeout=60)
        assert r.status_code == 200 and r.json()["model"]["version"] == version, r.text
        np.testing.assert_allclose(_scores(r.json(), "binary"), want, rtol=0, atol=1e-9)
    finally: _stop(proc)
    ws.close()


# ---------------------------------------------------------------- the data verbs on a user's own file

SALES_HEADER = "store;day;product;units;revenue\n"
WEEK1 = ["Zürich;03.03.2025;Käse;12;54.5", "Genève;03.03.2025;Brot;;0.0", "Köln;04.03.2025;Käse;9;40.5", "Malmö;2025-03-04;Brot;4;18.0"]
WEEK2 = WEEK1[:1] + ["Genève;03.03.2025;Brot;7;10.5"] + WEEK1[2:] + ["Bern;10.03.2025;Brot;3;4.5"]
SALES_RULES = ("name: sales\nkey: [store, day, product]\nrules:\n"
               "  - {kind: not_null, column: units, policy: quarantine}\n"
               "  - {kind: range, column: revenue, min: 0.01, policy: quarantine}\n"
               "  - {kind: regex, column: day, pattern: '\\d\\d\\.\\d\\d\\.\\d{4}', policy: quarantine}\n")


def _latin1(path: Path, rows: list) -> Path:
    path.write_bytes((SALES_HEADER + "\n".join(rows) + "\n").encode("latin-1"))
    return path


def test_data_verbs_on_a_users_csv(tmp_path):
    "A shop's `;`-delimited latin-1 exports without an id column: ingested, merged, looked at, validated twice, then blocked."
    assert mlw("init", "ws", cwd=tmp_path).returncode == 0
    env = {"MLW_HOME": str(tmp_path/"ws")}
    w1, w2 = _latin1(tmp_path/"week1.csv", WEEK1), _latin1(tmp_path/"week2.csv", WEEK2)
    csv = ["--delimiter", ";", "--encoding", "latin-1"]
    merge = [*csv, "--mode", "merge", "--keys", "store,day,product"]
    p = mlw("ingest", w1.name, "sales", *merge, cwd=tmp_path, env=env)
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    assert p.stdout.splitlines()[0] == "sales v0 (create, merge on store,day,product): 4 rows inserted, 0 updated; it holds 4 rows, " + p.stdout.split("rows, ")[1].splitlines()[0]
    assert "  columns  store String, day String, product String, units Int64, revenue Float64" in p.stdout.splitlines()
    p = mlw("ingest", w2, "sales", *merge, cwd=tmp_path, env=env)
    assert p.stdout.startswith("sales v1 (merge on store,day,product): 1 rows inserted, 4 updated; it holds 5 rows"), p.stdout + p.stderr
    # the same delivery without its encoding, and one with a row that has no key: refused, nothing written
    user_error(mlw("ingest", w2, "sales", "--delimiter", ";", "--mode", "merge", "--keys", "store,day,product", cwd=tmp_path, env=env),
               "week2.csv' is not UTF-8: byte ", "pass the file's encoding (e.g. encoding='latin-1'")
    bad = _latin1(tmp_path/"week3.csv", WEEK2 + [";11.03.2025;Käse;1;2.0"])
    user_error(mlw("ingest", bad, "sales", *merge, cwd=tmp_path, env=env), "merge key 'store' is null in 1 row(s) (first: data row 6)")

    p = mlw("datasets", cwd=tmp_path, env=env)
    assert re.match(r"^sales +raw +v1 +5 rows  \d{4}-\d\d-\d\d \d\d:\d\d$", p.stdout.strip()), p.stdout
    p = mlw("datasets", "history", "sales", cwd=tmp_path, env=env)
    lines = p.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("v1    merge on store,day,product +1 ~4") and "{'delimiter': ';', 'encoding': 'latin-1'}" in lines[1], p.stdout
    p = mlw("datasets", "show", "sales", "0", cwd=tmp_path, env=env)
    assert p.stdout.startswith("dataset sales v0 (merge on store,day,product, parent -)") and f"csv {w1}" in p.stdout, p.stdout
    p = mlw("datasets", "head", "sales", "0", "--csv", cwd=tmp_path, env=env)  # time travel: the first delivery as it came
    assert sorted(p.stdout.splitlines()[1:]) == sorted(r.replace(";", ",") for r in WEEK1), p.stdout
    assert "Bern" in mlw("datasets", "head", "sales", "--rows", "10", cwd=tmp_path, env=env).stdout

    (tmp_path/"sales_rules.yaml").write_text(SALES_RULES)
    p = mlw("validate", "sales", "sales_rules.yaml", cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert re.match(r"^sales v1: quarantined by rule set 'sales' \(\w{12}\): 5 rows, 1 broke a rule, 1 quarantined$", out[0]), out[0]
    assert re.match(r"^  FAIL day_regex +quarantine +1  1 of 5 rows", out[3]), out[3]
    assert "  quarantined rows -> sales_quarantine v0 (_source_version = 1)" in out
    p = mlw("validate", "sales", "sales_rules.yaml", cwd=tmp_path, env=env)
    assert p.stdout.splitlines()[0].endswith("1 quarantined (replaces the earlier validation of this version)"), p.stdout
    p = mlw("datasets", "head", "sales_quarantine", "--csv", cwd=tmp_path, env=env)
    assert p.stdout.splitlines() == ["store,day,product,units,revenue,_failed_rules,_source_version", "Malmö,2025-03-04,Brot,4,18.0,day_regex,1"], p.stdout
    p = mlw("validate", "sales", "sales_rules.yaml", "--version", "0", cwd=tmp_path, env=env)
    assert "2 quarantined" in p.stdout.splitlines()[0]
    assert "validated  quarantined by 'sales'" in mlw("datasets", "show", "sales", "0", cwd=tmp_path, env=env).stdout
    # a rule that blocks: the report is printed and recorded, one error line, exit 1 (the data was read and refused)
    (tmp_path/"strict.yaml").write_text("name: strict\nrules:\n  - {kind: not_null, column: units}\n")
    p = mlw("validate", "sales", "strict.yaml", "--version", "0", cwd=tmp_path, env=env)
    user_error(p, "dataset 'sales' v0: rule set 'strict' blocked the batch (units_not_null: 1 of 4 rows (25.00%) are null); no rows were written onward", code=1)
    assert p.stdout.startswith("sales v0: blocked by rule set 'strict'"), p.stdout


def _closed_early(args: list, cwd, env, read_lines: int = 0):
    "Run `mlw ARGS` with stdout a real pipe whose reader takes `read_lines` lines (0: none) and closes it; return (exit status, stderr)."
    p = subprocess.Popen([MLW, *map(str, args)], cwd=cwd, env={**ENV, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(read_lines): p.stdout.readline()
    p.stdout.close()  # `head` exits: the next write finds no reader
    err = p.stderr.read().decode()
    p.stderr.close()
    return p.wait(timeout=300), err


def test_a_closed_pipe_ends_every_verb_quietly(tmp_path):
    "`mlw ... | head`: no BrokenPipeError traceback, nothing on stderr from us, the exit status of a program that SIGPIPE ended."
    assert mlw("init", "ws", cwd=tmp_path).returncode == 0
    env = {"MLW_HOME": str(tmp_path/"ws")}
    big = tmp_path/"big.csv"
    big.write_text("store;day;units;revenue\n" + "".join(f"Köln-{i};{i % 28 + 1:02d}.03.2025;{i};{i * 1.5}\n" for i in range(100_000)))  # ~3.5 MB as CSV
    assert mlw("ingest", big, "big", "--delimiter", ";", cwd=tmp_path, env=env).returncode == 0
    status, err = _closed_early(["datasets", "head", "big", "--rows", "100000", "--csv"], tmp_path, env, read_lines=1)
    assert (status, err) == (141, ""), err
    for args in (["--help"], ["ingest", "--help"], ["datasets"], ["datasets", "show", "big"], ["datasets", "history", "big"], ["datasets", "head", "big"],
                 ["status"], ["runs"], ["features"], ["models", "list"]):
        status, err = _closed_early(args, tmp_path, env)
        assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, (args, status, err)
        assert status == (0 if args[-1] == "--help" and len(args) > 1 else 141), (args, status)  # argparse ignores a failed write of a verb's help itself
