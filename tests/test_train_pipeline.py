"""`mlw run train` as a user runs it on a table of their own, for each task: the experiment YAML named by a relative path
(found from the folder `mlw` starts in), the gates chosen by the experiment's task, the model named after the experiment.

The table is made here, shaped unlike the demo: no id column, a text categorical with nulls, dates as text (carried, not an
input), a Yes/No target for binary, three text classes for multiclass, a count for regression. Real `mlw` processes, real
MLflow stores in temp workspaces; no mocks."""
import json, os, re, subprocess, sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlops_workbench.core.workspace import Workspace
from mlops_workbench.core.storage import write_dataset
from mlops_workbench.pipelines.runner import list_runs
from mlops_workbench.registry.versions import model_card, model_versions
from mlops_workbench.registry.validation import load_report

pytestmark = pytest.mark.timeout(900)
MLW = str(Path(sys.executable).parent / "mlw")
METRIC = {"binary": "auc", "multiclass": "multi_logloss", "regression": "rmse"}


def rentals(task: str, n: int = 800, seed: int = 0) -> pl.DataFrame:
    "A small rentals table: weather, a text size class with gaps, the day as text, and a target per task."
    r = np.random.default_rng(seed)
    temp, wind = r.normal(15, 8, n), r.gamma(2, 3, n)
    size = r.choice(["small", "medium", "large", None], n, p=[0.3, 0.3, 0.3, 0.1])
    z = 0.08 * temp - 0.05 * wind + np.where(size == "large", 0.8, 0.0) + 0.4 * r.standard_normal(n)
    target = {"binary": np.where(z > 1.0, "Yes", "No"), "multiclass": np.asarray(["low", "mid", "high"])[np.digitize(z, [0.6, 1.4])],
              "regression": np.round(np.exp(2 + z)).astype(int)}[task]
    days = [f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)]
    return pl.DataFrame({"temp": temp, "wind": wind, "size": pl.Series(size, dtype=pl.String), "day": days, "rented": target})


def experiment_yaml(name: str, task: str) -> str:
    return "\n".join([f"name: {name}", "target: rented", f"task: {task}", f"dataset: {name}", "exclude: [day]",
                      "split: {kind: kfold, k: 4}", f"metric: {METRIC[task]}", "params: {num_threads: 1}", "num_boost_round: 40",
                      "trials: 2", "seed: 1", "search_space:", "  learning_rate: {kind: float, low: 0.05, high: 0.3}", ""])


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_mlw_run_train_registers_each_task(tmp_path, task):
    ws = Workspace.init(tmp_path / "ws")
    name = f"rentals_{task}"
    write_dataset(ws, name, rentals(task), source={"kind": "test", "location": "rentals()"})
    work = tmp_path / "work"; work.mkdir()
    (work / "my_experiment.yaml").write_text(experiment_yaml(name, task))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MLW_HOME", None)
    p = subprocess.run([MLW, "run", "train", "-p", "experiment", "my_experiment.yaml", "--workspace", str(ws.root)],
                       cwd=work, env=env, capture_output=True, text=True, timeout=800)
    assert p.returncode == 0, p.stdout + p.stderr
    run = list_runs(ws)[0]
    steps = {s.name: s for s in run.steps}
    assert run.status == "succeeded" and steps["search"].outputs["definition"] == str((work / "my_experiment.yaml").resolve())
    assert (steps["search"].outputs["task"], steps["train"].outputs["task"], steps["register"].outputs["task"]) == (task, task, task)
    reg = steps["register"].outputs
    assert reg["model"] == name and reg["validation"] in ("passed", "rejected")
    versions = model_versions(ws, name)
    assert [v["version"] for v in versions] == [reg["version"]]
    gates = {g.name for g in load_report(ws, steps["train"].outputs["run_id"]).results}
    want, never = {"binary": ("auc", "r2"), "multiclass": ("logloss", "auc"), "regression": ("r2", "auc")}[task]
    assert any(want in g for g in gates) and not any(never in g for g in gates), gates
    card = model_card(ws, name, reg["version"])  # the context it was trained in
    assert f"- dataset `{name}` v0" in card and "- split: 4-fold over shuffled rows" in card, card
    fit = re.search(r"- fit on (\d+) of 800 rows; measured on the other (\d+)", card)
    assert fit and int(fit[1]) + int(fit[2]) == 800 and abs(int(fit[2]) - 200) <= 3, card  # a quarter (stratified folds round)
    assert ("| class | training rows | holdout rows |" in card) == (task != "regression"), card
    if task == "binary": assert "| No |" in card and "| Yes |" in card
    # the step said where it found the definition
    text = json.loads(Path(steps["search"].notebook).read_text())
    printed = "".join("".join(o.get("text", "")) for c in text["cells"] for o in c.get("outputs", []))
    assert "(the folder the run was started in)" in printed


def test_definition_found_nowhere_says_where_it_looked(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    env = {k: v for k, v in os.environ.items() if k != "MLW_HOME"}
    p = subprocess.run([MLW, "run", "train", "-p", "experiment", "missing.yaml", "--workspace", str(ws.root)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert "experiment definition 'missing.yaml' not found; looked in:" in out and f"{tmp_path}/missing.yaml" in out, out
