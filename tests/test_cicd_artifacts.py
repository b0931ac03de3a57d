"""Build artifacts (`cicd.artifacts`) as CI uses them: bundles, locks, build contexts and manifests of real registered
models, served over loopback HTTP with no workspace, and once from a fresh virtualenv.

Two differently shaped models: the demo's credit model (binary, integer customer ids, a feature service with an
on-demand view, a boolean input; registered twice so the bundle of v2 must keep its version number) and `job_duration`
(tests/toy.py: regression, no id column, text site codes with nulls, dates as strings, a text categorical). Both:
two builds are byte-identical; the Dockerfile parses and every COPY source is in the context; the Deployment and
Service pass Kubernetes' OpenAPI schemas in strict mode (kubernetes-validate) and load into the kubernetes client's
models; the KServe InferenceService fits KServe v1beta1's shapes field by field (from the `kserve` SDK wheel's generated
models, read with `ast`: needs PyPI or pip's cache) with its Kubernetes parts against Kubernetes' schemas; the build
is recorded on the model version and in the audit log; a served bundle scores rows with their features exactly as
the original version does offline (1e-9).

`test_fresh_virtualenv_serves_the_bundle` is the proof of the lock: it needs PyPI (or pip's cache) and takes minutes.
It prints how long each step took (never asserted)."""
import datetime as dt
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import free_port
from toy import jobs_world
from mlops_workbench.cicd.artifacts import (BundleTampered, build_artifacts, bundle_workspace, get_artifacts, locked_packages,
                                            open_bundle, verify_bundle)
from mlops_workbench.core.errors import Conflict, InvalidInput, NotFound
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.deploy.checks import request_rows
from mlops_workbench.experiments.definition import demo_experiment
from mlops_workbench.registry.gates import default_gates
from mlops_workbench.registry.validation import load_run_model, validate_model
from mlops_workbench.registry.versions import register_model
from mlops_workbench.security.audit import read_audit
from mlops_workbench.security.keys import create_key
from mlops_workbench.serving.model import load_served_model
from mlops_workbench.training.fit import load_holdout, train

UTC = dt.timezone.utc
ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
K8S_VERSION = "1.37.0"
KSERVE_VERSION = "0.21.0"
warnings.filterwarnings("ignore", category=UserWarning)
MODELS = {"credit": "credit_default/2", "jobs": "job_duration/1"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "Credit v1 and v2, the jobs model; each built once (the credit model twice, to compare)."
    tmp = tmp_path_factory.mktemp("artifacts")
    ws = Workspace.init(tmp / "ws")
    exp = demo_experiment(ws, n_applications=1500)
    runs = {}
    for i, p in enumerate(({"num_leaves": 7, "n_estimators": 10}, {"num_leaves": 15, "n_estimators": 30}), 1):
        runs[f"credit_default/{i}"] = r = train(ws, exp, p, run_name=f"v{i}").run_id
        register_model(ws, r, "credit_default", validate_model(ws, r, default_gates("binary")), who="test")
    runs["job_duration/1"], _ = jobs_world(ws)
    built = {k: build_artifacts(ws, ref, tmp / f"{k}-a", who="ci") for k, ref in MODELS.items()}
    yield dict(ws=ws, tmp=tmp, runs=runs, built=built)
    ws.close()


def _offline(ws, run_id, n=100):
    "JSON rows of the run's holdout as a client sends them, and the booster's offline scores of the same rows."
    sm = load_served_model(ws, _ref_of(ws, run_id))
    m, h = load_run_model(ws, run_id), load_holdout(ws, run_id)
    idx, rows = request_rows(sm, h, n)
    return rows, m.predict(m.matrix(h[idx])).reshape(len(idx), -1)


def _ref_of(ws, run_id):
    c = ws.backend("tracking").client
    mv = c.search_model_versions(f"run_id = '{run_id}'")[0]
    return f"{mv.name}/{mv.version}"


def _scores(body, task):
    import numpy as np
    if task == "regression": return np.array([[p["value"]] for p in body["predictions"]])
    return np.array([[p["score"]] for p in body["predictions"]])


# ---------------------------------------------------------------- reproducible bundles

@pytest.mark.parametrize("kind", list(MODELS))
def test_two_builds_are_byte_identical(world, kind):
    a = world["built"][kind]
    b = build_artifacts(world["ws"], MODELS[kind], world["tmp"] / f"{kind}-b", who="someone-else")
    assert a.bundle_tar.read_bytes() == b.bundle_tar.read_bytes() and a.bundle_sha256 == b.bundle_sha256
    same = {f for f in a.files if f != "artifacts.json"}
    assert {f: a.files[f] for f in same} == {f: b.files[f] for f in same}
    raw = a.bundle_tar.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header: no time
    with tarfile.open(a.bundle_tar) as t:
        ms = t.getmembers()
        assert [m.name for m in ms] == ["bundle"] + sorted(m.name for m in ms[1:])
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in ms} == {(0, 0, 0, "", "")}
    assert a.verify() == [] and b.verify() == []


@pytest.mark.parametrize("kind", list(MODELS))
def test_the_bundle_holds_what_serving_needs(world, kind):
    ws, a = world["ws"], world["built"][kind]
    d = a.bundle_dir
    manifest = verify_bundle(d)
    assert sorted(manifest["files"]) == sorted(["booster.txt", "model.json", "encodings.json", "signature.json", "features.json", "model_card.md"])
    sm = load_served_model(ws, MODELS[kind])
    model = json.loads((d / "model.json").read_text())
    assert (model["name"], model["version"], model["features"], model["types"]) == (sm.name, sm.version, sm.features, sm.types)
    assert json.loads((d / "encodings.json").read_text()) == sm.categorical and sm.categorical
    assert json.loads((d / "signature.json").read_text())["request"] == json.loads(json.dumps(sm.request_schema()))
    feats = json.loads((d / "features.json").read_text())
    svc, views = {"credit": ("credit_v1", {"customer_spend", "application_ctx"}), "jobs": ("site_svc", {"site_stats", "job_load"})}[kind]
    assert feats["service"]["name"] == svc and set(feats["views"]) >= ({"site_stats", "job_load"} if kind == "jobs" else {"customer_spend"})
    assert feats["entity_keys"] == sm.entity_keys and feats["entities"]
    card = (d / "model_card.md").read_text()
    assert "## Metrics" in card and "## Validation" in card and "## Intended use" in card and "## Data" in card
    assert (d / "booster.txt").read_text().startswith("tree")


def test_the_lock_pins_the_serving_path_only(world):
    a = world["built"]["credit"]
    text = a.path("requirements.lock").read_text()
    lines = [l for l in text.splitlines() if l and not l.startswith("#")]
    assert text.startswith(f"# python {sys.version.split()[0]}")
    pins = dict(l.split("==") for l in lines)
    assert all(len(l.split("==")) == 2 for l in lines)
    from importlib.metadata import version
    assert all(version(n) == v for n, v in pins.items())
    low = {n.lower().replace("_", "-") for n in pins}
    assert {"lightgbm", "mlflow", "uvicorn", "uvloop", "starlette", "polars", "deltalake"} <= low
    assert not low & {"jupyterlab", "panel", "playwright", "pytest", "voila", "dask", "nbdev"}, low & {"jupyterlab", "panel", "playwright", "pytest", "voila", "dask", "nbdev"}
    assert pins == locked_packages()


# ---------------------------------------------------------------- container context

@pytest.mark.parametrize("kind", list(MODELS))
def test_the_dockerfile_parses_and_copies_files_of_its_context(world, kind):
    from dockerfile_parse import DockerfileParser
    a = world["built"][kind]
    p = DockerfileParser(path=str(a.path("Dockerfile")))
    ins = [(i["instruction"], i["value"]) for i in p.structure if i["instruction"] != "COMMENT"]
    assert [i for i, _ in ins][:1] == ["FROM"] and p.baseimage == f"python:{sys.version.split()[0]}-slim"
    assert json.loads(dict(ins)["CMD"]) == ["mlw", "serve", "--bundle", "/bundle", "--host", "0.0.0.0", "--port", "8000"]
    ignored = [l.strip().rstrip("/") for l in a.path(".dockerignore").read_text().splitlines() if l.strip()]
    copies = [v.split()[:-1] for i, v in ins if i == "COPY"]
    assert copies and all(srcs for srcs in copies)
    for srcs in copies:
        for s in srcs:
            assert a.path(s).exists(), f"COPY {s}: not in the context"
            assert s.rstrip("/") not in ignored
    assert "USER" in dict(ins) and "HEALTHCHECK" in dict(ins)
    assert dict(ins)["USER"] == "10001"


# ---------------------------------------------------------------- Kubernetes manifests

def _docs(a, f): return [d for d in yaml.safe_load_all(a.path("k8s", f).read_text()) if d]


@pytest.mark.parametrize("kind", list(MODELS))
def test_deployment_and_service_pass_the_kubernetes_schemas(world, kind):
    """kubernetes-validate: Kubernetes' own OpenAPI schemas as JSON Schema, strict (an unknown field fails); then the
    kubernetes client's models, which read the same YAML into V1Deployment/V1Service."""
    import kubernetes_validate
    from kubernetes.client import ApiClient
    a = world["built"][kind]
    dep, svc = _docs(a, "deployment.yaml")
    for d in (dep, svc): kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    bad = json.loads(json.dumps(dep))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}  # misspelt: a lax check would pass it
    with pytest.raises(kubernetes_validate.ValidationError): kubernetes_validate.validate(bad, K8S_VERSION, strict=True)

    api = ApiClient()
    d, s = (api.deserialize(json.dumps(x), t, "application/json") for x, t in ((dep, "V1Deployment"), (svc, "V1Service")))
    c = d.spec.template.spec.containers[0]
    assert (c.readiness_probe.http_get.path, c.liveness_probe.http_get.path, c.startup_probe.http_get.path) == ("/readyz", "/healthz", "/readyz")
    assert c.env[0].value_from.secret_key_ref.name == "mlw-api-key" and c.env[0].name == "MLW_API_KEY"
    assert c.resources.requests["cpu"] and c.resources.limits["memory"]
    assert d.spec.selector.match_labels.items() <= d.spec.template.metadata.labels.items()
    assert s.spec.selector == d.spec.selector.match_labels and s.spec.ports[0].target_port == c.ports[0].name
    assert c.image == f"{ {'credit': 'credit-default', 'jobs': 'job-duration'}[kind] }:v{a.version}".replace(" ", "")


def _k8s_validator(name: str):
    "Kubernetes' schema of type `name` (e.g. 'container-v1'), kubernetes-validate's local strict copy, $refs resolved from its folder."
    import jsonschema, kubernetes_validate
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{K8S_VERSION}-local-strict"
    def retrieve(uri): return Resource(json.loads((folder / uri.rsplit("/", 1)[-1]).read_text()), DRAFT202012)
    return jsonschema.Draft202012Validator(json.loads((folder / f"{name}.json").read_text()), registry=Registry(retrieve=retrieve))


@pytest.fixture(scope="module")
def kserve_shapes(tmp_path_factory):
    """The KServe CRD's shapes, as the `kserve` SDK's generated models state them (`openapi_types`, `attribute_map`).

    The SDK cannot be installed beside the workbench (it pins psutil<6 and pulls its model server, gRPC and FastAPI), so
    its wheel is fetched with `pip download --no-deps` (pip's cache: offline after the first run) and its model files
    are read with `ast`, never imported."""
    import ast, zipfile
    d = tmp_path_factory.mktemp("kserve")
    p = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(d), f"kserve=={KSERVE_VERSION}"], capture_output=True, text=True)
    assert p.returncode == 0, f"the KServe SDK wheel could not be fetched (needs PyPI or pip's cache): {p.stderr[-2000:]}"
    (whl,) = d.glob("kserve-*.whl")
    shapes = {}
    with zipfile.ZipFile(whl) as z:
        for n in z.namelist():
            if not (n.startswith("kserve/models/v1") and n.endswith(".py")): continue
            for cls in ast.parse(z.read(n)).body:
                if not isinstance(cls, ast.ClassDef): continue
                maps = {t.targets[0].id: ast.literal_eval(t.value) for t in cls.body
                        if isinstance(t, ast.Assign) and isinstance(t.targets[0], ast.Name) and t.targets[0].id in ("openapi_types", "attribute_map")}
                if len(maps) == 2: shapes[cls.name] = {maps["attribute_map"][k]: t for k, t in maps["openapi_types"].items()}
    assert "V1beta1InferenceService" in shapes and "V1beta1PredictorSpec" in shapes, sorted(shapes)[:20]
    return shapes


def _kserve_errors(value, typ: str, shapes: dict, path: str = "") -> list[str]:
    "Where `value` does not fit KServe type `typ`: unknown fields, wrong types; Kubernetes types by Kubernetes' schemas."
    if typ.startswith("list["):
        if not isinstance(value, list): return [f"{path}: expected a list"]
        return [e for i, v in enumerate(value) for e in _kserve_errors(v, typ[5:-1], shapes, f"{path}[{i}]")]
    if typ.startswith("dict("):
        if not isinstance(value, dict): return [f"{path}: expected a map"]
        inner = typ[5:-1].split(",", 1)[1].strip()
        return [e for k, v in value.items() for e in _kserve_errors(v, inner, shapes, f"{path}.{k}")]
    simple = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
    if typ in simple:
        ok = isinstance(value, simple[typ]) and not (typ in ("int", "float") and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {typ}, got {type(value).__name__}"]
    if typ in shapes:
        if not isinstance(value, dict): return [f"{path}: expected an object ({typ})"]
        fields = shapes[typ]
        out = [f"{path}.{k}: not a field of {typ}" for k in value if k not in fields]
        return out + [e for k, v in value.items() if k in fields for e in _kserve_errors(v, fields[k], shapes, f"{path}.{k}")]
    if typ.startswith("V1"):  # a Kubernetes core type
        name = typ[2:].lower()
        for f in (f"{name}-v1", f"{name}-meta-v1"):
            try: v = _k8s_validator(f)
            except FileNotFoundError: continue
            return [f"{path}: {e.message}" for e in v.iter_errors(value)]
    return [f"{path}: type {typ} is unknown to this check"]


@pytest.mark.parametrize("kind", list(MODELS))
def test_the_inferenceservice_fits_the_kserve_crd(world, kind, kserve_shapes):
    """The InferenceService against KServe v1beta1's shapes (from the SDK's generated models): every field known, every
    type right, and the Kubernetes parts (metadata, containers, volumes) against Kubernetes' own schemas, strict."""
    a = world["built"][kind]
    (isvc,) = _docs(a, "inferenceservice.yaml")
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert _kserve_errors(isvc, "V1beta1InferenceService", kserve_shapes) == []
    pred = isvc["spec"]["predictor"]
    assert 1 <= pred["minReplicas"] <= pred["maxReplicas"] and pred["containers"][0]["name"] == "kserve-container"
    assert [m["name"] for m in pred["containers"][0]["volumeMounts"]] == [vol["name"] for vol in pred["volumes"]]
    bad = json.loads(json.dumps(isvc))
    bad["spec"]["predictor"]["minReplica"] = 1  # misspelt
    bad["spec"]["predictor"]["containers"][0]["imagePullPolicey"] = "Always"
    bad["spec"]["predictor"]["maxReplicas"] = "3"
    errs = _kserve_errors(bad, "V1beta1InferenceService", kserve_shapes)
    assert any("minReplica: not a field" in e for e in errs) and any("imagePullPolicey" in e for e in errs) and any("maxReplicas: expected int" in e for e in errs), errs


# ---------------------------------------------------------------- recorded with the version

def test_the_build_is_recorded_with_the_version_and_audited(world):
    ws, a = world["ws"], world["built"]["jobs"]
    got = get_artifacts(ws, "job_duration/1")
    assert got.bundle_sha256 == a.bundle_sha256 and got.built_by in ("ci", "someone-else")
    mv = ws.backend("tracking").client.get_model_version("job_duration", "1")
    assert json.loads(mv.tags["mlw.artifacts"])["bundle_sha256"] == a.bundle_sha256
    rows = read_audit(ws, action="artifacts.build")
    assert "model:job_duration" in rows["resource"].to_list() and "model:credit_default" in rows["resource"].to_list()
    with pytest.raises(NotFound, match="no recorded build"): get_artifacts(ws, "credit_default/1")
    assert json.loads(a.path("artifacts.json").read_text())["bundle_sha256"] == a.bundle_sha256


# ---------------------------------------------------------------- bad input

def test_bad_builds_are_refused_and_write_nothing(world):
    ws, tmp = world["ws"], world["tmp"]
    with pytest.raises(NotFound, match="not found"): build_artifacts(ws, "no_such_model/1", tmp / "x1")
    with pytest.raises(NotFound, match="no version 9"): build_artifacts(ws, "credit_default/9", tmp / "x2")
    with pytest.raises(NotFound, match="no alias 'production'"): build_artifacts(ws, "credit_default@production", tmp / "x3")
    with pytest.raises(InvalidInput, match="not a model name|alias"): build_artifacts(ws, "credit default", tmp / "x4")
    busy = tmp / "busy"; busy.mkdir(); (busy / "notes.txt").write_text("mine")
    with pytest.raises(Conflict, match="exists and is not empty"): build_artifacts(ws, "credit_default/1", busy)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    (tmp / "afile").write_text("x")
    with pytest.raises(Conflict): build_artifacts(ws, "credit_default/1", tmp / "afile")
    # a version whose run has no booster (registered outside training.train)
    c = ws.backend("tracking").client
    rid = c.create_run(ws.backend("tracking").experiment_id("outside"), tags={"mlw.task": "binary"}).info.run_id
    c.log_text(rid, "not a model", "notes/readme.txt")
    c.create_registered_model("outsider")
    c.create_model_version("outsider", f"runs:/{rid}/notes", run_id=rid)
    with pytest.raises(InvalidInput, match="has no booster"): build_artifacts(ws, "outsider/1", tmp / "x5")
    assert not [p for p in tmp.iterdir() if p.name.startswith((".x", "x"))]
    empty = tmp / "empty"; empty.mkdir()  # an empty folder is fine
    assert build_artifacts(ws, "credit_default/1", empty).verify() == []


def test_a_tampered_bundle_is_refused(world):
    a, tmp = world["built"]["credit"], world["tmp"]
    for i, change in enumerate([lambda d: (d / "booster.txt").write_text((d / "booster.txt").read_text().replace("leaf_value=", "leaf_value=1", 1)),
                                lambda d: (d / "model.json").unlink(),
                                lambda d: (d / "extra.py").write_text("import os")]):
        d = tmp / f"tampered{i}"
        shutil.copytree(a.bundle_dir, d)
        change(d)
        with pytest.raises(BundleTampered, match="does not match its manifest"): bundle_workspace(d, tmp / f"tw{i}")
        assert not (tmp / f"tw{i}").exists()
    # the tarball: one byte of one member changed
    raw = io.BytesIO()
    with tarfile.open(a.bundle_tar) as src, tarfile.open(fileobj=raw, mode="w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name == "bundle/encodings.json": data = data.replace(b'"', b"'", 1)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    bad_tar = tmp / "tampered.tar.gz"; bad_tar.write_bytes(raw.getvalue())
    with pytest.raises(BundleTampered, match="encodings.json"): open_bundle(bad_tar, tmp / "unpacked")
    with pytest.raises(NotFound, match="not found"): open_bundle(tmp / "nowhere")
    with pytest.raises(InvalidInput, match="not an mlops-workbench key"): bundle_workspace(a.bundle_dir, tmp / "tw-key", api_key="hunter2")


# ---------------------------------------------------------------- served with no workspace

def _serve(python, bundle, port, key, cwd, log):
    "The Dockerfile's command, `mlw serve --bundle`, from the environment of `python`; returns the process once /readyz answers 200."
    cmd = [str(Path(python).with_name("mlw")), "serve", "--bundle", str(bundle), "--port", str(port), "--log_flush_s", "0.2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLW_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env["MLW_API_KEY"] = key
    env["TMPDIR"] = str(Path(log).with_suffix(".tmp")); os.makedirs(env["TMPDIR"])  # its throwaway workspace, removed when it stops
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None: raise AssertionError(f"the bundle server exited {proc.returncode}: {Path(log).read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200: return proc
        except httpx.HTTPError: pass
        if time.monotonic() > deadline:
            proc.kill(); raise AssertionError(f"the bundle server was not ready in 180 s: {Path(log).read_text()[-3000:]}")
        time.sleep(0.2)


def _stop(proc):
    proc.terminate()
    try: proc.wait(60)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait(10)


def _check_http(world, kind, port, key):
    ws, ref = world["ws"], MODELS[kind]
    name, version = ref.split("/")
    rows, want = _offline(ws, world["runs"][ref])
    url = f"http://127.0.0.1:{port}/v1/models/{name}/predict"
    r = httpx.post(url, json={"rows": rows}, headers={"X-API-Key": key}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"]["name"], body["model"]["version"]) == (name, int(version))
    got = _scores(body, "regression" if kind == "jobs" else "binary")
    assert got.shape == want.shape and abs(got - want).max() <= 1e-9, abs(got - want).max()
    key_field = {"credit": "customer_id", "jobs": "site_code"}[kind]
    r = httpx.post(url, json={"rows": [{key_field: rows[0].get(key_field, 1) or 1}]}, headers={"X-API-Key": key}, timeout=30)
    assert r.status_code == 422 and key_field in r.text
    assert httpx.post(url, json={"rows": rows[:1]}, timeout=30).status_code == 401
    return len(rows)


@pytest.mark.parametrize("kind", list(MODELS))
def test_a_bundle_serves_over_http_as_the_version_scores_offline(world, kind, tmp_path):
    "serve_bundle from this environment, on a copy of the tarball alone in a folder with no workspace."
    a = world["built"][kind]
    shutil.copy(a.bundle_tar, tmp_path / "bundle.tar.gz")
    key = create_key(world["ws"], "elsewhere", ["predictor"], who="test").key  # made anywhere: the server accepts it from MLW_API_KEY
    port = free_port()
    proc = _serve(sys.executable, tmp_path / "bundle.tar.gz", port, key, tmp_path, tmp_path / "server.log")
    try: _check_http(world, kind, port, key)
    finally: _stop(proc)
    assert "Traceback" not in (tmp_path / "server.log").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.tar.gz", "server.log", "server.tmp"]  # nothing beside the bundle (no ./mlruns)
    assert list((tmp_path / "server.tmp").iterdir()) == []  # the throwaway workspace went with the server


@pytest.mark.timeout(1800)
def test_fresh_virtualenv_serves_the_bundle(world, tmp_path, fresh_venv):
    """NEEDS PyPI or pip's cache, and minutes (the `fresh_venv` fixture). A fresh venv (no system site packages) with
    exactly what the Dockerfile installs (the lock with --no-deps, then a wheel of this checkout with --no-deps); a
    copy of the bundle tarball alone, in a folder with no workspace, is served from it and answers as the version
    scores offline."""
    timings = dict(fresh_venv.timings)
    t0 = time.perf_counter()
    a = build_artifacts(world["ws"], MODELS["jobs"], tmp_path / "build", wheel=fresh_venv.wheel, who="ci")
    timings["build_artifacts"] = time.perf_counter() - t0
    assert (a.path("wheels") / fresh_venv.wheel.name).is_file()
    assert a.path("requirements.lock").read_text() == fresh_venv.lock.read_text()  # the build's lock is what the venv holds
    py = fresh_venv.python
    alone = tmp_path / "alone"; alone.mkdir()
    shutil.copy(a.bundle_tar, alone / "bundle.tar.gz")
    key = create_key(world["ws"], "venv-client", ["predictor"], who="test").key
    t0 = time.perf_counter()
    port = free_port()
    proc = _serve(py, alone / "bundle.tar.gz", port, key, alone, tmp_path / "venv-server.log")
    timings["start to ready"] = time.perf_counter() - t0
    try: n = _check_http(world, "jobs", port, key)
    finally: _stop(proc)
    lines = [f"{k}: {v:.1f} s" for k, v in timings.items()]
    OUTPUT.mkdir(exist_ok=True)
    pins = [l for l in a.path("requirements.lock").read_text().splitlines() if "==" in l]
    (OUTPUT / "fresh_venv_bundle_timings.txt").write_text("\n".join(lines + [f"rows compared: {n}", f"packages locked: {len(pins)}"]) + "\n")
    print("fresh venv:", "; ".join(lines))
