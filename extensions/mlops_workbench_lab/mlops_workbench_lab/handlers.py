"""REST handlers of the one `mlops-workbench` namespace: each opens the workspace, calls the package, answers JSON."""
from __future__ import annotations

import asyncio
import importlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from traitlets import Unicode
from traitlets.config import Configurable

from mlops_workbench.core.errors import InvalidInput, MLWError
from mlops_workbench.core.workspace import Workspace

NAMESPACE = "mlops-workbench"
MAX_RUNS = 500


class MLWLab(Configurable):
    "Settings of the MLOps Workbench server extension, e.g. `jupyter lab --MLWLab.workspace=PATH`."

    workspace = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Workspace folder the handlers open; None lets Workspace.open() choose ($MLW_HOME, else ./workspace).",
    )


_IMPORTING = threading.Lock()


_WARMED: set = set()  # modules whose summaries have run once (MLflow's lazy imports done)


def _module(name: str, *lazy: str):
    """Import `name`, and the packages in `lazy` that it imports only inside its functions, one import at a time.

    The sidebar's sections ask at once and each handler's work runs in its own thread. MLflow's first import is not
    safe from two threads: its protobuf modules import each other in a circle, so a second thread can be handed a
    half-initialised module (`TypeError: Couldn't build proto file into descriptor pool`, an HTTP 500 in the
    Experiments or Models section about one page load in four on this machine). Under this lock the first request
    imports everything its work will need; later ones find it imported and pass straight through."""
    with _IMPORTING:
        for package in lazy:
            importlib.import_module(package)
        return importlib.import_module(name)


class MLWHandler(APIHandler):
    "Base of every handler: runs the work off the event loop and turns an MLWError into `{error, message}`."

    @property
    def lab(self) -> MLWLab:
        return self.settings["mlw_lab"]

    @contextmanager
    def workspace(self) -> Iterator[Workspace]:
        "The configured workspace, opened for this request and closed after it."
        # Opened per request in the worker thread that uses it (its backends hold
        # connections), so a workspace created or repaired after start-up just works.
        ws = Workspace.open(self.lab.workspace)
        try:
            yield ws
        finally:
            ws.close()

    async def respond(self, work: Callable[[], Any]) -> None:
        "Answer with `work()` as JSON, or with `{error, message}` and the error's status."
        try:
            body = await asyncio.to_thread(work)
        except MLWError as e:
            self.set_status(e.http_status)
            body = {"error": type(e).__name__, "message": str(e)}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body, default=str))


def _limit(raw: str) -> int:
    "The `limit` query argument as an int in 1..MAX_RUNS."
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_RUNS:
        raise InvalidInput(f"query parameter 'limit' is {raw!r}; expected a whole number from 1 to {MAX_RUNS}")
    return n


class RunsHandler(MLWHandler):
    "`GET /mlops-workbench/runs?limit=N`: the newest pipeline runs with their steps."

    @tornado.web.authenticated
    async def get(self):
        raw = self.get_query_argument("limit", "20")

        def work() -> dict:
            # Imported on first use: the runner module takes seconds to import cold, and the
            # server should start without waiting for it.
            list_runs = _module("mlops_workbench.pipelines.runner").list_runs

            limit = _limit(raw)
            with self.workspace() as ws:
                return {"workspace": str(ws.root), "runs": [r.to_dict() for r in list_runs(ws, limit=limit)]}

        await self.respond(work)


class SummariesHandler(MLWHandler):
    """`GET /mlops-workbench/<route>`: one summary function of the library over the workspace, under one key.

    The module is imported on first use, like the runner above: the dashboards' modules import the feature store,
    optuna, LightGBM and the registry, and the server should start without waiting for them."""

    def initialize(self, module: str, function: str, key: str, lazy: tuple[str, ...] = ()) -> None:
        self.module, self.function, self.key, self.lazy = module, function, key, lazy

    @tornado.web.authenticated
    async def get(self):
        def work() -> dict:
            summaries = getattr(_module(self.module, *self.lazy), self.function)
            with self.workspace() as ws:
                if self.lazy and self.module not in _WARMED:
                    # The first call also imports what MLflow loads only on first use (its SQLAlchemy stores); two
                    # threads doing that at once can meet a half-initialised sqlalchemy.orm: one first call at a time.
                    with _IMPORTING:
                        out = summaries(ws)
                        _WARMED.add(self.module)
                else: out = summaries(ws)
                return {"workspace": str(ws.root), self.key: out}

        await self.respond(work)


def _summaries(module: str, function: str, key: str, lazy: tuple[str, ...] = ()) -> tuple[type[MLWHandler], dict]:
    return SummariesHandler, {"module": module, "function": function, "key": key, "lazy": lazy}


# path under /mlops-workbench/ -> handler and its arguments
ROUTES: list[tuple[str, type[MLWHandler], dict]] = [
    ("runs", RunsHandler, {}),
    # each dataset's latest version and rows, newest validation status and open alerts
    ("datasets", *_summaries("mlops_workbench.ui.data_quality", "dataset_summaries", "datasets")),
    # each feature view's latest version, its newest build and freshness, and its newest materialization
    ("features", *_summaries("mlops_workbench.ui.features", "feature_view_summaries", "views")),
    # each searched experiment's trial counts, best trial and state, most recently active first (MLflow imported inside)
    ("experiments", *_summaries("mlops_workbench.ui.models", "experiment_summaries", "experiments", lazy=("mlflow",))),
    # each registered model's versions with their validation status and aliases (MLflow imported inside)
    ("models", *_summaries("mlops_workbench.ui.models", "model_summaries", "models", lazy=("mlflow",))),
    # each endpoint of each running gateway: its model reference, the version that resolves to now, port, pid (MLflow imported inside)
    ("served", *_summaries("mlops_workbench.ui.serving", "served_models", "served", lazy=("mlflow",))),
    # each deployment environment: its endpoints' traffic (primary, candidate, share, mode), the active deployment, the last
    # finished one, and the gateways running for it (the gateway module, imported inside, under the import lock too)
    ("environments", *_summaries("mlops_workbench.ui.deployments", "environment_summaries", "environments", lazy=("mlops_workbench.serving.gateway",))),
    # each model monitor with its newest run: status, drift share against its bound, drifted features, breached kinds, open alerts
    ("monitors", *_summaries("mlops_workbench.ui.monitoring", "monitor_summaries", "monitors")),
    # the open (firing or acknowledged) alerts of the workspace, newest first
    ("alerts", *_summaries("mlops_workbench.ui.data_quality", "open_alert_summaries", "alerts")),
]


def setup_handlers(web_app: tornado.web.Application, lab: MLWLab) -> None:
    "Register ROUTES under `<base_url>/mlops-workbench/`."
    web_app.settings["mlw_lab"] = lab
    base = url_path_join(web_app.settings["base_url"], NAMESPACE)
    web_app.add_handlers(".*$", [(url_path_join(base, path), handler, kwargs) for path, handler, kwargs in ROUTES])
