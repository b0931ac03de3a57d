"""The RBAC policy's whole matrix: every role x every action x (in-scope, out-of-scope) resource, scoped and unscoped.

The expected table is written out by hand, independently of `POLICY`, so moving a right fails a named row here.
"""
import pytest

from mlops_workbench.core.errors import Forbidden, InvalidInput
from mlops_workbench.security.rbac import ACTIONS, POLICY, ROLES, Principal, allowed, authorize, role_for

EXPECTED = """
action             viewer predictor deployer admin
model.read         y      y         y        y
model.predict      .      y         y        y
model.register     .      .         y        y
model.promote      .      .         y        y
model.archive      .      .         y        y
endpoint.read      y      y         y        y
endpoint.deploy    .      .         y        y
endpoint.rollback  .      .         y        y
workspace.read     y      y         y        y
pipeline.run       .      .         y        y
audit.read         .      .         .        y
keys.manage        .      .         .        y
secrets.manage     .      .         .        y
"""
_head, *_rows = [line.split() for line in EXPECTED.strip().splitlines()]
MATRIX = {(a, r): f == "y" for a, *fs in _rows for r, f in zip(_head[1:], fs)}


def test_table_covers_every_role_and_action():
    assert tuple(_head[1:]) == ROLES
    assert sorted({a for a, _ in MATRIX}) == sorted(ACTIONS)


def _resources(action):
    kind = ACTIONS[action][0]
    if kind == "workspace": return "workspace", "workspace"
    return f"{kind}:credit_default@production", f"{kind}:churn/3"


CASES = [(a, r, scoped, where) for (a, r) in MATRIX for scoped in (True, False) for where in ("in", "out")]


@pytest.mark.parametrize("action,role,scoped,where", CASES, ids=lambda v: str(v))
def test_matrix(action, role, scoped, where):
    inside, outside = _resources(action)
    res = inside if where == "in" else outside
    p = Principal("caller", {role}, "api_key" if scoped else "oidc", models={"credit_default"} if scoped else None)
    kind = ACTIONS[action][0]
    want = MATRIX[action, role] and (not scoped or where == "in" or kind == "workspace")
    assert allowed(p, action, res) is want
    if want: authorize(p, action, res)
    else:
        with pytest.raises(Forbidden) as e: authorize(p, action, res)
        msg = str(e.value)
        assert f"'caller' (roles: {role}" in msg and f"may not {action} on {res}" in msg
        if not MATRIX[action, role]: assert f"it needs role {role_for(action)}" in msg
        else: assert "scoped to model(s) credit_default" in msg


def test_roles_are_cumulative_and_admin_is_everything():
    for lo, hi in zip(ROLES, ROLES[1:]): assert POLICY[lo] < POLICY[hi]
    assert POLICY["admin"] == frozenset(ACTIONS)


def test_several_roles_union_and_unknown_roles_grant_nothing():
    p = Principal("x", {"viewer", "nonsense"}, "oidc")
    assert allowed(p, "model.read", "model:m") and not allowed(p, "model.predict", "model:m")
    assert not allowed(Principal("x", set(), "local"), "workspace.read", "workspace")


def test_program_mistakes_are_invalid_input_not_forbidden():
    p = Principal("x", {"admin"}, "local")
    for action, res, text in [("model.fly", "model:m", "is unknown"), ("model.read", "endpoint:m", "applies to model resources"),
                              ("keys.manage", "model:m", "applies to workspace resources"), ("model.read", "dataset:s", "unknown kind")]:
        with pytest.raises(InvalidInput, match=text): allowed(p, action, res)
