"""MLOps Workbench for JupyterLab: the sidebar (a prebuilt labextension) and the `mlops-workbench` REST handlers."""
from ._version import __version__

__all__ = ["__version__"]


def _jupyter_labextension_paths():
    "Where `jupyter labextension` finds the prebuilt frontend inside this package."
    return [{"src": "labextension", "dest": "@mlops-workbench/lab"}]


def _jupyter_server_extension_points():
    "The server extension this package provides (enabled by jupyter-config/server-config)."
    return [{"module": "mlops_workbench_lab"}]


def _load_jupyter_server_extension(server_app):
    "Read the `MLWLab` settings from the server's config and register the REST handlers."
    from .handlers import MLWLab, setup_handlers

    lab = MLWLab(parent=server_app)
    setup_handlers(server_app.web_app, lab)
    where = lab.workspace or "$MLW_HOME or ./workspace"
    server_app.log.info("mlops_workbench_lab %s: /mlops-workbench handlers on workspace %s", __version__, where)
