"""Roles on the dashboards (issue 15, item 4): behind a login (`mlw dashboards --oauth ISSUER`), the Model quality
page's promote and archive need the signed-in user's role, as the CLI and the API do.

A real OIDC issuer (tests/oidc_issuer.py) logs people in through the authorization-code flow; the test picks the
account at the issuer, as a person would on its page. vera is a viewer,
dora a deployer. The workspace has two models in two shapes: a credit-default classifier on generated loan
applications, and `toy.jobs_world`'s duration regression (text site codes, some null, dates as strings).

A viewer sees the buttons off with the reason; one who turns a button back on in the browser (Bokeh sends the change to
the server, as a hand-made client could) is still refused by the server, and the refusal is in the audit table. A
deployer's promotion and archive go through, signed with their name.
"""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import free_port
from test_dashboards import _fit_viewport, _serve, _stop

LOAD = 60_000  # ms
USERS = {"vera": {"name": "Vera Viewer", "email": "vera@example.test", "preferred_username": "vera", "roles": ["viewer"]},
         "dora": {"name": "Dora Deployer", "email": "dora@example.test", "preferred_username": "dora", "roles": ["deployer"]},
         "ned": {"name": "Ned Nobody", "email": "ned@example.test", "preferred_username": "ned", "roles": []}}  # who logs in when nobody is picked
_BUTTONS = "(label) => Bokeh.documents.flatMap(d => [...d.all_models]).filter(m => m.type.endsWith('Button') && m.label == label)"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import subprocess
    from oidc_issuer import oidc_issuer
    from toy import credit_loans, credit_version, jobs_world
    from mlops_workbench.core.workspace import Workspace
    d = tmp_path_factory.mktemp("roles")
    ws = Workspace.init(d / "ws")
    credit_version(ws, credit_loans(1_000, seed=3), {"learning_rate": 0.1, "num_leaves": 15}, "good", rounds=30)
    jobs_world(ws)
    mlw = str(Path(sys.executable).with_name("mlw"))
    put = subprocess.run([mlw, "secrets", "set", "dashboards.oauth_client_secret", "--workspace", str(ws.root)], input="dashboards-secret",
                         capture_output=True, text=True)
    assert put.returncode == 0, put.stderr
    with oidc_issuer({"users": USERS, "default_user": "ned"}) as issuer:
        port = free_port()
        proc = _serve([mlw, "dashboards", "--oauth", issuer.url, "--oauth_client_id", "dashboards", "--port", str(port), "--workspace", str(ws.root)],
                      None, port, d / "dashboards.log")
        try: yield SimpleNamespace(ws=ws, url=f"http://127.0.0.1:{port}", issuer=issuer)
        finally:
            _stop(proc)
            ws.close()


def _login_as(page, world, user: str):
    "This page's login picks `user` at the issuer, as a person choosing an account there."
    world.issuer.sign_in_as(user)


def _open(page, world, query: str):
    page.goto(f"{world.url}/model-quality?{query}")
    page.get_by_text("Promote or archive this version").wait_for(timeout=LOAD)


def _denied(ws, who: str) -> list:
    from mlops_workbench.security.audit import read_audit
    return [(r["action"], r["resource"], json.loads(r["detail"])["version"]) for r in read_audit(ws, principal=who).to_dicts() if r["outcome"] == "denied"]


def test_a_viewer_sees_the_buttons_off_and_a_forced_click_is_refused_and_audited(world, page, shot):
    from mlops_workbench.registry.versions import get_version
    _login_as(page, world, "vera")
    _open(page, world, "model=credit_default&version=1")
    page.get_by_text("Signed in as vera (roles: viewer)").wait_for(timeout=LOAD)
    page.get_by_text("need role deployer").wait_for()
    assert page.get_by_role("button", name="Promote").is_disabled() and page.get_by_role("button", name="Archive").is_disabled()
    _fit_viewport(page)
    shot(page, "dashboards-roles-viewer")
    # turned back on in the browser: the change reaches the server, which still checks the role
    assert page.evaluate(f"() => ({_BUTTONS})('Promote').map(b => {{ b.disabled = false; return b.label; }})") == ["Promote"]
    page.get_by_role("button", name="Promote").click(timeout=LOAD)
    page.get_by_text("'vera' (roles: viewer; via oidc) may not model.promote on model:credit_default: it needs role deployer").wait_for(timeout=LOAD)
    assert get_version(world.ws, "credit_default", 1).aliases == ["candidate"]  # nothing moved
    assert ("model.promote", "model:credit_default", 1) in _denied(world.ws, "vera")
    shot(page, "dashboards-roles-viewer-refused")
    # the regression model: the same rule
    _open(page, world, "model=job_duration")
    page.get_by_text("need role deployer").wait_for(timeout=LOAD)
    assert page.get_by_role("button", name="Archive").is_disabled()
    assert "Traceback" not in page.content() and page.offsite == []


def test_a_deployer_promotes_and_archives_signed_with_their_name(world, page, shot):
    from mlops_workbench.registry.versions import alias_history, get_version
    _login_as(page, world, "dora")
    _open(page, world, "model=credit_default&version=1")
    page.get_by_text("Signed in as dora (roles: deployer)").wait_for(timeout=LOAD)
    assert page.get_by_role("button", name="Promote").is_enabled()
    page.locator("select", has=page.locator("option", has_text="production")).select_option("staging")
    page.get_by_placeholder("why").fill("gates passed")
    page.get_by_role("button", name="Promote").click()
    page.get_by_text("model 'credit_default' v1 is now staging by dora").wait_for(timeout=LOAD)
    last = alias_history(world.ws, "credit_default").sort("at").row(-1, named=True)
    assert (last["action"], last["alias"], last["actor"], last["reason"]) == ("alias_set", "staging", "dora", "gates passed")
    assert "staging" in get_version(world.ws, "credit_default", 1).aliases
    _fit_viewport(page)
    shot(page, "dashboards-roles-deployer")
    _open(page, world, "model=job_duration&version=1")
    page.get_by_role("button", name="Archive").click()
    page.get_by_text("model 'job_duration' v1 archived by dora").wait_for(timeout=LOAD)
    assert get_version(world.ws, "job_duration", 1).tags.get("mlw.archived") == "true"
    last = alias_history(world.ws, "job_duration").sort("at").row(-1, named=True)
    assert (last["action"], last["actor"]) == ("archived", "dora") and _denied(world.ws, "dora") == []
    assert "Traceback" not in page.content() and page.offsite == []
