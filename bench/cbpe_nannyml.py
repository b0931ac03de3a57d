"""CBPE: our estimate_performance (mlops_workbench.monitoring.performance) against NannyML's CBPE, on the same chunks.

Run: .venv/bin/python bench/cbpe_nannyml.py [--nannyml-python /tmp/nmvenv/bin/python] [--rows 40000]

NannyML 0.13.1 would downgrade the project's lightgbm (4.7 -> 4.5), so it lives in a venv of its own:
    python3 -m venv /tmp/nmvenv && /tmp/nmvenv/bin/pip install nannyml==0.13.1 pyarrow statsmodels
(statsmodels: nannyml imports it but does not declare it.)

The data: the demo lending world (tests/performance_world.py): LightGBM trained on the first quarter, the reference =
its out-of-sample predictions of the second quarter with labels, current = the second half, monthly chunks, the
model's cut-off 0.2. Three worlds: no drift, covariate drift (DriftSpec(covariate=1)), concept drift
(DriftSpec(concept=1)). Both sides get the same parquet files: ours reads them here (project venv), NannyML in a
subprocess (its venv) with CBPE(chunk_period='M', metrics=[roc_auc, accuracy, f1, precision, recall]), isotonic
calibration only when its needs_calibration test says so (ours runs the same test). Printed per chunk and metric:
ours, NannyML's, and the realised value, then the largest |ours - NannyML| per metric.
"""
import argparse, json, subprocess, sys, tempfile
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from performance_world import THRESHOLD, lending_windows  # noqa: E402
from mlops_workbench.data.synthetic import DriftSpec  # noqa: E402
from mlops_workbench.monitoring.performance import CBPE_METRICS, estimate_performance, realised_performance  # noqa: E402

NANNYML = r'''
import json, sys, warnings
warnings.filterwarnings("ignore")
import nannyml as nml, pandas as pd
ref, cur, out = sys.argv[1:4]
ref, cur = pd.read_parquet(ref), pd.read_parquet(cur)
est = nml.CBPE(y_pred_proba="prediction", y_pred="y_pred", y_true="actual", timestamp_column_name="at", chunk_period="M",
               metrics=["roc_auc", "accuracy", "f1", "precision", "recall"], problem_type="classification_binary")
est.fit(ref)
df = est.estimate(cur.drop(columns=["actual"])).filter(period="analysis").to_df(multilevel=False)
rows = [{"start": str(r["chunk_start_date"])[:10], **{m: float(r[f"{m}_value"]) for m in ["roc_auc", "accuracy", "f1", "precision", "recall"]}}
        for _, r in df.iterrows()]
json.dump({"calibrated": bool(est.needs_calibration), "nannyml": nml.__version__, "chunks": rows}, open(out, "w"))
'''


def compare(name, drift, nannyml_python, rows, tmp):
    w = lending_windows(drift, n=rows)
    ref, cur = (w[k].with_columns(actual=pl.col("defaulted")) for k in ("reference", "current"))
    ours = estimate_performance(ref, cur, threshold=THRESHOLD, every="1mo")
    real = realised_performance(cur, "binary", every="1mo", threshold=THRESHOLD)
    for k, df in (("ref", ref), ("cur", cur)):  # naive UTC times: NannyML's monthly periods come from pandas
        df.select(pl.col("at").dt.replace_time_zone(None), "prediction", (pl.col("prediction") >= THRESHOLD).cast(pl.Int64).alias("y_pred"),
                  pl.col("actual").cast(pl.Int64)).write_parquet(tmp / f"{name}_{k}.parquet")
    out = tmp / f"{name}_nannyml.json"
    script = tmp / "nannyml_side.py"
    script.write_text(NANNYML)
    subprocess.run([nannyml_python, str(script), str(tmp / f"{name}_ref.parquet"), str(tmp / f"{name}_cur.parquet"), str(out)], check=True)
    nm = json.loads(out.read_text())
    print(f"\n== {name}: {ref.height:,} reference rows, {cur.height:,} current rows in {ours.height} monthly chunks; "
          f"calibrated: ours {ours['calibrated'][0]}, NannyML {nm['nannyml']} {nm['calibrated']}")
    print(f"{'chunk':<10} {'metric':<10} {'ours':>8} {'nannyml':>8} {'realised':>9}")
    worst = {}
    for i, (o, n, r) in enumerate(zip(ours.iter_rows(named=True), nm["chunks"], real.iter_rows(named=True))):
        assert str(o["window_start"])[:10] == n["start"], (o["window_start"], n["start"])
        for m in CBPE_METRICS:
            print(f"{n['start']:<10} {m:<10} {o[m]:8.4f} {n[m]:8.4f} {r[m]:9.4f}")
            worst[m] = max(worst.get(m, 0.0), abs(o[m] - n[m]))
    print("max |ours - nannyml|: " + ", ".join(f"{m} {v:.2e}" for m, v in worst.items()))
    return worst


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nannyml-python", default="/tmp/nmvenv/bin/python")
    ap.add_argument("--rows", type=int, default=40_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for name, drift in (("none", None), ("covariate", DriftSpec(covariate=1.0)), ("concept", DriftSpec(concept=1.0))):
            compare(name, drift, a.nannyml_python, a.rows, Path(d))
