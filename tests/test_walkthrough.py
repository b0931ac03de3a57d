"""The README's "Your own table, end to end", run as written: its YAML files are written from the README's blocks, its
commands run one by one with the installed `mlw` in a scratch folder, on a CSV the test makes and the demo never saw
(hourly rentals: the day as text, a text weather column with gaps, no id, a count and a Yes/No target, and a few bad
rows for validation to hold back). It ends with two registered, aliased models, one per task."""
import os, re, shlex, subprocess, sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytestmark = pytest.mark.timeout(1200)
ROOT = Path(__file__).resolve().parents[1]
MLW = str(Path(sys.executable).parent / "mlw")


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Your own table, end to end")
    return text[start:text.index("\n## ", start + 3)]


def bikes(n: int = 1500, seed: int = 4) -> pl.DataFrame:
    r = np.random.default_rng(seed)
    hour, temp, humidity = r.integers(0, 24, n), r.normal(16, 7, n).round(1), r.uniform(20, 95, n).round(0)
    weather = r.choice(["clear", "cloudy", "rain", None], n, p=[0.5, 0.3, 0.15, 0.05])
    rush = np.isin(hour, [7, 8, 9, 16, 17, 18])
    rate = np.exp(2.5 + 0.9 * rush + 0.04 * temp - 0.01 * humidity - 0.6 * (weather == "rain"))
    rentals = r.poisson(rate)
    df = pl.DataFrame({"day": [f"2025-{1 + i // 124 % 12:02d}-{1 + i // 24 % 28:02d}" for i in range(n)], "hour": hour,
                       "weather": pl.Series(weather, dtype=pl.String), "temp": temp, "humidity": humidity, "rentals": rentals,
                       "busy": np.where(rentals > np.median(rentals), "Yes", "No")})
    bad = r.choice(n, 12, replace=False)  # rows validation must hold back: a missing temperature, an impossible humidity
    return df.with_columns(temp=pl.when(pl.int_range(n).is_in(bad[:6])).then(None).otherwise("temp"),
                           humidity=pl.when(pl.int_range(n).is_in(bad[6:])).then(140.0).otherwise("humidity"))


def test_readme_walkthrough_on_a_table_of_ones_own(tmp_path):
    sec = section()
    for block in re.findall(r"```yaml\n(.*?)```", sec, re.S):
        name = block.splitlines()[0].lstrip("# ").strip()
        (tmp_path / name).write_text(block)
    bikes().write_csv(tmp_path / "bikes.csv")
    commands = [line.split("#")[0].strip() for line in re.search(r"```bash\n(.*?)```", sec, re.S)[1].splitlines()]
    env = {**{k: v for k, v in os.environ.items() if k != "MLW_HOME"}, "OMP_NUM_THREADS": "1"}
    out = {}
    for cmd in filter(None, commands):
        for part in (p.strip() for p in cmd.split("&&")):
            if part.startswith("export "):
                k, v = part[len("export "):].split("=", 1)
                env[k] = v.replace("$PWD", str(tmp_path))
                continue
            argv = shlex.split(part)
            assert argv[0] == "mlw", part
            p = subprocess.run([MLW, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
            assert p.returncode == 0, f"{part}\n{p.stdout}\n{p.stderr}"
            out[part] = p.stdout
    assert env["MLW_HOME"] == str(tmp_path / "ws")
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.core.storage import read_dataset
    from mlops_workbench.registry.versions import model_card, model_versions
    ws = Workspace.open(tmp_path / "ws")
    try:
        held = read_dataset(ws, "bikes_quarantine").collect()
        assert held.height == 12 and read_dataset(ws, "bikes_validated").collect().height == 1500 - 12
        for model, task in (("bike_demand", "regression"), ("bike_busy", "binary")):
            v = model_versions(ws, model)
            assert [x["version"] for x in v] == [1] and v[0]["aliases"] == ["candidate"], v  # registered and aliased
            card = model_card(ws, model, 1)
            assert f"({task}" in card and "- dataset `bikes_validated` v0" in card and "5-fold over shuffled rows" in card, card
            assert ("| class | training rows | holdout rows |" in card) == (task == "binary")
            assert "candidate" in out[f"mlw models show {model}"]
    finally:
        ws.close()
