"""The serving gateway as users run it: `mlw serve` processes on loopback, called over HTTP.

One workspace serves two models: the demo's credit model (binary, a feature service with an on-demand view) and a
differently shaped one made here (regression, no id column, text site codes with nulls, dates as strings, features
read by a text key). Credentials are real: API keys from the workspace and bearer JWTs from a real OIDC issuer
process. Also: a served prediction equals the offline point-in-time prediction for the same entity and time, every
bad-input case gets its 4xx, an alias that moves is served without a restart (no request sees half a model), a
Redis online store that dies gives 503s and answers again once it is back, a removed feature service keeps the endpoint unready, SIGTERM drains the
inference log, a real Prometheus scrapes /metrics, and schemathesis fuzzes the OpenAPI document (zero 5xx)."""
import datetime as dt
import json
import socket
import threading
import time
import warnings

import httpx
import numpy as np
import polars as pl
import pytest

from gateway_server import gateway, log_text, stop
from toy import jobs_world
from oidc_issuer import oidc_issuer
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.experiments.definition import demo_experiment
from mlops_workbench.features.offline import get_training_data
from mlops_workbench.features.online import materialize
from mlops_workbench.registry.gates import default_gates
from mlops_workbench.registry.validation import load_run_model, validate_model
from mlops_workbench.registry.versions import register_model
from mlops_workbench.security.audit import read_audit, verify_audit
from mlops_workbench.security.keys import create_key, revoke_key
from mlops_workbench.serving.inference_log import read_inference_log
from mlops_workbench.training.fit import load_holdout, train

UTC = dt.timezone.utc
warnings.filterwarnings("ignore", category=UserWarning)
AUDIENCE = "mlw-gateway"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "A workspace with both models registered and materialized, and API keys of every kind."
    ws = Workspace.init(tmp_path_factory.mktemp("gw") / "ws")
    now = dt.datetime.now(UTC)
    credit = train(ws, demo_experiment(ws, n_applications=1500), {"num_leaves": 7, "n_estimators": 20}, run_name="credit").run_id
    register_model(ws, credit, "credit_default", validate_model(ws, credit, default_gates("binary")), who="test")
    jobs, _ = jobs_world(ws, base=now - dt.timedelta(days=200))  # readings up to now: served features are present, not expired
    materialize(ws, "customer_spend")
    materialize(ws, "site_stats")
    keys_made = time.monotonic()
    keys = {"predictor": create_key(ws, "scoring-service", ["predictor"], who="test").key,
            "viewer": create_key(ws, "analyst", ["viewer"], who="test").key,
            "jobs_only": create_key(ws, "jobs-app", ["predictor"], models=["job_duration"], who="test").key,
            "expiring": create_key(ws, "temp", ["predictor"], expires=dt.timedelta(seconds=2), who="test").key}
    revoked = create_key(ws, "leaver", ["predictor"], who="test")
    revoke_key(ws, revoked.id, who="test")
    keys["revoked"] = revoked.key
    yield dict(ws=ws, credit=credit, jobs=jobs, keys=keys, keys_made=keys_made)
    ws.close()


@pytest.fixture(scope="module")
def issuer():
    with oidc_issuer({"audience": AUDIENCE}) as iss: yield iss


@pytest.fixture(scope="module")
def served(world, issuer):
    "One gateway process for the module: both models, API keys and the OIDC issuer."
    with gateway(world["ws"].root, "credit_default@candidate", "job_duration/1",
                 args=["--oidc_issuer", issuer.url, "--oidc_audience", AUDIENCE, "--log_flush_s", "0.2"]) as (url, proc):
        yield url


def _post(url, endpoint, body, key=None, headers=None, timeout=30):
    h = {"X-API-Key": key} if key else {}
    return httpx.post(f"{url}/v1/models/{endpoint}/predict", json=body, headers={**h, **(headers or {})}, timeout=timeout)


def _credit_row(world):
    "One holdout row of the credit model as a client sends it (booleans as true/false)."
    h = load_holdout(world["ws"], world["credit"])
    m = load_run_model(world["ws"], world["credit"])
    row = {f: h[f][0] for f in m.features}
    return {f: bool(v) if f == "last_online" else v for f, v in row.items()}, h[:1], m


def test_predict_by_features_equals_the_registered_booster(world, served):
    row, frame, m = _credit_row(world)
    r = _post(served, "credit_default", {"rows": [row, row]}, world["keys"]["predictor"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["name"] == "credit_default" and body["model"]["version"] == 1 and r.headers["x-request-id"] == body["request_id"]
    want = m.predict(m.matrix(frame))[0]
    assert [p["score"] for p in body["predictions"]] == pytest.approx([want, want], abs=1e-12)


def test_served_by_key_equals_offline_for_the_same_entity_and_time(world, served):
    ws, key = world["ws"], world["keys"]["jobs_only"]
    ents = pl.DataFrame({"site_code": [f"site-{i:03d}" for i in range(12)] + [None, "site-999"],
                         "crew_size": [1 + i % 5 for i in range(14)], "crew": [["alpha", "beta", "gamma"][i % 3] for i in range(14)]})
    t = dt.datetime.now(UTC)
    r = _post(served, "job_duration", {"rows": ents.to_dicts()}, key)
    assert r.status_code == 200, r.text
    m = load_run_model(ws, world["jobs"])
    offline = m.predict(m.matrix(get_training_data(ws, ents.with_columns(pl.lit(t).alias("event_timestamp")), "site_svc").data))
    got = r.json()["predictions"]
    np.testing.assert_allclose([p["value"] for p in got], offline, rtol=0, atol=1e-9)
    status = [p["feature_status"]["site_stats"]["status"] for p in got]
    assert status[-2:] == ["missing", "missing"] and set(status[:-2]) == {"present"}
    # the demo model by customer key (an on-demand view from the request's amount) answers too, one row and many
    row, frame, _ = _credit_row(world)
    keyed = {k: row[k] for k in ("amount", "term_months", "purpose", "interest_rate", "channel")} | {"customer_id": int(frame["customer_id"][0])}
    r = _post(served, "credit_default", {"rows": [keyed] * 3}, world["keys"]["predictor"])
    assert r.status_code == 200 and len({p["score"] for p in r.json()["predictions"]}) == 1, r.text


@pytest.mark.parametrize("case", ["missing", "malformed_header", "unknown", "revoked", "expired", "viewer", "out_of_scope"])
def test_api_key_failures_are_401_or_403_and_audited(world, served, case):
    row, _, _ = _credit_row(world)
    keys = world["keys"]
    headers = {"missing": {}, "malformed_header": {"Authorization": "Basic dXNlcjpwYXNz"}, "unknown": {"X-API-Key": "mlw_000000000000_" + "A" * 43},
               "revoked": {"X-API-Key": keys["revoked"]}, "expired": {"X-API-Key": keys["expiring"]},
               "viewer": {"X-API-Key": keys["viewer"]}, "out_of_scope": {"X-API-Key": keys["jobs_only"]}}[case]
    if case == "expired": time.sleep(max(0.0, world["keys_made"] + 2.5 - time.monotonic()))  # the key lives 2 s
    r = _post(served, "credit_default", {"rows": [row]}, headers=headers)
    want = 403 if case in ("viewer", "out_of_scope") else 401
    assert r.status_code == want, r.text
    body = r.json()
    assert body["error"] == ("Forbidden" if want == 403 else "Unauthorized") and body["request_id"] == r.headers["x-request-id"]
    if want == 401: assert r.headers["www-authenticate"] == "Bearer"
    for k in keys.values(): assert k.split("_", 2)[2] not in r.text  # no secret part of any key is echoed (the secret itself may hold "_")
    expect = {"revoked": "revoked", "expired": "expired", "unknown": "unknown", "viewer": "needs role predictor", "out_of_scope": "scope"}
    if case in expect: assert expect[case] in body["message"], body["message"]
    deadline = time.monotonic() + 15  # the audit writer is asynchronous
    while time.monotonic() < deadline:
        denied = [d for d in read_audit(world["ws"], action="access.denied").to_dicts() if json.loads(d["detail"] or "{}").get("request_id") == r.headers["x-request-id"]]
        if denied: break
        time.sleep(0.2)
    assert denied and denied[0]["outcome"] == "denied" and denied[0]["resource"] == "endpoint:credit_default"
    assert denied[0]["principal"] == ({"viewer": "analyst", "out_of_scope": "jobs-app"}.get(case, "anonymous"))


def test_oidc_bearer_tokens(world, served, issuer):
    row, _, _ = _credit_row(world)
    ok = issuer.mint(issuer.claims(sub="svc-a", roles=["predictor"]))
    assert _post(served, "credit_default", {"rows": [row]}, headers={"Authorization": f"Bearer {ok}"}).status_code == 200
    viewer = issuer.mint(issuer.claims(sub="bob", roles=["viewer"]))
    assert _post(served, "credit_default", {"rows": [row]}, headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    kid = issuer.rotate()  # the issuer signs with a new key: the gateway fetches the JWKS again on the unknown kid
    rotated = issuer.mint(issuer.claims(sub="svc-a", roles=["predictor"]), kid=kid)
    deadline = time.monotonic() + 30  # JWKS refreshes are rate-limited (one per 10 s): the new key is taken up within that
    while (r := _post(served, "credit_default", {"rows": [row]}, headers={"Authorization": f"Bearer {rotated}"})).status_code != 200:
        assert r.status_code == 401 and r.json()["reason"] == "unknown_kid" and time.monotonic() < deadline, r.text
        time.sleep(0.5)
    now = int(time.time())
    bad = {"expired": issuer.mint(issuer.claims(roles=["predictor"], iat=now - 7200, nbf=now - 7200, exp=now - 3600)),
           "audience": issuer.mint(issuer.claims(aud="someone-else", roles=["predictor"])),
           "alg_none": issuer.mint(issuer.claims(roles=["predictor"]), alg="none"),
           "hs256_confusion": issuer.mint(issuer.claims(roles=["predictor"]), alg="HS256"),
           "unknown_kid": issuer.mint(issuer.claims(roles=["predictor"]), headers={"kid": "no-such-key"}),
           "garbage": "not.a.jwt"}
    for why, token in bad.items():
        r = _post(served, "credit_default", {"rows": [row]}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (why, r.text)


def test_bad_requests_get_4xx_naming_the_problem(world, served):
    row, _, _ = _credit_row(world)
    key = world["keys"]["predictor"]
    cases = {
        "wrong type": ({"rows": [{**row, "amount": "lots"}]}, 422, "amount"),
        "bool is not a number": ({"rows": [{**row, "term_months": True}]}, 422, "term_months"),
        "missing field": ({"rows": [{k: v for k, v in row.items() if k != "interest_rate"}]}, 422, "interest_rate"),
        "unknown field": ({"rows": [{**row, "shoe_size": 44}]}, 422, "shoe_size"),
        "unseen level": ({"rows": [{**row, "channel": "fax"}]}, 422, "channel"),
        "empty batch": ({"rows": []}, 422, "rows"),
        "rows not a list": ({"rows": {"a": 1}}, 422, "rows"),
        "body not an object": ([row], 422, "object"),
        "too many rows": ({"rows": [row] * 1001}, 422, "max_batch 1,000"),
    }
    for why, (body, status, names) in cases.items():
        r = _post(served, "credit_default", body, key)
        assert r.status_code == status and names in r.json()["message"], (why, r.status_code, r.text)
    nan = json.dumps({"rows": [{**row, "amount": 1.0}]}).replace("1.0", "NaN", 1)
    for literal in ("NaN", "Infinity", "-Infinity"):
        r = httpx.post(f"{served}/v1/models/credit_default/predict", content=nan.replace("NaN", literal),
                       headers={"X-API-Key": key, "content-type": "application/json"}, timeout=30)
        assert r.status_code == 422 and "amount" in r.text, (literal, r.text)
    r = httpx.post(f"{served}/v1/models/credit_default/predict", content=b'{"rows": [', headers={"X-API-Key": key, "content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = httpx.post(f"{served}/v1/models/credit_default/predict", content=b"\xff\xfe", headers={"X-API-Key": key, "content-type": "application/json"})
    assert r.status_code == 400
    r = httpx.post(f"{served}/v1/models/credit_default/predict", content=json.dumps({"rows": [row]}), headers={"X-API-Key": key, "content-type": "text/csv"})
    assert r.status_code == 415 and "application/json" in r.json()["message"]
    assert _post(served, "churn", {"rows": [row]}, key).status_code == 404
    assert httpx.get(f"{served}/v1/models/credit_default/predict", headers={"X-API-Key": key}).status_code == 405
    assert httpx.get(f"{served}/nowhere").json()["error"] == "NotFound"


def _raw_request(url: str, head: bytes, body_chunks, read_timeout: float = 30) -> bytes:
    "Send a hand-made request over a socket (a client that keeps sending while the server answers) and read the answer."
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as s:
        s.sendall(head)
        try:
            for chunk in body_chunks: s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError): pass  # the server answered and closed: what we want
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < 12:
                got = s.recv(65536)
                if not got: break
                data += got
        except ConnectionResetError: pass
        return data


def test_a_100_mb_body_is_refused_with_413(world, served):
    key = world["keys"]["predictor"].encode()
    size = 100 * 1024 * 1024
    head = (b"POST /v1/models/credit_default/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-API-Key: " + key +
            b"\r\nContent-Length: " + str(size).encode() + b"\r\n\r\n")
    answer = _raw_request(served, head, (b"[" * 1024 * 1024 for _ in range(4)))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    chunked = (b"POST /v1/models/credit_default/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-API-Key: " + key +
               b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"100000\r\n" + b" " * 0x100000 + b"\r\n"  # 1 MiB chunks: the limit is passed on the second
    answer = _raw_request(served, chunked, (piece for _ in range(100)))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert httpx.get(f"{served}/healthz").status_code == 200  # and the gateway is fine


def test_metadata_health_openapi(world, served):
    key = world["keys"]["viewer"]
    assert httpx.get(f"{served}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{served}/readyz").json() == {"ready": True, "waiting": {}}
    eps = httpx.get(f"{served}/v1/models", headers={"X-API-Key": key}).json()["endpoints"]
    assert {(e["endpoint"], e["model"], e["version"], e["ready"]) for e in eps} == {("credit_default", "credit_default", 1, True), ("job_duration", "job_duration", 1, True)}
    d = httpx.get(f"{served}/v1/models/job_duration", headers={"X-API-Key": key}).json()
    assert d["task"] == "regression" and "temp_per_crew" in d["features"]
    assert httpx.get(f"{served}/v1/models").status_code == 401
    doc = httpx.get(f"{served}/openapi.json").json()
    schema = doc["paths"]["/v1/models/job_duration/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["rows"]["maxItems"] == 1000
    assert set(doc["components"]["securitySchemes"]) == {"apiKey", "bearer"}


def test_fuzzing_from_the_openapi_document_finds_no_5xx(world, served):
    "schemathesis generates valid and invalid requests for every operation of the document: none may get a 5xx."
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json")
    key, failures, calls = world["keys"]["predictor"], [], [0]
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case):
                r = case.call(base_url=served, headers={"X-API-Key": key}, timeout=30)
                calls[0] += 1
                if r.status_code >= 500: failures.append((mode.name, case.method, case.path, r.status_code, r.text[:300]))
            try: check()
            except Unsatisfiable: assert mode is GenerationMode.NEGATIVE  # nothing to break in an operation without inputs
    assert calls[0] > 200 and not failures, failures[:5]
    assert httpx.get(f"{served}/healthz").status_code == 200


def test_metrics_are_scraped_by_a_real_prometheus(world, served):
    from prometheus_server import prometheus_server
    row, _, _ = _credit_row(world)
    before = _counter(httpx.get(f"{served}/metrics").text, 'route="/v1/models/{name}/predict",status="200"')
    for _ in range(25): assert _post(served, "credit_default", {"rows": [row]}, world["keys"]["predictor"]).status_code == 200
    with prometheus_server([served.split("//")[1]]) as prom:
        q = 'sum(mlw_gateway_requests_total{route="/v1/models/{name}/predict",status="200",model="credit_default"})'
        got = prom.wait_for(q, before + 25, timeout_s=60)
        assert got == before + 25
        assert prom.value('sum(mlw_gateway_request_duration_seconds_count{model="credit_default"})') >= 25
        assert prom.value('mlw_gateway_model_loaded{model="job_duration",version="1"}') == 1


def _counter(text: str, labels: str) -> float:
    "Sum of the credit model's predict request counters in a /metrics text with these labels."
    total = 0.0
    for line in text.splitlines():
        if line.startswith("mlw_gateway_requests_total{") and 'model="credit_default"' in line and all(p in line for p in labels.split(",")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_sigterm_drains_the_inference_log_and_logs_are_json(world, issuer):
    ws = world["ws"]
    row, _, _ = _credit_row(world)
    with gateway(ws.root, "credit_default@candidate", args=["--log_flush_s", "60"]) as (url, proc):
        ids = [_post(url, "credit_default", {"rows": [row, row]}, world["keys"]["predictor"]).json()["request_id"] for _ in range(40)]
        assert stop(proc) in (0, -15)  # uvicorn re-raises the SIGTERM it handled, after its graceful shutdown
        text = log_text(ws.root, url)
    log = read_inference_log(ws, model="credit_default").filter(pl.col("request_id").is_in(ids))
    assert log.height == 80 and sorted(set(log["request_id"])) == sorted(ids)  # the 60 s flush interval never came: all from the drain
    assert set(log["caller"]) == {"scoring-service"} and log["latency_us"].min() > 0 and log["features"].null_count() == 0
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(d) for d in lines)
    assert world["keys"]["predictor"].split("_", 2)[2] not in text


def test_an_alias_that_moves_is_served_without_restart(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    exp = demo_experiment(ws, n_applications=1200)
    runs = [train(ws, exp, {"num_leaves": n, "n_estimators": 15}, run_name=f"v{i}").run_id for i, n in enumerate((5, 12), 1)]
    register_model(ws, runs[0], "credit_default", validate_model(ws, runs[0], default_gates("binary")), who="test")
    key = create_key(ws, "svc", ["predictor"], who="test").key
    h = load_holdout(ws, runs[0])
    boosters = {v: load_run_model(ws, r) for v, r in enumerate(runs, 1)}
    row = {f: bool(h[f][0]) if f == "last_online" else h[f][0] for f in boosters[1].features}
    want = {v: m.predict(m.matrix(h[:1]))[0] for v, m in boosters.items()}
    assert abs(want[1] - want[2]) > 1e-6
    seen, bad, done = [], [], threading.Event()
    with gateway(ws.root, "credit_default@candidate") as (url, proc):
        def hammer():
            with httpx.Client() as c:
                while not done.is_set():
                    r = c.post(f"{url}/v1/models/credit_default/predict", json={"rows": [row]}, headers={"X-API-Key": key})
                    if r.status_code != 200: bad.append(r.text); continue
                    b = r.json()
                    v = b["model"]["version"]
                    seen.append(v)
                    if abs(b["predictions"][0]["score"] - want[v]) > 1e-12: bad.append(("half a model?", v, b))
        t = threading.Thread(target=hammer)
        t.start()
        try:
            time.sleep(1)
            register_model(ws, runs[1], "credit_default", validate_model(ws, runs[1], default_gates("binary")), who="test")  # candidate -> v2
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (not seen or seen[-1] != 2): time.sleep(0.2)
            time.sleep(0.5)
        finally:
            done.set(); t.join(30)
    assert not bad, bad[:3]
    assert seen[0] == 1 and seen[-1] == 2 and seen == sorted(seen)  # never back to v1 once v2 answered
    loads = read_audit(ws, action="model.load")
    assert [json.loads(d)["version"] for d in loads["detail"].to_list()] == [1, 2]
    assert verify_audit(ws).ok


def test_a_removed_feature_service_keeps_the_endpoint_unready(tmp_path):
    import sqlalchemy as sa
    from mlops_workbench.core.metadata import feature_services
    ws = Workspace.init(tmp_path / "ws")
    run = train(ws, demo_experiment(ws, n_applications=1000), {"num_leaves": 5, "n_estimators": 10}, run_name="gone").run_id
    register_model(ws, run, "credit_default", validate_model(ws, run, default_gates("binary")), who="test")
    with ws.metadata.begin() as c: c.execute(sa.delete(feature_services).where(feature_services.c.name == "credit_v1"))
    with gateway(ws.root, "credit_default@candidate", ready=False) as (url, proc):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = httpx.get(f"{url}/readyz")
            if r.json()["waiting"].get("credit_default", "loading") != "loading": break
            time.sleep(0.2)
        assert r.status_code == 503 and "credit_v1" in r.json()["waiting"]["credit_default"], r.text
        key = create_key(ws, "svc", ["predictor"], who="test").key
        p = _post(url, "credit_default", {"rows": [{}]}, key)
        assert p.status_code == 503 and "credit_v1" in p.json()["message"]


def test_an_online_store_that_dies_gives_503_not_a_hang_and_recovers(tmp_path):
    "Redis stops: keyed requests answer 503 (not a hang); it starts again on its port with its append-only file: they answer as before."
    from redis_server import redis_server
    folder, durable = tmp_path / "redis", ("--appendonly", "yes", "--appendfsync", "always")
    folder.mkdir()
    with redis_server(*durable, folder=folder) as uri:
        ws = Workspace.init(tmp_path / "ws", backends={"online": uri})
        run = train(ws, demo_experiment(ws, n_applications=1000), {"num_leaves": 5, "n_estimators": 10}, run_name="redis").run_id
        register_model(ws, run, "credit_default", validate_model(ws, run, default_gates("binary")), who="test")
        materialize(ws, "customer_spend")
        key = create_key(ws, "svc", ["predictor"], who="test").key
        h = load_holdout(ws, run)
        m = load_run_model(ws, run)
        row = {f: bool(h[f][0]) if f == "last_online" else h[f][0] for f in m.features}
        keyed = {k: row[k] for k in ("amount", "term_months", "purpose", "interest_rate", "channel")} | {"customer_id": int(h["customer_id"][0])}
        with gateway(ws.root, "credit_default@candidate") as (url, proc):
            before = _post(url, "credit_default", {"rows": [keyed]}, key)
            assert before.status_code == 200, before.text
            import redis
            with redis.Redis.from_url(uri) as r: r.shutdown(nosave=True)
            time.sleep(0.3)
            t0 = time.monotonic()
            r = _post(url, "credit_default", {"rows": [keyed]}, key, timeout=30)
            assert r.status_code == 503 and "online store" in r.json()["message"], r.text
            assert time.monotonic() - t0 < 25  # answered, not hung until the client gave up (a bound, not a timing)
            assert _post(url, "credit_default", {"rows": [row]}, key).status_code == 200  # rows by features still score
            with redis_server(*durable, folder=folder, port=int(uri.rsplit(":", 1)[1].split("/")[0])):  # back, with its data
                after = _post(url, "credit_default", {"rows": [keyed]}, key)
                assert after.status_code == 200, after.text
                same = lambda body: [(p["score"], p["label"], {v: f["status"] for v, f in p["feature_status"].items()}) for p in body["predictions"]]
                assert same(after.json()) == same(before.json())  # the same features found again (the reasons name the time of asking)


def test_two_workers_share_the_port_and_both_log(world):
    ws = world["ws"]
    row, _, _ = _credit_row(world)
    with gateway(ws.root, "credit_default@candidate", args=["--workers", "2"]) as (url, proc):
        ids = set()
        with httpx.Client() as c:
            for _ in range(60):
                ids.add(_post(url, "credit_default", {"rows": [row]}, world["keys"]["predictor"]).json()["request_id"])
        text = httpx.get(f"{url}/metrics").text
        assert stop(proc) in (0, -15)  # uvicorn re-raises the SIGTERM it handled, after its graceful shutdown
    assert _counter(text, 'route="/v1/models/{name}/predict",status="200"') >= 60
    log = read_inference_log(ws).filter(pl.col("request_id").is_in(list(ids)))
    assert log.height == 60


def test_spans_for_each_step_of_a_request(world, tmp_path):
    "With --tracing, each predict is one trace: a request span (joining the caller's traceparent) over auth, validate, features, predict, log."
    row, _, _ = _credit_row(world)
    spans_file = tmp_path / "spans.jsonl"
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with gateway(world["ws"].root, "credit_default@candidate", args=["--tracing", f"file://{spans_file}"]) as (url, proc):
        r = _post(url, "credit_default", {"rows": [row]}, world["keys"]["predictor"], headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        assert r.status_code == 200
        rid = r.json()["request_id"]
        assert stop(proc) in (0, -15)
    spans = [json.loads(line) for line in spans_file.read_text().splitlines() if line.strip()]
    mine = [s for s in spans if s["attributes"].get("request_id") == rid]
    names = {s["name"]: s for s in mine}
    assert set(names) == {"POST /v1/models/{name}/predict", "auth", "validate", "features", "predict", "log"}, sorted(names)
    root = names["POST /v1/models/{name}/predict"]
    assert root["context"]["trace_id"] == "0x" + trace_id and root["parent_id"] == "0x00f067aa0ba902b7"  # the caller's trace, continued
    for n in ("auth", "validate", "features", "predict", "log"): assert names[n]["parent_id"] == root["context"]["span_id"], n
    assert names["predict"]["attributes"]["model"] == "credit_default" and names["predict"]["attributes"]["rows"] == 1


def test_serving_an_unknown_model_or_alias_fails_before_listening(world):
    import subprocess, sys
    from pathlib import Path
    mlw = str(Path(sys.executable).with_name("mlw"))
    for ref, why in [("churn@production", "model 'churn' not found"), ("credit_default@production", "has no alias 'production' (aliases: candidate -> v1)"),
                     ("credit_default/9", "has no version 9"), ("credit_default", "names no alias or version")]:
        p = subprocess.run([mlw, "serve", ref, "--workspace", str(world["ws"].root)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and why in p.stderr and "Traceback" not in p.stderr, (ref, p.stderr)  # a user error, as every verb
