"""REST handlers of the one `mlops-workbench` namespace: each opens the workspace, calls the package, answers JSON."""
from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from traitlets import Unicode
from traitlets.config import Configurable

from mlops_workbench.core.errors import Conflict, InvalidInput, MLWError, NotFound, NotSupported
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
    dashboards_url = Unicode(
        "http://127.0.0.1:5006",
        config=True,
        help="Where the browser finds the dashboards (`mlw dashboards`); the sidebar's datasets, feature views, "
             "experiments, models, environments and monitors link to their pages there.",
    )
    runs_copy_dir = Unicode(
        "mlw-runs",
        config=True,
        help="Folder under JupyterLab's root where a run's executed notebook is copied (read-only) to be opened, "
             "when the workspace lies outside that root; the notebook is opened in place when it lies inside.",
    )


_FIRST_CALLS = threading.Lock()
_WARMED: set[str] = set()  # the routes whose work has once run to the end in this process


def _first_alone(route: str, work: Callable[[], Any]) -> Any:
    """`work()`; a route's first call (until one succeeds) runs alone, under one lock, so the first imports run one at a time.

    The sidebar's sections ask at once and each handler's work runs in its own thread, so the first page load imports
    the library's modules and their lazy imports from eight threads together. That is not safe for packages whose
    modules import each other in a circle: a second thread can be handed a half-initialised module. It happened with
    MLflow's protobuf modules (`TypeError: Couldn't build proto file into descriptor pool`), with the `sqlalchemy.orm`
    that SQLAlchemy imports on a first connection, and the Environments section's first call once
    failed in a CI run (a 500 whose traceback that run did not keep).
    So no list of which imports are lazy is kept: every route's first call waits its turn, which makes the first page
    load wait for the sum of the sections' first calls instead of the longest; later calls find everything imported and run side by side."""
    if route in _WARMED:
        return work()
    with _FIRST_CALLS:
        out = work()
        _WARMED.add(route)
        return out


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
            body = await asyncio.to_thread(_first_alone, self.request.path, work)
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
            list_runs = importlib.import_module("mlops_workbench.pipelines.runner").list_runs

            limit = _limit(raw)
            with self.workspace() as ws:
                return {"workspace": str(ws.root), "runs": [r.to_dict() for r in list_runs(ws, limit=limit)]}

        await self.respond(work)


def contents_path(notebook: Path, root: Path, copy_dir: str, run_id: str) -> tuple[str, bool]:
    """The path JupyterLab opens `notebook` by (relative to its contents root `root`, `/`-separated), and whether it
    is a copy: the notebook itself when it lies under `root`, else a read-only copy at `<copy_dir>/<run_id>/<name>`,
    refreshed when the executed notebook is newer (a retried step rewrites it). The copy is written to a temporary
    file and renamed into place, so a reader never sees half a notebook."""
    notebook, root = notebook.resolve(), root.resolve()
    if notebook.is_relative_to(root): return notebook.relative_to(root).as_posix(), False
    target = (root / copy_dir / run_id / notebook.name).resolve()
    if not target.is_relative_to(root):
        raise InvalidInput(f"MLWLab.runs_copy_dir {copy_dir!r} leaves JupyterLab's root {root}; set it to a folder inside it")
    if not target.exists() or target.stat().st_mtime < notebook.stat().st_mtime:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{notebook.stem}-", suffix=".tmp")
            os.close(fd)
            try:
                shutil.copyfile(notebook, tmp)
                os.chmod(tmp, 0o444)  # a record of what ran: JupyterLab opens it read-only
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise Conflict(f"cannot copy the executed notebook {notebook} into JupyterLab's root {root} ({e.strerror}); "
                           f"start JupyterLab with a root that holds the workspace, or make {root / copy_dir} writable") from e
    return target.relative_to(root).as_posix(), True


class StepNotebookHandler(MLWHandler):
    """`GET /mlops-workbench/notebook?run=ID&step=NAME`: the contents path JupyterLab opens a step's executed notebook by.

    The notebook's location comes from the run's record, never from the request, so no path outside the workspace's
    runs can be asked for. `{path, copied, notebook}`: `copied` when the workspace lies outside JupyterLab's root and
    `path` is a read-only copy (see `contents_path`)."""

    @tornado.web.authenticated
    async def get(self):
        run_id, step = self.get_query_argument("run", ""), self.get_query_argument("step", "")
        root = getattr(self.settings.get("contents_manager"), "root_dir", None)

        def work() -> dict:
            if not run_id or not step:
                raise InvalidInput("query parameters 'run' and 'step' are required, e.g. notebook?run=20260101-120000-ab12cd&step=train")
            if root is None:
                raise NotSupported("this Jupyter server's contents manager has no root folder on disk; open the executed notebook from the workspace's runs/ folder instead")
            get_run = importlib.import_module("mlops_workbench.pipelines.runner").get_run
            with self.workspace() as ws:
                run = get_run(ws, run_id)
            found = next((s for s in run.steps if s.name == step), None)
            if found is None:
                raise NotFound(f"run {run_id} has no step {step!r}; its steps: {', '.join(s.name for s in run.steps)}")
            if not found.notebook or not Path(found.notebook).is_file():
                raise NotFound(f"step {step!r} of run {run_id} has no executed notebook (it {found.status}"
                               f"{'' if found.notebook is None else f'; {found.notebook} is gone'})")
            path, copied = contents_path(Path(found.notebook), Path(root), self.lab.runs_copy_dir, run.id)
            return {"path": path, "copied": copied, "notebook": found.notebook}

        await self.respond(work)


def dashboards_running(url: str, timeout: float = 1.0) -> bool:
    "Whether something accepts connections at `url`'s host and port (a cheap check: no page is rendered)."
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=timeout): return True
    except OSError:
        return False


class DashboardsHandler(MLWHandler):
    "`GET /mlops-workbench/dashboards`: `{url, running}`, where the dashboards are (`MLWLab.dashboards_url`) and whether they answer."

    @tornado.web.authenticated
    async def get(self):
        url = self.lab.dashboards_url.rstrip("/")

        def work() -> dict:
            if urlsplit(url).scheme not in ("http", "https"):
                raise InvalidInput(f"MLWLab.dashboards_url is {url!r}; expected an http(s) URL such as http://127.0.0.1:5006")
            return {"url": url, "running": dashboards_running(url)}

        await self.respond(work)


class SummariesHandler(MLWHandler):
    """`GET /mlops-workbench/<route>`: one summary function of the library over the workspace, under one key.

    The module is imported on first use, like the runner above: the dashboards' modules import the feature store,
    optuna, LightGBM and the registry, and the server should start without waiting for them."""

    def initialize(self, module: str, function: str, key: str) -> None:
        self.module, self.function, self.key = module, function, key

    @tornado.web.authenticated
    async def get(self):
        def work() -> dict:
            summaries = getattr(importlib.import_module(self.module), self.function)
            with self.workspace() as ws:
                return {"workspace": str(ws.root), self.key: summaries(ws)}

        await self.respond(work)


def _summaries(module: str, function: str, key: str) -> tuple[type[MLWHandler], dict]:
    return SummariesHandler, {"module": module, "function": function, "key": key}


# path under /mlops-workbench/ -> handler and its arguments
ROUTES: list[tuple[str, type[MLWHandler], dict]] = [
    ("runs", RunsHandler, {}),
    # where a step's executed notebook opens in JupyterLab (copied in read-only when the workspace is outside its root)
    ("notebook", StepNotebookHandler, {}),
    # where the dashboards are and whether they answer
    ("dashboards", DashboardsHandler, {}),
    # each dataset's latest version and rows, newest validation status and open alerts
    ("datasets", *_summaries("mlops_workbench.ui.data_quality", "dataset_summaries", "datasets")),
    # each feature view's latest version, its newest build and freshness, and its newest materialization
    ("features", *_summaries("mlops_workbench.ui.features", "feature_view_summaries", "views")),
    # each searched experiment's trial counts, best trial and state, most recently active first (MLflow imported inside)
    ("experiments", *_summaries("mlops_workbench.ui.models", "experiment_summaries", "experiments")),
    # each registered model's versions with their validation status and aliases (MLflow imported inside)
    ("models", *_summaries("mlops_workbench.ui.models", "model_summaries", "models")),
    # each endpoint of each running gateway: its model reference, the version that resolves to now, port, pid (MLflow imported inside)
    ("served", *_summaries("mlops_workbench.ui.serving", "served_models", "served")),
    # each deployment environment: its endpoints' traffic (primary, candidate, share, mode), the active deployment, the last
    # finished one, and the gateways running for it (the gateway module imported inside)
    ("environments", *_summaries("mlops_workbench.ui.deployments", "environment_summaries", "environments")),
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
