"""The dashboards as a Panel script: `MLW_HOME=path/to/workspace panel serve dashboards/app.py`.

The same pages as `mlw dashboards` (`mlops_workbench.ui.shell.serve_dashboards`), on the workspace that `Workspace.open()`
finds ($MLW_HOME, else ./workspace). Panel runs this file once per browser session, so every session gets fresh
state. Pick a page with `?page=<slug>` (see `mlops_workbench.ui.shell.STAGES`); the sidebar links to all of them.
"""
from mlops_workbench.ui.shell import dashboard_app

# No workspace argument: dashboard_app opens it per session and shows an alert if it cannot.
dashboard_app().servable()
