"""Packaging for mlops-workbench: metadata from nbdev's settings.ini, requirements here with their reasons."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).parent / "settings.ini")
cfg = cfg["DEFAULT"]

requirements = [
    # nbdev 2 reads settings.ini (nbdev 3 rejects it); 2.4.14 imports names that fastcore 2 and
    # execnb 0.2 removed, so the three are pinned together (RECIPES.md).
    "nbdev==2.4.14",
    "fastcore>=1.8,<2",
    "execnb>=0.1.11,<0.2",
    # evidently 0.7 (monitoring) imports a pandas internal that pandas 3 dropped; papermill and
    # panel pull pandas in, so it is capped here once for the whole project.
    "pandas>=2.2,<3",
    # panel 1.10 is listed on PyPI but not served to our machines: 1.9 is the newest that installs.
    "panel>=1.9.4,<1.10",
    "papermill>=2.6",
    "nbformat>=5.10",
    "nbconvert>=7.16",
    "ipykernel>=6.29",
    "ipywidgets>=8.1",
    "jupyterlab>=4.2,<5",
    "voila>=0.5.8",
    "polars>=1.20",
    # Delta Lake tables for datasets: versioned, transactional (a failed write leaves the last version readable);
    # polars reads and writes them through this package, no pyarrow needed.
    "deltalake>=1.1",
    "numpy>=1.26",
    "matplotlib>=3.8",
    # SQLAlchemy 2 style sessions and Core; alembic operations drive the versioned migrations.
    "sqlalchemy>=2.0",
    "alembic>=1.13",
    "pyyaml>=6",
    "tomli-w>=1.0",
    "tqdm>=4.66",
    # process-tree kills for timed-out steps and liveness checks of runners
    "psutil>=5.9",
    "param>=2.1",
    # the online feature store on Redis (`redis://` in the workspace); hiredis parses replies in C, which keeps a
    # 100-entity MGET well under a millisecond. Installed always: a workspace may switch to Redis with one line.
    "redis>=5",
    "hiredis>=2",
    # online feature rows are packed with msgpack: a C codec for JSON's types, 3-9x faster to decode than json
    "msgpack>=1.0",
    # monitoring's oracle and drill-down: our drift engine is checked against DataDriftPreset to 1e-9 with the same
    # verdicts, and its HTML report stays available for a sample (0.7 is the Report/Preset API we test against)
    "evidently>=0.7.23,<0.8",
    # the model family experiments search and training fits; 4.0 brought `data_sample_strategy` (bagging or GOSS)
    "lightgbm>=4.0",
    # hyperparameter search; 4.0 moved the journal file storage (our study store, resumable) to optuna.storages.journal
    "optuna>=4.0",
    # experiment tracking and the model registry (the `tracking` role); 3.x is the API we use (log_model(name=...))
    "mlflow>=3.0",
    # the `compute` role's clusters: trials (and training) as tasks on a LocalCluster or a scheduler named by URI
    "dask[distributed]>=2024.8",
    # experiment reports: optuna's figures are plotly, embedded with plotly.js inline so reports open offline
    "plotly>=5.20",
    # lightgbm.dask's estimators and the training plots' calibration/ROC helpers use it; mlflow only brings it along by chance
    "scikit-learn>=1.3",
    # the serving gateway: Starlette (FastAPI's core without its pydantic layer: our validation is compiled per model) on
    # uvicorn with uvloop + httptools ([standard]), which bench/serving.py measured ahead of granian on tail latency
    "starlette>=0.40",
    "uvicorn[standard]>=0.30",
    # the gateway's /metrics (its own registry; multi-process mode for --workers) and its spans (OTLP over HTTP when an
    # endpoint is configured: no grpcio)
    "prometheus-client>=0.20",
    "opentelemetry-api>=1.25",
    "opentelemetry-sdk>=1.25",
    "opentelemetry-exporter-otlp-proto-http>=1.25",
    # OIDC bearer tokens: JWKS and JWT verification with algorithm allow-lists bound to key types (security.oidc says why)
    "joserfc>=1.0",
    # secrets encrypted at rest (Fernet / MultiFernet, key rotation)
    "cryptography>=42",
    # the gateway's responses and the inference log's JSON columns: ~15x json.dumps, on the request path's core
    "orjson>=3.10",
    # build artifacts' serving lock: requirement markers and names read as pip reads them (cicd.artifacts)
    "packaging>=23",
]
extras = {
    # PostgreSQL metadata backend (psycopg 3, binary wheels need no libpq build).
    "postgres": ["psycopg[binary]>=3.2"],
    # The team profile: PostgreSQL metadata, and Delta tables on S3-compatible object storage. obstore is the Rust
    # object_store crate deltalake itself writes with: the storage role lists, hashes and deletes a table's objects
    # through it (core.storage says why not pyarrow's S3 or s3fs). boto3 is what an MLflow tracking server with
    # s3:// artifacts needs in its own environment.
    "team": ["psycopg[binary]>=3.2", "obstore>=0.12", "boto3>=1.34"],
    "dev": [
        "psycopg[binary]>=3.2",
        "obstore>=0.12",
        "boto3>=1.34",
        # an S3-compatible server on loopback for the object-storage tests (the one that installs from the registries here)
        "moto[server]>=5.2",
        "pytest>=8",
        "pytest-timeout>=2.3",
        "pytest-jupyter[server]>=0.10",
        # Playwright drives Debian's /usr/bin/chromium; its own browser download cannot run here.
        "playwright>=1.45",
        "jupytext>=1.16",
        # a real SMTP server on loopback for the email alert sink's tests
        "aiosmtpd>=1.4",
        # bench/validate.py compares our validation with pandera on pandas, what many users run today
        "pandera>=0.20",
        # property tests of point-in-time correctness against a brute-force reference
        "hypothesis>=6.100",
        # the gateway's lessons call it in-process (Starlette's TestClient) and its tests over HTTP
        "httpx>=0.27",
        # the gateway fuzzed from its OpenAPI document (zero 5xx), and its request validator checked against JSON Schema
        "schemathesis>=4.0",
        "jsonschema>=4.20",
        # the layering contract (.importlinter): stages import one way, no cycles between modules; checked by `make test`
        "import-linter>=2.3",
        "hatchling>=1.21",
        "hatch-jupyter-builder>=0.9",
        # `mlw ci`'s JUnit XML read back the way CI systems read it
        "junitparser>=3",
        # build artifacts checked as a cluster would: manifests against Kubernetes' schemas (strict: a misspelt field
        # fails) and into the client's models; the container context's Dockerfile parsed into instructions
        "kubernetes>=30",
        "kubernetes-validate>=1.30",
        "dockerfile-parse>=2.0",
    ],
}

# The built-in backends, announced the way a plugin announces its own (`mlops_workbench.core.backends`): one entry-point
# group per role, scheme = module:builder. The registry imports a builder's module only when a workspace uses its scheme,
# so `core` never imports a concrete store.
BACKENDS = {f"mlops_workbench.{role}": [f"{scheme} = mlops_workbench.{target}" for scheme, target in schemes.items()] for role, schemes in {
    "metadata": {"sqlite": "core.metadata:sqlite_metadata", "postgresql": "core.metadata:postgresql_metadata"},
    "storage": {"file": "core.storage:file_storage", "s3": "core.storage:s3_storage"},
    "online": {"sqlite": "features.online_store:sqlite_online", "redis": "features.online_store:redis_online",
               "rediss": "features.online_store:redis_online"},
    "tracking": {"sqlite": "core.tracking:sqlite_tracking", "http": "core.tracking:http_tracking", "https": "core.tracking:http_tracking"},
    "compute": {"local": "core.compute:local_compute", "tcp": "core.compute:dask_compute", "tls": "core.compute:dask_compute",
                "dask-local": "core.compute:dask_local_compute"},
    "secrets": {"workspace": "security.secrets:workspace_secrets"},
    "studies": {"journal": "core.studies:journal_studies", "postgresql": "core.studies:postgresql_studies",
                "redis": "core.studies:redis_studies", "rediss": "core.studies:redis_studies"},
}.items()}

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    author=cfg["author"],
    author_email=cfg["author_email"],
    license="Apache-2.0",
    url=cfg["git_url"],
    python_requires=">=" + cfg["min_python"],
    packages=setuptools.find_packages(include=["mlops_workbench", "mlops_workbench.*"]),
    package_data={"mlops_workbench": ["pipelines/*.ipynb", "pipelines/*.yaml", "pipelines/definitions/*.yaml", "observability/*.yml"]},
    include_package_data=True,
    install_requires=requirements,
    extras_require=extras,
    entry_points={"console_scripts": cfg["console_scripts"].split(), "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
                  **BACKENDS},
    zip_safe=False,
)
