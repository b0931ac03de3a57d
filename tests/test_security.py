"""API keys, RBAC scope and the audit log as a user meets them: the installed `mlw` in subprocesses on a fresh workspace,
on SQLite and on a real PostgreSQL server (tests/pg.py).

Keys: create (printed once), list (no hash, no secret), authenticate, revoke, rotate with an overlap, expiry, wrong
scope. Audit: an edited or deleted row makes `mlw audit verify` exit 1 naming it; appends from 4 processes at once keep
one valid chain. And a created key's secret appears nowhere but the one line that hands it over.
"""
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from pg import pg_new_database, pg_server  # noqa: F401  (fixtures)
from mlops_workbench.core.errors import Forbidden, Unauthorized
from mlops_workbench.core.metadata import api_keys, audit_log
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.security.audit import read_audit, record, verify_audit
from mlops_workbench.security.keys import KeyAuthenticator, KeyRejected, authenticate_key, list_keys
from mlops_workbench.security.rbac import authorize

from test_cli import ENV, MLW, user_error


@pytest.fixture(params=["sqlite", "postgresql"])
def wsdir(request, tmp_path, monkeypatch):
    "A fresh workspace made by `mlw init`, its metadata on SQLite or on PostgreSQL; yields its folder."
    monkeypatch.delenv("MLW_HOME", raising=False)
    args = ["init", str(tmp_path/"ws")]
    if request.param == "postgresql": args += ["--metadata", request.getfixturevalue("pg_new_database")()]
    p = subprocess.run([MLW, *args], capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    yield tmp_path/"ws"


def mlw(wsdir, *args, stdin=None):
    return subprocess.run([MLW, *map(str, args), "--workspace", str(wsdir)], capture_output=True, text=True, env=ENV,
                          cwd=wsdir.parent, input=stdin, timeout=120)


def new_key(wsdir, *args) -> str:
    p = mlw(wsdir, "keys", "create", *args)
    assert p.returncode == 0, p.stderr
    assert "shown only this once" in p.stderr and "mlw_" not in p.stderr
    key = p.stdout.strip()
    assert len(p.stdout.splitlines()) == 1 and key.startswith("mlw_"), p.stdout  # the key alone on stdout
    return key


def rejected(ws, key) -> str:
    with pytest.raises(KeyRejected) as e: authenticate_key(ws, key)
    assert e.value.http_status == 401 and isinstance(e.value, Unauthorized)
    assert key.split("_", 2)[2] not in str(e.value)
    return e.value.reason


def test_keys_end_to_end(wsdir):
    key = new_key(wsdir, "scoring-svc", "--role", "predictor", "--model", "credit_default", "--expires", "30d")
    kid, secret = key[4:16], key[17:]
    p = mlw(wsdir, "keys", "list")
    assert p.returncode == 0 and kid in p.stdout and "scoring-svc" in p.stdout and "credit_default" in p.stdout and "active" in p.stdout
    ws = Workspace.open(wsdir)
    try:
        with ws.metadata.begin() as c: stored = c.execute(sa.select(api_keys.c.hash).where(api_keys.c.id == kid)).scalar_one()
        assert secret not in p.stdout and stored not in p.stdout and key not in p.stdout
        assert "hash" not in list_keys(ws, include_revoked=True).columns

        who = authenticate_key(ws, key)
        assert (who.name, who.roles, who.models, who.key_id, who.via) == ("scoring-svc", {"predictor"}, {"credit_default"}, kid, "api_key")
        authorize(who, "model.predict", "model:credit_default@production")
        with pytest.raises(Forbidden, match="scoped to model\\(s\\) credit_default; use a key whose scope includes 'churn'"):
            authorize(who, "model.predict", "model:churn")  # wrong scope: a known caller without the right, 403
        with pytest.raises(Forbidden, match="it needs role deployer"): authorize(who, "model.promote", "model:credit_default")

        # rotate: both keys work during the overlap, only the new one after it
        p = mlw(wsdir, "keys", "rotate", kid, "--overlap", "2s")
        assert p.returncode == 0, p.stderr
        new = p.stdout.strip()
        assert new.startswith("mlw_") and new != key and f"the old key {kid} keeps working until" in p.stderr
        assert authenticate_key(ws, key).key_id == kid and authenticate_key(ws, new).models == {"credit_default"}
        assert "rotated from " + kid in mlw(wsdir, "keys", "list").stdout
        time.sleep(2.5)
        assert rejected(ws, key) == "expired"
        assert authenticate_key(ws, new).name == "scoring-svc"

        # revoke
        p = mlw(wsdir, "keys", "revoke", new[4:16])
        assert p.returncode == 0 and "revoked API key" in p.stdout
        assert rejected(ws, new) == "revoked"
        assert "already revoked" in mlw(wsdir, "keys", "revoke", new[4:16]).stdout
        assert new[4:16] not in mlw(wsdir, "keys", "list").stdout and new[4:16] in mlw(wsdir, "keys", "list", "--all").stdout

        # an expired key, and the other refusals
        short = new_key(wsdir, "batch", "--role", "viewer", "--expires", "1s")
        time.sleep(1.5)
        assert rejected(ws, short) == "expired"
        assert rejected(ws, short[:-2] + ("xx" if not short.endswith("xx") else "yy")) == "unknown"
        with pytest.raises(KeyRejected) as e: authenticate_key(ws, None)
        assert e.value.reason == "missing"
        with pytest.raises(KeyRejected) as e: authenticate_key(ws, "mlw_nothex_" + secret)
        assert e.value.reason == "malformed" and secret not in str(e.value)

        # the audit log holds every change, and verifies
        actions = read_audit(ws, action="key.*")["action"].to_list()
        assert actions == ["key.create", "key.rotate", "key.revoke", "key.create"]
    finally: ws.close()
    p = mlw(wsdir, "audit", "verify")
    assert p.returncode == 0 and p.stdout.startswith("audit log intact: 4 row(s) checked"), p.stdout + p.stderr


def test_key_cli_mistakes(wsdir):
    user_error(mlw(wsdir, "keys", "create", "svc"), "needs at least one --role")
    user_error(mlw(wsdir, "keys", "create", "svc", "--role", "root"), "role(s) 'root' unknown; roles: viewer, predictor, deployer, admin")
    user_error(mlw(wsdir, "keys", "create", "svc", "--role", "viewer", "--expires", "tomorrow"), "duration 'tomorrow' is invalid")
    user_error(mlw(wsdir, "keys", "revoke", "0123456789ab"), "API key '0123456789ab' not found")
    user_error(mlw(wsdir, "keys", "rotate", "nope"), "key id 'nope' is invalid")
    user_error(mlw(wsdir, "keys", "list", "--role", "admin"), "are for `mlw keys create`")


def test_keys_revocation_reaches_a_cached_authenticator_within_cache_s(wsdir):
    key = new_key(wsdir, "svc", "--role", "predictor")
    ws = Workspace.open(wsdir)
    try:
        auth = KeyAuthenticator(ws, cache_s=0.5)
        assert auth.authenticate(key).name == "svc"
        assert mlw(wsdir, "keys", "revoke", key[4:16]).returncode == 0  # another process revokes it
        deadline = time.monotonic() + 10
        while True:
            try: auth.authenticate(key)
            except KeyRejected as e: assert e.reason == "revoked"; break
            assert time.monotonic() < deadline, "a revocation never reached the cached authenticator"
            time.sleep(0.05)
    finally: ws.close()


def _sql(ws, stmt):
    with ws.metadata.begin() as c: c.execute(stmt)


def test_audit_verify_catches_an_edited_and_a_deleted_row(wsdir):
    ws = Workspace.open(wsdir)
    try:
        for i in range(5): record(ws, "ci", "model.register", "model:churn", detail={"version": i + 1})
        assert mlw(wsdir, "audit", "verify").returncode == 0
        p = mlw(wsdir, "audit", "list", "--limit", "2")
        assert p.returncode == 0 and len(p.stdout.splitlines()) == 2 and '{"version":5}' in p.stdout

        _sql(ws, audit_log.update().where(audit_log.c.id == 3).values(detail={"version": 30}))
        line = user_error(mlw(wsdir, "audit", "verify"), "row 3 was edited", "first bad row 3", code=1)
        assert "audit log tampered" in line
        _sql(ws, audit_log.update().where(audit_log.c.id == 3).values(detail={"version": 3}))  # put it back
        assert mlw(wsdir, "audit", "verify").returncode == 0

        _sql(ws, audit_log.delete().where(audit_log.c.id == 4))
        user_error(mlw(wsdir, "audit", "verify"), "row 4 is missing (chain jumps from 3 to 5)", code=1)
    finally: ws.close()


def test_audit_anchor_catches_a_cut_tail(wsdir):
    ws = Workspace.open(wsdir)
    try:
        for i in range(4): record(ws, "ci", "alias.set", "model:churn", detail={"version": i + 1, "alias": "staging"})
    finally: ws.close()
    p = mlw(wsdir, "audit", "verify")
    anchor = p.stdout.split("anchor: ")[1].split()[0]
    assert anchor.startswith("4:")
    ws = Workspace.open(wsdir)
    try: _sql(ws, audit_log.delete().where(audit_log.c.id == 4))
    finally: ws.close()
    assert mlw(wsdir, "audit", "verify").returncode == 0  # the chain alone still holds...
    user_error(mlw(wsdir, "audit", "verify", "--anchor", anchor), "row 4 is missing: the anchor is row 4, the log ends at row 3", code=1)


APPENDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.security.audit import record
    ws, n, me, go = Workspace.open(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    while not go.exists(): time.sleep(0.01)  # start together
    if me == "keys":  # key changes read before they write: they must not trip over the appenders
        from mlops_workbench.security.keys import create_key, rotate_key, revoke_key
        for i in range(n // 4):
            k = create_key(ws, f"svc{i}", ["predictor"], who=me)
            revoke_key(ws, rotate_key(ws, k.id, who=me).id, who=me)
    else:
        for i in range(n): record(ws, me, "model.predict", "model:churn", outcome="ok" if i % 3 else "denied", detail={"i": i})
    ws.close()
""")


def test_concurrent_appends_keep_one_chain(wsdir, tmp_path):
    "4 processes append while a fifth creates, rotates and revokes keys: one valid chain, every row there, no 'database is locked'."
    go, n = tmp_path/"go", 40
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(wsdir), str(n), name, str(go)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in [f"proc{k}" for k in range(4)] + ["keys"]]
    time.sleep(1.0)  # let them all import and wait
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    ws = Workspace.open(wsdir)
    try:
        total = 4 * n + 3 * (n // 4)  # the appenders' rows, and the key changes' (create, rotate, revoke)
        v = verify_audit(ws)
        assert v.ok and v.rows == total, str(v)
        rows = read_audit(ws, limit=10_000)
        assert rows["id"].to_list() == list(range(1, total + 1))
        assert rows["at"].is_sorted()  # taken under the chain's lock: time never runs backwards along the chain
        assert sorted(rows.group_by("principal").len().rows()) == [("keys", 3 * (n // 4))] + [(f"proc{k}", n) for k in range(4)]
        assert list_keys(ws, include_revoked=True)["status"].value_counts().sort("status").rows() == [("active", n // 4), ("revoked", n // 4)]
    finally: ws.close()
    p = mlw(wsdir, "audit", "verify")
    assert p.returncode == 0 and f"{total} row(s) checked" in p.stdout


def test_a_keys_secret_appears_nowhere_but_its_one_line(wsdir, caplog):
    p = mlw(wsdir, "keys", "create", "grep-me", "--role", "admin")
    key = p.stdout.strip()
    secret = key[17:]
    assert secret not in p.stderr
    seen = {"keys list": mlw(wsdir, "keys", "list", "--all").stdout + mlw(wsdir, "keys", "list", "--all").stderr,
            "audit list": mlw(wsdir, "audit", "list").stdout}
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)  # every statement and its parameters
    ws = Workspace.open(wsdir)
    try:
        principal = authenticate_key(ws, key)
        auth = KeyAuthenticator(ws)
        auth.authenticate(key)
        seen["reprs"] = repr(principal) + repr(auth.authenticate(key)) + repr(list_keys(ws, include_revoked=True)) + repr(read_audit(ws))
        from mlops_workbench.security.keys import rotate_key, revoke_key
        rotated = rotate_key(ws, key[4:16], overlap="0s", who="ops")
        seen["issued repr"] = repr(rotated) + str(rotated) + rotated._repr_markdown_()
        revoke_key(ws, rotated.id)
        seen["refusals"] = "".join(str(e) for e in [_refusal(ws, key), _refusal(ws, rotated.key)])
        with ws.metadata.begin() as c:
            seen["audit table"] = repr(c.execute(sa.select(audit_log)).all())
            seen["api_keys table"] = repr(c.execute(sa.select(api_keys)).all())
    finally:
        ws.close()
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    seen["logs"] = caplog.text
    assert "api_keys" in seen["logs"]  # the statements were logged, so the check below means something
    db = Path(wsdir)/"metadata.db"
    if db.exists():  # SQLite: the database's bytes, with its write-ahead log
        seen["database file"] = b"".join(f.read_bytes() for f in db.parent.glob("metadata.db*")).decode("latin-1")
    for where, text in seen.items():
        for s in (secret, rotated.key.split("_", 2)[2]): assert s not in text, f"a key's secret appears in the {where}"


def _refusal(ws, key):
    try: authenticate_key(ws, key)
    except KeyRejected as e: return e
    raise AssertionError("the key was accepted")


def test_registry_changes_are_in_the_audit_log_with_the_change():
    "The registry's part is in nbs/registry/22_versions.ipynb (register, promote, archive write audit_log rows in their transaction)."
    from mlops_workbench.registry.versions import AUDIT_LOG_ACTIONS, AUDIT_ACTIONS
    assert set(AUDIT_LOG_ACTIONS) == set(AUDIT_ACTIONS)


def test_secrets_verbs_read_the_value_from_stdin_and_never_print_it(wsdir):
    from mlops_workbench.security.secrets import get_secret
    value = "smtp-" + "Zq9" * 8
    p = mlw(wsdir, "secrets", "set", "smtp_password", "--who", "alice", stdin=value + "\n")
    assert (p.returncode, p.stdout) == (0, "secret smtp_password set (version 1)\n"), p.stderr
    user_error(mlw(wsdir, "secrets", "set", "smtp_password", value), "takes 1 argument(s), got 2")  # never a value on the command line
    p = mlw(wsdir, "secrets", "rotate")
    assert p.returncode == 0 and p.stdout.startswith("re-encrypted 1 secret(s) with the new master key"), p.stderr
    outputs = [mlw(wsdir, "secrets", "list"), mlw(wsdir, "audit", "list"), p]
    assert "smtp_password" in outputs[0].stdout and "secret.set" in outputs[1].stdout and "secret.rotate_key" in outputs[1].stdout
    for o in outputs: assert value not in o.stdout + o.stderr
    ws = Workspace.open(wsdir)
    try: assert get_secret(ws, "smtp_password").reveal() == value
    finally: ws.close()
    assert mlw(wsdir, "secrets", "delete", "smtp_password").returncode == 0
    assert "no secrets yet" in mlw(wsdir, "secrets", "list").stdout
    assert mlw(wsdir, "audit", "verify").returncode == 0
