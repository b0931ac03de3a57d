"""`mlw` as a new user meets it (issue 15, items 2 and 11), the installed console script in a subprocess:
a busy port is one line naming it for every server verb; `mlw VERB ACTION --help` is that action's help; `-p` is
shown for `--param`; `mlw lab` takes `--no-browser` and `--ip`; a run can be named by its short id (as the Lab sidebar
shows it) when only one run has it; `mlw runs show` prints step outputs a line each; MLflow's INFO lines stay off
the terminal.
"""
import re
import socket
import subprocess

import pytest

from test_cli import ENV, MLW, RUN_LINE, mlw, user_error


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    "A workspace with two runs of a pipeline whose step records a number, a list, a long text and a path."
    from mlops_workbench.pipelines.runner import make_notebook
    d = tmp_path_factory.mktemp("usability")
    make_notebook(d/"out.ipynb", "n: int = 2",
                  "from mlops_workbench.pipelines.runner import record_output",
                  "record_output('auc', 0.912345678); record_output('zones', ['north', 'south']); "
                  "record_output('summary', 'word ' * 40); record_output('n', n)")
    (d/"out.yaml").write_text("name: out\nparameters: {n: 2}\nsteps:\n  outputs:\n    notebook: out.ipynb\n    parameters: {n: '${params.n}'}\n")
    assert mlw("init", "ws", cwd=d).returncode == 0
    ids = []
    for n in (1, 2):
        p = mlw("run", "out.yaml", "-p", "n", n, "--quiet", "--workspace", "ws", cwd=d)
        m = RUN_LINE.search(p.stdout)
        assert m and m[2] == "succeeded", p.stdout + p.stderr
        ids.append(m[1])
    return d, d/"ws", ids


def short_id(run_id: str) -> str:
    "The form the Lab sidebar shows (extensions/mlops_workbench_lab/src/runs.ts, `shortId`): the random tail."
    tail = run_id[run_id.rfind("-") + 1:]
    return tail if len(tail) >= 4 else run_id[:8]


# --- item 2: busy ports

SERVER_VERBS = {
    "dashboards": ["dashboards"],
    "dashboards --voila": ["dashboards", "--voila", "pipeline_run"],
    "lab": ["lab", "--no-browser"],
    "mlflow-ui": ["mlflow-ui"],
    "serve": ["serve", "credit_default@production"],
}


@pytest.fixture
def taken():
    "A loopback port held by a listening test socket."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("verb", SERVER_VERBS)
def test_a_busy_port_is_one_line_naming_it(verb, taken, tmp_path):
    assert mlw("init", "ws", cwd=tmp_path).returncode == 0
    p = mlw(*SERVER_VERBS[verb], "--port", taken, "--workspace", "ws", cwd=tmp_path, timeout=120)
    line = user_error(p, f"port {taken} on 127.0.0.1 is in use", "pass --port")
    assert "OSError" not in line and p.stdout == "", p.stdout  # nothing started, so no URL printed


def test_lab_takes_no_browser_and_ip(tmp_path, taken):
    assert mlw("init", "ws", cwd=tmp_path).returncode == 0
    p = mlw("lab", "--help", cwd=tmp_path)
    assert p.returncode == 0 and "--no_browser" in p.stdout and "--ip" in p.stdout, p.stdout
    # --ip is the address checked and bound: the held port on 127.0.0.1 is busy there
    p = mlw("lab", "--ip", "127.0.0.1", "--no-browser", "--port", taken, "--workspace", "ws", cwd=tmp_path)
    user_error(p, f"port {taken} on 127.0.0.1 is in use")
    p = mlw("lab", "--ip", "no-such-host.invalid", "--port", taken, "--workspace", "ws", cwd=tmp_path)
    user_error(p, "cannot listen on no-such-host.invalid")
    from mlops_workbench.cli import lab_command
    from mlops_workbench.core.workspace import Workspace
    cmd = lab_command(Workspace.open(tmp_path/"ws"), 8899, "0.0.0.0", browser=False)
    assert {"--ServerApp.port=8899", "--ServerApp.ip=0.0.0.0", "--ServerApp.port_retries=0", "--ServerApp.open_browser=False"} <= set(cmd)


# --- item 11: help

ACTION_HELP = {  # args -> (options its help shows, options of other actions it must not show)
    ("runs", "show"): (["RUN_ID", "short id", "--workspace"], ["--limit", "--pipeline"]),
    ("runs", "list"): (["--limit", "--pipeline"], ["RUN_ID"]),
    ("datasets", "head"): (["NAME [VERSION]", "--rows", "--csv"], ["{list,show,history,head}"]),
    ("datasets", "history"): (["history NAME"], ["--rows", "--csv"]),
    ("models", "promote"): (["NAME VERSION ALIAS", "--reason", "--who"], ["{list,show,promote,archive}"]),
    ("keys", "create"): (["--role", "--model", "--expires"], ["--overlap", "--all"]),
    ("deploy", "rollback"): (["--env", "--reason", "--who"], ["--strategy", "--steps", "--promote"]),
    ("deploy", "history"): (["--env", "--limit"], ["--strategy", "--reason"]),
    ("monitor", "run"): (["run NAME", "--since", "--until", "--retrain"], ["--retrainings", "--reason"]),
    ("monitor", "decline"): (["decline ID", "--reason"], ["--since", "--retrain"]),
    ("secrets", "set"): (["set NAME", "stdin"], ["--reencrypt"]),
    ("audit", "verify"): (["--anchor"], ["--principal", "--since"]),
}


@pytest.mark.parametrize("args", ACTION_HELP, ids=" ".join)
def test_action_help_is_the_actions_own(args, tmp_path):
    shows, hides = ACTION_HELP[args]
    for flag in ("--help", "-h"):
        p = mlw(*args, flag, cwd=tmp_path)
        assert (p.returncode, p.stderr) == (0, ""), p.stderr
        assert p.stdout.startswith(f"usage: mlw {args[0]} "), p.stdout
        for s in shows: assert s in p.stdout, (args, s, p.stdout)
        for s in hides: assert s not in p.stdout, (args, s, p.stdout)
    assert mlw(args[0], "--help", cwd=tmp_path).stdout != p.stdout  # the verb's help is still the whole verb's


def test_run_help_shows_p_for_param(tmp_path):
    p = mlw("run", "--help", cwd=tmp_path)
    assert p.returncode == 0
    assert "-p KEY VALUE, --param KEY VALUE" in p.stdout, p.stdout
    assert re.search(r"usage: mlw run .*\[-p KEY VALUE\]", p.stdout), p.stdout


# --- item 11: short run ids, readable outputs

def test_runs_show_takes_the_short_id(two_runs):
    d, ws, (first, second) = two_runs
    full = mlw("runs", "show", second, "--workspace", ws, cwd=d)
    assert full.returncode == 0, full.stderr
    short = mlw("runs", "show", short_id(second), "--workspace", ws, cwd=d)
    assert (short.returncode, short.stdout) == (0, full.stdout), short.stderr
    assert short.stdout.startswith(f"run {second}  pipeline out  succeeded")


def test_an_ambiguous_id_lists_the_matches(two_runs):
    d, ws, (first, second) = two_runs
    common = next(first[:i] for i in range(len(first), 0, -1) if second.startswith(first[:i]))  # the date at least
    p = mlw("runs", "show", common, "--workspace", ws, cwd=d)
    line = user_error(p, f"run id {common!r} is ambiguous", first, second, "give more of the id")
    assert "matches 2 runs" in line
    user_error(mlw("runs", "show", "zzzzzz", "--workspace", ws, cwd=d), "run 'zzzzzz' not found")


def test_resume_takes_the_short_id(two_runs):
    d, ws, (first, second) = two_runs
    p = mlw("run", "--resume", short_id(first), "--quiet", "--workspace", ws, cwd=d)
    # the run finished, so resuming it is refused: by its whole id, which shows the short one was resolved
    assert first in p.stdout + p.stderr, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr


def test_runs_show_prints_outputs_readably(two_runs):
    d, ws, (first, second) = two_runs
    out = mlw("runs", "show", second, "--workspace", ws, cwd=d).stdout.splitlines()
    step = next(i for i, line in enumerate(out) if line.startswith("  outputs "))
    assert re.match(r"^  outputs +succeeded +attempts 1 +[\d.]+s$", out[step]), out[step]
    lines = out[step + 1:step + 5]
    assert lines[0] == "      auc      0.912346", lines
    assert lines[1] == '      zones    ["north", "south"]', lines
    assert lines[2].startswith("      summary  word word") and lines[2].endswith("...") and len(lines[2]) == 6 + 7 + 2 + 80, lines[2]
    assert lines[3] == "      n        2", lines


# --- item 11: MLflow's INFO chatter

def test_mlflow_info_does_not_reach_the_terminal(tmp_path):
    assert mlw("init", "ws", cwd=tmp_path).returncode == 0
    for args in (["models"], ["models", "list"], ["status"], ["monitor"]):  # the first opens the tracking store: MLflow creates its tables
        p = mlw(*args, "--workspace", "ws", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert "INFO" not in p.stderr + p.stdout and "mlflow" not in p.stderr, (args, p.stderr)
    # a user who asks for MLflow's INFO lines still gets them (and so this test would see them)
    assert mlw("init", "ws2", cwd=tmp_path).returncode == 0
    p = subprocess.run([MLW, "models", "--workspace", "ws2"], cwd=tmp_path, env={**ENV, "MLFLOW_LOGGING_LEVEL": "INFO"},
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "INFO mlflow" in p.stderr, p.stderr
