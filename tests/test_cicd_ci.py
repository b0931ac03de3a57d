"""`mlw ci` on a sample model project (tests/ci_project): its checks as stages, each fault its own test.

One module workspace holds two differently shaped worlds: the jobs world (`toy.jobs_world`: a regression target, no id
column, text site codes with nulls as the feature key, visit days as strings) whose model `job_duration` is the sample
project's candidate, and the demo credit world (binary, integer ids, real timestamps), which the data and model stages
are also run on. The passing run is the GitHub workflow `mlw ci init` writes, its `run:` lines executed in order by bash
on a copy of the project (the install step skipped by MLW_CI_LOCAL; nothing else is simulated), so `mlw ci` runs as
the CI system would call it, unit tests, notebooks through the pipeline runner, data rules, gates and behaviour, and a
staging gateway with the deployment checks. The faults each stop a run at their stage: a failing unit test, a
notebook that raises and one whose kernel dies, a blocking data rule, a failing gate, a missing or invalid config,
a gateway that will not start (exit 3), and a notification sink that is down (queued, retried, the outcome
unchanged). Webhooks are real HTTP servers on loopback."""
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import yaml

from toy import jobs_world
from mlops_workbench.alerts import deliver_pending, list_deliveries
from mlops_workbench.cicd.ci import EXIT_CODES, get_ci_run, init_ci, list_ci_runs, load_ci_config, run_ci
from mlops_workbench.core.errors import Conflict, InvalidInput, NotFound
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.experiments.definition import demo_experiment
from mlops_workbench.features.online import materialize
from mlops_workbench.registry.gates import default_gates
from mlops_workbench.registry.validation import validate_model
from mlops_workbench.registry.versions import register_model
from mlops_workbench.security.audit import read_audit
from mlops_workbench.training.fit import train
from webhook import Hook, dead_port

UTC = dt.timezone.utc
PROJECT = Path(__file__).resolve().parent / "ci_project"
BIN = Path(sys.executable).parent  # where `mlw` is installed
warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "The jobs world (the sample project's model, features fresh and materialized) and the demo credit world, in one workspace."
    ws = Workspace.init(tmp_path_factory.mktemp("ci") / "ws")
    jobs_world(ws, base=dt.datetime.now(UTC) - dt.timedelta(days=200))
    materialize(ws, "site_stats")
    exp = demo_experiment(ws, n_applications=1500)
    run = train(ws, exp, {"num_leaves": 7, "n_estimators": 20}, run_name="credit").run_id
    register_model(ws, run, "credit_default", validate_model(ws, run, default_gates("binary")), who="test")
    yield ws
    ws.close()


@pytest.fixture
def project(tmp_path):
    "A fresh copy of the sample project."
    return Path(shutil.copytree(PROJECT, tmp_path / "project"))


def _config(project: Path, **stages) -> Path:
    "Rewrite the project's config with only `stages` (stage -> settings, or True for the sample's)."
    d = yaml.safe_load((project / "mlw-ci.yaml").read_text())
    d["stages"] = {k: (d["stages"][k] if v is True else v) for k, v in stages.items()}
    (project / "mlw-ci.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    return project / "mlw-ci.yaml"


def _mlw(*args, ws, cwd, env=None):
    return subprocess.run([str(BIN / "mlw"), *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MLW_HOME": str(ws.root), **(env or {})})


def _junit(path):
    "The JUnit XML parsed by junitparser (what CI systems' readers accept): suite name -> [(case, result kind, message)]."
    from junitparser import JUnitXml
    xml = JUnitXml.fromfile(str(path))
    return {s.name: [(c.name, c.result[0]._tag if c.result else "passed", c.result[0].message if c.result else None) for c in s] for s in xml}


def test_the_github_workflow_runs_the_sample_project_through_every_stage(world, project):
    "`mlw ci init`, then the workflow's `run:` lines in order, as GitHub would run them; every stage passes."
    ws = world
    p = _mlw("ci", "init", "--config", "mlw-ci.yaml", ws=ws, cwd=project)
    assert p.returncode == 0, p.stderr
    assert (project / ".gitlab-ci.yml").exists() and yaml.safe_load((project / ".gitlab-ci.yml").read_text())["mlw-ci"]["artifacts"]["reports"]["junit"]
    again = _mlw("ci", "init", ws=ws, cwd=project)
    assert again.returncode == 2 and "already exist" in again.stderr and "--force" in again.stderr
    workflow = yaml.safe_load((project / ".github/workflows/mlw-ci.yml").read_text())
    runs = [s["run"] for s in workflow["jobs"]["mlw-ci"]["steps"] if "run" in s]
    assert len(runs) == 3 and runs[1].startswith("mlw ci run")
    env = {**os.environ, "MLW_HOME": str(ws.root), "MLW_CI_LOCAL": "1", "PATH": f"{BIN}:{os.environ['PATH']}",
           "GITHUB_STEP_SUMMARY": str(project / "step-summary.md")}
    for line in runs:
        r = subprocess.run(["bash", "-e", "-c", line], cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (line, r.stdout[-3000:], r.stderr[-3000:])
    junit = _junit(project / "mlw-ci-reports/junit.xml")
    assert list(junit) == ["unit", "notebooks", "data", "model", "integration"]
    assert all(kind in ("passed", "skipped") for cases in junit.values() for _, kind, _ in cases), junit
    assert [c for c, _, _ in junit["unit"]] == ["test_visit_weekday_reads_text_dates", "test_expected_minutes_grows_with_the_crew", "test_the_workspace_has_jobs"]
    assert sorted(c for c, _, _ in junit["notebooks"]) == ["notebooks/candidate.ipynb", "notebooks/explore_jobs.ipynb"]
    assert {"invariance(crew)", "directional(crew_size +1 -> increase)", "minimum_functionality(1 cases)", "metric_threshold(r2)"} <= {c for c, _, _ in junit["model"]}
    assert "golden rows equal offline" in {c for c, _, _ in junit["integration"]}
    assert (project / "step-summary.md").read_text().startswith("# mlw ci: job-duration: ✅ passed (exit code 0)")
    run = list_ci_runs(ws, limit=1)[0]
    assert (run.project, run.outcome, run.exit_code) == ("job-duration", "passed", 0)
    assert run.junit_path == str(project / "mlw-ci-reports/junit.xml") and Path(run.summary_path).with_suffix(".html").exists()
    site_rule = next(c for c in run.stage("data").cases if c.name.endswith("site_code_not_null"))
    assert site_rule.outcome == "passed" and site_rule.message.startswith("[warn]")  # nulls in the key are noted, not blocking
    shown = _mlw("ci", "show", str(run.id), ws=ws, cwd=project)
    assert shown.returncode == 0 and f"ci run {run.id} of job-duration: passed" in shown.stdout
    hist = _mlw("ci", "history", "--project", "job-duration", ws=ws, cwd=project)
    assert hist.returncode == 0 and str(run.id) in hist.stdout


def test_a_failing_unit_test_stops_the_run_and_the_rest_are_skipped(world, project):
    (project / "checks/check_broken.py").write_text("def test_rounding():\n    assert round(2.675, 2) == 2.68, 'binary floats'\n")
    p = _mlw("ci", "run", "--who", "test", "--no_notify", ws=world, cwd=project)  # as a CI system calls it
    assert p.returncode == 1, p.stderr
    run = list_ci_runs(world, limit=1)[0]
    assert f"ci run {run.id} of job-duration: failed (exit code 1)" in p.stdout and "FAILED test_rounding" in p.stdout
    assert (run.outcome, run.exit_code) == ("failed", 1)
    assert [(s.stage, s.outcome) for s in run.stages] == [("unit", "failed"), ("notebooks", "skipped"), ("data", "skipped"),
                                                          ("model", "skipped"), ("integration", "skipped")]
    bad = [c for c in run.stage("unit").cases if c.outcome == "failed"]
    assert [c.name for c in bad] == ["test_rounding"] and "binary floats" in bad[0].message
    junit = _junit(run.junit_path)
    assert ("test_rounding", "failure", bad[0].message) in junit["unit"] and junit["model"] == [("model", "skipped", "not run: stage 'unit' did not pass")]
    assert "| unit | test_rounding |" in Path(run.summary_path).read_text()
    audit = read_audit(world, limit=1).row(0, named=True)
    assert (audit["action"], audit["resource"], audit["outcome"], audit["principal"]) == ("ci.run", f"ci:job-duration/{run.id}", "failed", "test")


def test_a_notebook_that_raises_and_one_whose_kernel_dies_are_failed_cases_naming_the_cell(world, project):
    from mlops_workbench.pipelines.runner import make_notebook
    make_notebook(project / "notebooks/raises.ipynb", "n = 3", "total = n * 2", "raise ValueError(f'total {total} is off')")
    make_notebook(project / "notebooks/dies.ipynb", "", "import os", "os._exit(1)  # the kernel dies here")
    run = run_ci(world, _config(project, notebooks=True), who="test", notify=False)
    assert (run.outcome, run.exit_code) == ("failed", 1)
    cases = {c.name: c for c in run.stage("notebooks").cases}
    assert cases["notebooks/explore_jobs.ipynb"].outcome == cases["notebooks/candidate.ipynb"].outcome == "passed"
    raised = cases["notebooks/raises.ipynb"]
    assert raised.outcome == "failed" and raised.message == "cell 2: ValueError: total 6 is off", raised
    assert "raise ValueError" in raised.detail and "executed notebook:" in raised.detail
    died = cases["notebooks/dies.ipynb"]
    assert died.outcome == "failed" and died.message.startswith("cell 2: KernelDied"), died
    assert "os._exit(1)" in died.detail
    assert {("raises", "failure"), ("dies", "failure")} <= {(c.split("/")[1][:-6], k) for c, k, _ in _junit(run.junit_path)["notebooks"]}


def test_a_blocking_rule_fails_the_data_stage_and_the_developer_is_notified(world, project):
    "Nulls in the jobs' text key under a blocking rule; one webhook answers, one is down: its delivery waits and is retried later."
    rules = yaml.safe_load((project / "rules/jobs.yaml").read_text())
    rules["rules"][-1]["policy"] = "block"
    (project / "rules/jobs.yaml").write_text(yaml.safe_dump(rules))
    up, dead = Hook(), dead_port()
    world.settings["alerts"] = {"sinks": [{"kind": "webhook", "name": "team", "url": up.url},
                                          {"kind": "webhook", "name": "down", "url": f"http://127.0.0.1:{dead}/hook", "timeout": 2}], "backoff": 1}
    try:
        run = run_ci(world, _config(project, data=True), who="test")
        assert (run.outcome, run.exit_code) == ("failed", 1)  # the sink that is down changes nothing
        bad = [c for c in run.stage("data").cases if c.outcome == "failed"]
        assert [c.name.split(": ")[1] for c in bad] == ["site_code_not_null"] and "are null" in bad[0].message
        note = run.stage("data").detail["notification"]
        assert note["deliveries"] == {"team": "delivered", "down": "pending"}
        [body] = up.bodies
        assert body["rule"] == "ci_stage_failed" and body["details"]["stage"] == "data" and body["details"]["run"] == run.id
        assert body["details"]["report"] == f"http://127.0.0.1:5006/ci-cd?run={run.id}" and body["details"]["failing"][0]["name"] == bad[0].name
        [pending] = list_deliveries(world, alert_id=note["alert"], status="pending")
        assert pending.attempts == 1 and "ConnectError" in pending.last_error
        later = Hook(dead)  # the sink comes back on its port
        try: out = deliver_pending(world, now=dt.datetime.now(UTC) + dt.timedelta(minutes=5))
        finally: later.close()
        assert out["delivered"] == 1 and later.bodies[0]["details"]["run"] == run.id
        assert get_ci_run(world, run.id).outcome == "failed"
    finally:
        up.close()
        world.settings.pop("alerts", None)


def test_a_failing_gate_fails_the_model_stage(world, project):
    cfg = _config(project, model={"model": "job_duration@candidate", "gates": [{"kind": "metric_threshold", "metric": "r2", "min": 0.999}],
                                  "behaviour": [{"kind": "directional", "feature": "crew_size", "delta": 1, "direction": "decrease", "min_share": 0.9, "rows": 100}]})
    run = run_ci(world, cfg, who="test", notify=False)
    assert (run.outcome, run.exit_code) == ("failed", 1)
    cases = {c.name: c for c in run.stage("model").cases}
    assert cases["metric_threshold(r2)"].outcome == "failed" and ">= 0.999" in cases["metric_threshold(r2)"].message
    assert cases["directional(crew_size +1 -> decrease)"].outcome == "failed" and cases["directional(crew_size +1 -> decrease)"].classname == "model.behaviour"
    assert run.stage("model").detail["version"] == 1


def test_the_credit_world_data_and_model_stages(world, project):
    "The other shape: integer ids, real timestamps, a binary target; the behaviour tests hold."
    from mlops_workbench.data.rules import lending_application_rules, RuleSet
    rs = RuleSet("applications", [r for r in lending_application_rules() if r.kind not in ("freshness", "expression")])
    cfg = _config(project, data={"datasets": [{"name": "applications", "rules": rs.to_dict()}]},
                  model={"model": "credit_default@candidate", "gates": [{"kind": "metric_threshold", "metric": "auc", "min": 0.6}],
                         "behaviour": [{"kind": "invariance", "feature": "channel", "values": ["web", "branch"], "max_change": 1.0, "rows": 100},
                                       {"kind": "minimum_functionality", "cases": [{"name": "a score", "row": {"amount": 5000.0}, "min": 0.0, "max": 1.0}]}]})
    run = run_ci(world, cfg, who="test", notify=False)
    assert run.outcome == "passed", [(s.stage, s.detail.get("message")) for s in run.stages]
    assert run.stage("data").tests == len(rs) and run.stage("model").tests == 3


def test_a_gateway_that_will_not_start_is_an_infrastructure_error(world, project):
    run = run_ci(world, _config(project, integration={"model": "job_duration@candidate", "timeout": 0.01}), who="test", notify=False)
    assert (run.outcome, run.exit_code) == ("error", EXIT_CODES["error"]) == ("error", 3)
    st = run.stage("integration")
    assert st.outcome == "error" and st.errors == 1 and "would not start" in st.detail["message"]
    assert _junit(run.junit_path)["integration"][0][1] == "error"


def test_a_missing_or_invalid_config_is_exit_code_2_naming_the_file_and_key(world, project):
    p = _mlw("ci", "run", "--config", "nope.yaml", ws=world, cwd=project)
    assert p.returncode == 2 and "ci config" in p.stderr and "nope.yaml" in p.stderr and "does not exist" in p.stderr
    d = yaml.safe_load((project / "mlw-ci.yaml").read_text())
    d["stages"]["notebooks"]["workers"] = 0
    d["stages"]["model"]["behaviour"].append({"kind": "latency_budget"})
    d["stages"]["lint"] = {}
    (project / "mlw-ci.yaml").write_text(yaml.safe_dump(d))
    before = len(list_ci_runs(world, limit=1000))
    p = _mlw("ci", "--config", "mlw-ci.yaml", ws=world, cwd=project)
    assert p.returncode == 2, p.stderr
    for part in ("mlw-ci.yaml", "stages.notebooks.workers must be an integer >= 1", "stages.model.behaviour[3]: kind 'latency_budget' is not a behavioural test",
                 "unknown stage(s) ['lint']"):
        assert part in p.stderr, (part, p.stderr)
    assert len(list_ci_runs(world, limit=1000)) == before  # nothing ran, nothing recorded
    (project / "mlw-ci.yaml").write_text("project: x\nstages: [unit\n")
    with pytest.raises(InvalidInput, match=r"mlw-ci.yaml' is not valid YAML at line \d"): load_ci_config(project / "mlw-ci.yaml")
    with pytest.raises(InvalidInput, match="stages.model.model must be a model reference"):
        load_ci_config({"project": "x", "stages": {"model": {"model": "job_duration"}}}, root=project)
    with pytest.raises(InvalidInput, match="--stages: unknown stage"): run_ci(world, PROJECT / "mlw-ci.yaml", stages="unit,lint")
    with pytest.raises(NotFound, match="ci run 999999 not found"): get_ci_run(world, 999999)
    with pytest.raises(Conflict, match="already exist"):
        init_ci(project); init_ci(project)
