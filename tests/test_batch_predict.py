"""Batch inference on tables shaped unlike the demo: a regression target and a three-class target, no id column, a text
categorical with nulls and a level training never saw, dates as strings (carried, not an input), scored in small chunks
so every chunk boundary is crossed; the predictions equal the booster's on the whole table at once; failures leave
nothing behind; and the `batch_predict` pipeline notebook run by the pipeline runner."""
import numpy as np
import polars as pl
import pytest

from mlops_workbench.core.errors import InvalidInput, NotFound
from mlops_workbench.core.storage import dataset_version, latest_version, read_dataset, write_dataset
from mlops_workbench.experiments.definition import Experiment, FloatParam
from mlops_workbench.pipelines.runner import run_pipeline
from mlops_workbench.registry.gates import default_gates
from mlops_workbench.registry.validation import load_run_model, validate_model
from mlops_workbench.registry.versions import register_model
from mlops_workbench.serving.batch import predict_dataset
from mlops_workbench.training.fit import train

pytestmark = pytest.mark.timeout(600)


def rentals(n=900, seed=0, task="regression"):
    r = np.random.default_rng(seed)
    temp, wind = r.normal(15, 8, n), r.gamma(2, 3, n)
    size = r.choice(["small", "medium", "large", None], n, p=[0.3, 0.3, 0.3, 0.1])
    z = 0.08 * temp - 0.05 * wind + np.where(size == "large", 0.8, 0.0) + 0.4 * r.standard_normal(n)
    target = np.round(np.exp(2 + z)).astype(int) if task == "regression" else np.asarray(["low", "mid", "high"])[np.digitize(z, [0.6, 1.4])]
    days = [f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)]
    return pl.DataFrame({"temp": temp, "wind": wind, "size": pl.Series(size, dtype=pl.String), "day": days, "rented": target})


def registered(ws, name, task):
    write_dataset(ws, name, rentals(task=task), source={"kind": "test", "location": "rentals()"})
    exp = Experiment(name=name, target="rented", task=task, dataset=name, exclude=["day"], params={"num_threads": 1},
                     num_boost_round=30, trials=1, search_space={"learning_rate": FloatParam(0.05, 0.3)})
    run_id = train(ws, exp, {"learning_rate": 0.1, "num_leaves": 7}).run_id
    register_model(ws, run_id, name, validate_model(ws, run_id, default_gates(task)), who="test")
    return run_id


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_scores_a_table_without_ids_in_chunks(ws, task):
    name = f"rentals_{task[:5]}"
    run_id = registered(ws, name, task)
    new = rentals(n=1234, seed=5, task=task).drop("rented").with_columns(
        pl.when(pl.int_range(pl.len()) % 97 == 0).then(pl.lit("huge")).otherwise(pl.col("size")).alias("size"))  # a level never seen
    write_dataset(ws, "new_rentals", new, source={"kind": "test", "location": "rentals(seed=5)"})
    v = predict_dataset(ws, f"{name}/1", "new_rentals", output="rental_scores", chunk_rows=100, progress=False)
    out = read_dataset(ws, "rental_scores").collect().sort("source_row")
    m = load_run_model(ws, run_id)
    assert m.features == ["temp", "wind", "size"] and out.height == 1234
    expect = m.predict(m.matrix(new))
    carried = ["day", "source_row"]
    if task == "regression":
        assert out.columns == carried + ["prediction", "model", "model_version"]
        np.testing.assert_allclose(out["prediction"].to_numpy(), expect, rtol=0, atol=1e-12)
    else:
        classes = m.classes
        assert out.columns == carried + ["prediction", "predicted_label"] + [f"proba_{c}" for c in classes] + ["model", "model_version"]
        np.testing.assert_allclose(out.select([f"proba_{c}" for c in classes]).to_numpy(), expect, atol=1e-12)
        assert out["predicted_label"].to_list() == [str(classes[i]) for i in expect.argmax(axis=1)]
        np.testing.assert_allclose(out["prediction"].to_numpy(), expect.max(axis=1), atol=1e-12)
    assert out["day"].to_list() == new["day"].to_list() and set(out["model"]) == {name} and set(out["model_version"]) == {1}
    assert v.lineage["inputs"] == [{"dataset": "new_rentals", "version": 0}]
    step = v.lineage["steps"][0]
    assert (step["model"], step["model_version"], step["model_run_id"], step["features"]) == (name, 1, run_id, "columns of the dataset")
    assert v.source["location"] == "new_rentals@0" and v.source["model_run_id"] == run_id
    # a second scoring is a new version holding only its own rows; the first stays readable
    v2 = predict_dataset(ws, f"{name}/1", "new_rentals", output="rental_scores", chunk_rows=500, progress=False)
    assert (v2.version, v2.row_count, read_dataset(ws, "rental_scores", v.version).collect().height) == (v.version + 1, 1234, 1234)
    assert not list(ws.path(".tmp").glob("*"))


def test_failures_write_nothing(ws):
    registered(ws, "rentals_regre", "regression")
    write_dataset(ws, "no_wind", rentals(n=50).drop("wind", "rented"), source={"kind": "test"})
    write_dataset(ws, "clash", rentals(n=50).rename({"day": "prediction"}), source={"kind": "test"})
    write_dataset(ws, "texty", rentals(n=300).with_columns(pl.col("temp").cast(pl.String)), source={"kind": "test"})
    cases = [(InvalidInput, "rentals_regre@production2", "no_wind", "alias 'production2' is not one of"),
             (NotFound, "rentals_regre/7", "no_wind", "has no version 7"),
             (NotFound, "nosuchmodel@production", "no_wind", "model 'nosuchmodel' not found"),
             (NotFound, "rentals_regre/1", "nothing_here", "dataset 'nothing_here' not found"),
             (InvalidInput, "rentals_regre/1", "no_wind", "needs feature(s) ['wind'] the dataset lacks"),
             (InvalidInput, "rentals_regre/1", "clash", "column(s) ['prediction'] of the dataset have the names of prediction columns"),
             (InvalidInput, "rentals_regre/1", "texty", "feature 'temp' is text")]
    for exc, ref, ds, why in cases:
        with pytest.raises(exc) as e:
            predict_dataset(ws, ref, ds, chunk_rows=100, progress=False)
        assert why in str(e.value), str(e.value)
        assert latest_version(ws, f"{ds}__predictions") is None and not ws.path("data", f"{ds}__predictions").exists()
    with pytest.raises(NotFound, match="has no version 3"):
        predict_dataset(ws, "rentals_regre/1", "no_wind", version=3)
    with pytest.raises(InvalidInput, match="is the dataset being scored"):
        predict_dataset(ws, "rentals_regre/1", "no_wind", output="no_wind")
    assert not list(ws.path(".tmp").glob("*"))


def test_batch_predict_pipeline(ws):
    registered(ws, "rentals_regre", "regression")
    write_dataset(ws, "new_rentals", rentals(n=300, seed=9).drop("rented"), source={"kind": "test"})
    run = run_pipeline(ws, "batch_predict", {"model": "rentals_regre/1", "dataset": "new_rentals", "chunk_rows": 128}, progress=False)
    run.raise_for_status()
    outs = run.step("predict").outputs
    v = dataset_version(ws, "new_rentals__predictions")
    assert outs == {"output": "new_rentals__predictions", "version": v.version, "rows": 300, "model": "rentals_regre", "model_version": 1}
    assert v.run_id == run.id
    bad = run_pipeline(ws, "batch_predict", {"model": "rentals_regre/1", "dataset": "missing_one"}, progress=False)
    assert bad.status == "failed" and "dataset 'missing_one' not found" in str(bad.step("predict").error)
