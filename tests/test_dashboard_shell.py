"""The dashboards' shell in a browser (issue 15, items 3 and 9): every link in the navigation leads to a page that
exists, and a path that names no page gets the app's own page (header, navigation, a message naming the path and
listing the pages) with status 404, not Tornado's bare "404: Not Found".
"""
import re
import urllib.error
import urllib.request

import pytest

from conftest import free_port
from test_dashboards import _fit_viewport, _stop, serve_workspace


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    "The dashboards, as `mlw dashboards` serves them, on a fresh workspace."
    from mlops_workbench.core.workspace import Workspace
    d = tmp_path_factory.mktemp("shell")
    ws = Workspace.init(d / "ws")
    port = free_port()
    proc = serve_workspace(ws.root, port, d / "panel.log")
    yield f"http://127.0.0.1:{port}"
    _stop(proc)
    ws.close()


def status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=120) as r: return r.status, r.read().decode()
    except urllib.error.HTTPError as e: return e.code, e.read().decode()


def test_every_navigation_link_is_a_page(app, page):
    from mlops_workbench.ui.shell import STAGES
    page.goto(f"{app}/pipelines")
    nav = page.locator("a.mlw-nav")
    nav.first.wait_for()
    links = [(a.inner_text(), a.get_attribute("href")) for a in nav.all()]
    assert [t for t, _ in links] == [title for title, _ in STAGES.values()], links  # no link to a stage without a page
    for title, href in links:
        code, body = status(f"{app}/{href}")
        assert code == 200, (title, href, code)
        page.goto(f"{app}/{href}")
        page.locator('a.mlw-nav-active[aria-current="page"]', has_text=title).wait_for()  # its own page, not a fallback
        page.get_by_role("heading", name=title).first.wait_for()
        assert "Not built yet" not in page.content() and "no dashboard page" not in page.content()
    assert page.offsite == []


def test_unknown_path_gets_the_apps_own_page(app, page, shot):
    from mlops_workbench.ui.shell import STAGES
    code, body = status(f"{app}/pipeline")  # a typo of /pipelines
    assert code == 404 and "There is no dashboard page at <code>/pipeline</code>" in body
    code, _ = status(f"{app}/data-quality/v2/extra")
    assert code == 404
    resp = page.goto(f"{app}/no/such<page>")
    assert resp.status == 404
    page.get_by_role("heading", name="Page not found").wait_for()
    page.get_by_text(re.compile(r"There is no dashboard page at /no/such<page>")).wait_for()
    for title in (t for t, _ in STAGES.values()):
        page.locator("aside a.mlw-nav", has_text=title).wait_for()  # the navigation
        page.locator("main li a", has_text=title).wait_for()  # and the list of pages
    _fit_viewport(page)
    shot(page, "dashboards-404")
    page.locator("aside a.mlw-nav", has_text="Model quality").click()  # and the way back works
    page.wait_for_url("**/model-quality")
    page.locator('a.mlw-nav-active[aria-current="page"]', has_text="Model quality").wait_for()
    assert "Traceback" not in page.content()
    assert page.offsite == []
