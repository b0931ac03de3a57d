"""ServedModel (mlops_workbench.serving.model) against the offline path on real stores: a prediction served by entity
key at time t equals the training run's booster on the offline point-in-time training data for the same entities
and t, on SQLite and on a real redis-server, for the demo's credit model and for a differently shaped problem made
here (regression target, no id column, text keys with nulls, text categoricals, a categorical feature read from the
store, dates as strings). Also: the hand-written validator gives jsonschema's verdict on generated rows; a removed
feature service fails at load; a dead store is a 503; a multiclass model trained on a plain dataset."""
import datetime as dt
import warnings

import jsonschema
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import free_port
from toy import jobs_world
from mlops_workbench.core.errors import NotFound, Unavailable
from mlops_workbench.core.metadata import feature_services
from mlops_workbench.core.storage import read_dataset, write_dataset
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.experiments.definition import Experiment, IntParam, KFold, demo_experiment
from mlops_workbench.features.definitions import Aggregation, Entity, FeatureService, FeatureView, OnDemandFeatureView, apply
from mlops_workbench.features.offline import build_features, get_training_data
from mlops_workbench.features.online import materialize
from mlops_workbench.registry.gates import default_gates
from mlops_workbench.registry.validation import load_run_model, validate_model
from mlops_workbench.registry.versions import register_model
from mlops_workbench.serving.model import RequestInvalid, load_served_model
from mlops_workbench.training.fit import train

UTC = dt.timezone.utc
T = dt.datetime(2025, 7, 20, 6, 30, tzinfo=UTC)
warnings.filterwarnings("ignore", category=UserWarning)


def _redis(uri: str) -> str:
    "Database 3 of the session's Redis, emptied: these tests' rows never meet other tests' (newer event times win there)."
    import redis
    uri = uri.rsplit("/", 1)[0] + "/3"
    with redis.Redis.from_url(uri) as r: r.flushdb()
    return uri


@pytest.fixture(params=["sqlite", "redis"])
def online_ws(request, tmp_path):
    "A workspace whose online store is the embedded SQLite file, or a real Redis server on loopback."
    backends = {"online": _redis(request.getfixturevalue("redis_uri"))} if request.param == "redis" else None
    w = Workspace.init(tmp_path / "ws", backends=backends)
    yield w
    w.close()


def _offline(ws, run_id, ents: pl.DataFrame, service: str) -> np.ndarray:
    "The training run's booster on the offline point-in-time training data of `ents` (RunModel.matrix: what validation scores)."
    m = load_run_model(ws, run_id)
    return m.predict(m.matrix(get_training_data(ws, ents, service).data))


def test_served_by_key_equals_offline_on_a_regression_with_text_keys(online_ws):
    ws = online_ws
    run_id, sites = jobs_world(ws)
    sm = load_served_model(ws, "job_duration/1")
    assert (sm.task, sm.entity_keys, sm.service.name, sm.service.key_types) == ("regression", ["site_code"], "site_svc", {"site_code": "string"})
    assert sm.request_features == ["crew_size", "crew"] and "visit_day" not in sm.features and sm.classes is None
    assert sm.categorical["last_state"] == ["fault", "ok", "warn"] and sm.types["crew_size"] == "integer"
    by_key = sm.input_schema()["oneOf"][1]
    assert by_key["required"] == ["site_code", "crew_size", "crew"] and by_key["properties"]["site_code"]["type"] == ["string", "null"]
    codes = sites[:25] + [None, "site-999"]  # a null key and a site the store never saw
    ents = pl.DataFrame({"site_code": codes, "crew_size": [1 + i % 5 for i in range(len(codes))],
                         "crew": [["alpha", "beta", "gamma"][i % 3] for i in range(len(codes))]})
    for t in (T, T + dt.timedelta(days=40)):  # the second: every reading older than the 14-day TTL
        want = _offline(ws, run_id, ents.with_columns(pl.lit(t).alias("event_timestamp")), "site_svc")
        assert materialize(ws, "site_stats", end=t).status == "complete"
        got = sm.predict({"rows": ents.to_dicts()}, now=t)
        np.testing.assert_allclose([o["value"] for o in got.outputs], want, rtol=0, atol=1e-9)
        one = [sm.predict({"rows": [r]}, now=t).outputs[0]["value"] for r in ents.to_dicts()[:8]]  # the one-row path
        np.testing.assert_allclose(one, want[:8], rtol=0, atol=1e-9)
        status = [s["site_stats"]["status"] for s in got.feature_status]
        assert status[-2:] == ["missing", "missing"] and got.feature_status[-2]["site_stats"]["reason"] == "join key site_code is null"
        assert set(status[:-2]) == ({"present"} if t == T else {"expired"})
        jsonschema.validate(got.to_dict(features=True), sm.response_schema())
    if ws.uri("online").startswith("sqlite"):
        with ws.metadata.begin() as c: c.execute(feature_services.delete().where(feature_services.c.name == "site_svc"))
        with pytest.raises(NotFound, match=r"model 'job_duration' v1: its feature service 'site_svc' \(v1, read by training run .*\) no longer exists"):
            load_served_model(ws, "job_duration/1")


def test_demo_served_by_key_on_redis_equals_offline(tmp_path, redis_uri):
    ws = Workspace.init(tmp_path / "ws", backends={"online": _redis(redis_uri)})
    run_id = train(ws, demo_experiment(ws, n_applications=1500), {"num_leaves": 7, "n_estimators": 25}, run_name="demo").run_id
    register_model(ws, run_id, "credit_default", validate_model(ws, run_id, default_gates("binary")), who="test")
    sm = load_served_model(ws, "credit_default/1")
    apps = read_dataset(ws, "applications").collect().drop("defaulted", "application_id").head(80)
    want = _offline(ws, run_id, apps.with_columns(pl.lit(T).alias("event_timestamp")), "credit_v1")
    materialize(ws, "customer_spend", end=T)
    got = sm.predict({"rows": apps.drop("event_timestamp").to_dicts()}, now=T)
    np.testing.assert_allclose([o["score"] for o in got.outputs], want, rtol=0, atol=1e-9)
    assert all(o["label"] == int(o["score"] >= 0.5) for o in got.outputs)
    ws.close()


def test_a_dead_online_store_is_a_503_and_rows_by_features_still_score(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    run_id, sites = jobs_world(ws)
    down = Workspace(ws.root, {**ws.settings, "backends": {**ws.settings["backends"], "online": f"redis://127.0.0.1:{free_port()}/0"}})
    sm = load_served_model(down, "job_duration/1")  # loading reads definitions, never the store
    with pytest.raises(Unavailable, match=r"model 'job_duration' v1: the online store cannot be read \(online store 'redis://127\.0\.0\.1:\d+/0' is unreachable"):
        sm.predict({"rows": [{"site_code": sites[0], "crew_size": 2, "crew": "beta"}]}, now=T)
    with pytest.raises(Unavailable): sm.ping()
    row = {f: None if f in sm.nullable else 2 if sm.types[f] == "integer" else "beta" if f == "crew" else 1.5 for f in sm.features}
    assert len(sm.predict({"rows": [row]}).outputs) == 1


@pytest.fixture(scope="module")
def jobs_model(tmp_path_factory):
    ws = Workspace.init(tmp_path_factory.mktemp("jobs") / "ws")
    jobs_world(ws)
    yield load_served_model(ws, "job_duration/1")
    ws.close()


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from(["ok", "warn", "fault", "alpha", "beta", "gamma", "site-001", "", "OK"]), st.just([]), st.just({}))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from([0, 1]), edits=st.lists(st.tuples(st.sampled_from(["drop", "set", "add"]), st.integers(0, 50), VALUES), max_size=3))
def test_validator_agrees_with_jsonschema(jobs_model, shape, edits):
    "A valid row of either shape, edited a few times at random: validate accepts it exactly when jsonschema does."
    sm = jobs_model
    schema = sm.input_schema()
    row = ({"site_code": "site-001", "crew_size": 3, "crew": "alpha"} if shape else
           {"crew_size": 3, "crew": "alpha", "last_temp": 20.5, "last_state": "ok", "temp_mean_7d": None, "temp_count_30d": 4, "temp_per_crew": 6.8})
    assert set(row) == set(schema["oneOf"][shape]["required"])
    fields = sm.features + sm.entity_keys + ["bogus"]
    for op, i, v in edits:
        f = fields[i % len(fields)]
        if op == "drop": row.pop(list(row)[i % len(row)], None) if row else None
        elif op == "set" and row: row[list(row)[i % len(row)]] = v
        else: row[f] = v
    expected = jsonschema.Draft202012Validator(schema).is_valid(row)
    try: sm.validate({"rows": [row]}); ok = True
    except RequestInvalid: ok = False
    assert ok == expected, (row, expected)


def test_multiclass_model_on_a_dataset(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    r, n = np.random.default_rng(2), 1200
    x = r.normal(size=n)
    df = pl.DataFrame({"x": x, "count": r.integers(0, 9, n).tolist(), "flag": (r.random(n) < 0.4).tolist(),
                       "colour": [None if r.random() < 0.05 else c for c in r.choice(["red", "green", "blue"], n)],
                       "kind": np.where(x < -0.4, "low", np.where(x < 0.4, "mid", "high")).tolist()})
    write_dataset(ws, "flowers", df, source={"kind": "test", "location": "test_serving_model"})
    exp = Experiment(name="flowers", target="kind", task="multiclass", dataset="flowers", search_space={"num_leaves": IntParam(4, 16)},
                     params={"num_threads": 1}, trials=1, num_boost_round=20)
    run_id = train(ws, exp, {"num_leaves": 7}, run_name="flowers").run_id
    register_model(ws, run_id, "flowers", validate_model(ws, run_id, default_gates("multiclass")), who="test")
    sm = load_served_model(ws, "flowers/1")
    assert (sm.service, sm.entity_keys, sm.classes) == (None, [], ["high", "low", "mid"])
    assert {f: sm.types[f] for f in sm.features} == {"x": "number", "count": "integer", "flag": "boolean", "colour": "string"}
    schema = sm.input_schema()
    assert "oneOf" not in schema and schema["properties"]["colour"]["enum"] == ["blue", "green", "red", None]
    rows = df.drop("kind").head(30).to_dicts()
    got = sm.predict({"rows": rows})
    m = load_run_model(ws, run_id)
    want = m.predict(m.matrix(df.head(30)))
    np.testing.assert_allclose([[o["probabilities"][c] for c in sm.classes] for o in got.outputs], want, rtol=0, atol=1e-12)
    assert [o["label"] for o in got.outputs] == [sm.classes[i] for i in want.argmax(1)]
    np.testing.assert_allclose(list(sm.predict({"rows": rows[:1]}).outputs[0]["probabilities"].values()), want[0], rtol=0, atol=1e-12)
    with pytest.raises(RequestInvalid, match=r"rows\[0\]\.flag: expected a boolean \(true or false\), got a number \(1\)"):
        sm.validate({"rows": [{**rows[0], "flag": 1}]})
    jsonschema.validate(got.to_dict(), sm.response_schema())
    ws.close()
