"""Traffic inside the gateway during a rollout: `mlw serve --env production` follows the environment's traffic table.

A split sends a share of requests to the candidate, sticky by routing key (so one customer meets one model); a
switch to 100% drops no request; shadow mode answers with the primary and logs the candidate's outputs only. The
table is written here the way the deploy stage writes it (one row per endpoint, a rising generation)."""
import datetime as dt
import threading
import time
import zlib

import httpx
import polars as pl
import pytest
import sqlalchemy as sa

from gateway_server import gateway, stop
from mlops_workbench.core.metadata import environment_endpoints
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.experiments.definition import demo_experiment
from mlops_workbench.registry.gates import default_gates
from mlops_workbench.registry.validation import load_run_model, validate_model
from mlops_workbench.registry.versions import register_model
from mlops_workbench.features.online import materialize
from mlops_workbench.security.keys import create_key
from mlops_workbench.serving.inference_log import read_inference_log
from mlops_workbench.training.fit import load_holdout, train

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    ws = Workspace.init(tmp_path_factory.mktemp("traffic") / "ws")
    exp = demo_experiment(ws, n_applications=1200)
    runs = [train(ws, exp, {"num_leaves": n, "n_estimators": 15}, run_name=f"v{i}").run_id for i, n in enumerate((5, 12), 1)]
    for r in runs: register_model(ws, r, "credit_default", validate_model(ws, r, default_gates("binary")), who="test")
    materialize(ws, "customer_spend")
    h = load_holdout(ws, runs[0])
    m = load_run_model(ws, runs[0])
    row = {f: bool(h[f][0]) if f == "last_online" else h[f][0] for f in m.features}
    yield dict(ws=ws, runs=runs, row=row, h=h, key=create_key(ws, "svc", ["predictor"], who="test").key)
    ws.close()


def set_traffic(ws, primary: int, candidate: int | None, share: float, mode: str = "split"):
    "One row for endpoint credit_default in environment production, as the deploy stage writes it."
    t = environment_endpoints
    with ws.metadata.begin() as c:
        gen = (c.execute(sa.select(sa.func.max(t.c.generation))).scalar() or 0) + 1
        c.execute(t.delete().where(t.c.environment == "production", t.c.endpoint == "credit_default"))
        c.execute(t.insert().values(environment="production", endpoint="credit_default", model="credit_default", primary_version=primary,
                                    candidate_version=candidate, candidate_share=share, mode=mode, generation=gen,
                                    updated_at=dt.datetime.now(UTC), updated_by="test"))


def _version(url, key, row, routing_key=None):
    h = {"X-API-Key": key, **({"X-Routing-Key": routing_key} if routing_key else {})}
    r = httpx.post(f"{url}/v1/models/credit_default/predict", json={"rows": [row]}, headers=h, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["model"]["version"], r.json()


def _wait_for(cond, what, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_split_is_sticky_and_a_switch_drops_nothing(two_versions):
    ws, key, row = two_versions["ws"], two_versions["key"], two_versions["row"]
    set_traffic(ws, 1, 2, 0.3)
    with gateway(ws.root, args=["--env", "production"]) as (url, proc):
        keys = [f"customer-{i}" for i in range(200)]
        got = {k: _version(url, key, row, k)[0] for k in keys}
        want = {k: 2 if zlib.crc32(k.encode()) < 0.3 * 2**32 else 1 for k in keys}
        assert got == want  # exactly the hashed share, not roughly
        assert 40 <= sum(v == 2 for v in got.values()) <= 80
        assert all(_version(url, key, row, k)[0] == got[k] for k in keys[:40])  # sticky
        d = httpx.get(f"{url}/v1/models/credit_default", headers={"X-API-Key": key}).json()
        assert d["version"] == 1 and d["candidate"] == {"version": 2, "share": 0.3, "mode": "split"}

        answered, failed, done = [], [], threading.Event()
        def hammer():
            with httpx.Client() as c:
                while not done.is_set():
                    r = c.post(f"{url}/v1/models/credit_default/predict", json={"rows": [row]}, headers={"X-API-Key": key, "X-Routing-Key": "fixed-99"})
                    (answered if r.status_code == 200 else failed).append(r.json()["model"]["version"] if r.status_code == 200 else r.text)
        t = threading.Thread(target=hammer); t.start()
        try:
            time.sleep(0.5)
            set_traffic(ws, 2, None, 0.0)  # blue-green: everything to v2 at once
            _wait_for(lambda: answered and answered[-1] == 2, "the switch to v2 was not served within 30 s")
            time.sleep(0.5)
        finally:
            done.set(); t.join(30)
        assert not failed and answered[-1] == 2 and answered == sorted(answered)  # no request dropped, never back to v1
        assert stop(proc) in (0, -15)


def test_rows_by_key_stick_to_one_model_per_customer(two_versions):
    ws, key, h = two_versions["ws"], two_versions["key"], two_versions["h"]
    set_traffic(ws, 1, 2, 0.5)
    m = load_run_model(ws, two_versions["runs"][0])
    fields = ["amount", "term_months", "purpose", "interest_rate", "channel"]
    with gateway(ws.root, args=["--env", "production"]) as (url, proc):
        seen = {}
        for i in range(60):
            cust = int(h["customer_id"][i % 20])
            row = {f: h[f][i] for f in fields} | {"customer_id": cust}
            v = _version(url, key, row)[0]
            assert seen.setdefault(cust, v) == v, f"customer {cust} met v{seen[cust]} then v{v}"
        assert set(seen.values()) == {1, 2}


def test_shadow_answers_with_the_primary_and_logs_the_candidate(two_versions):
    ws, key, row = two_versions["ws"], two_versions["key"], two_versions["row"]
    set_traffic(ws, 1, 2, 1.0, mode="shadow")
    with gateway(ws.root, args=["--env", "production", "--log_flush_s", "0.2"]) as (url, proc):
        ids = []
        for i in range(15):
            v, body = _version(url, key, row, f"k{i}")
            assert v == 1
            ids.append(body["request_id"])
        assert stop(proc) in (0, -15)
    log = read_inference_log(ws).filter(pl.col("request_id").is_in(ids))
    by = log.group_by("endpoint", "version").len().sort("endpoint").rows()
    assert by == [("credit_default", 1, 15), ("credit_default:shadow", 2, 15)], by
    scores = {v: load_run_model(ws, r) for v, r in enumerate(two_versions["runs"], 1)}
    shadow = log.filter(pl.col("endpoint") == "credit_default:shadow")["prediction"].unique().to_list()
    assert shadow == pytest.approx([scores[2].predict(scores[2].matrix(two_versions["h"][:1]))[0]], abs=1e-12)
